"""The Table 5 study (jaxpose.ablation) end to end on the smoke synthetic config: stage 1
once, every row warm-started from it, the three outputs, skipping and resuming."""

import json
import shutil

import pytest

from jaxpose import ablation
from jaxpose import checkpoint
from jaxpose import config as base
from conftest import CONFIGS, DATA_DIR, load_config

SPEC = str(CONFIGS / 'synthetic.py') + ':smoke'
OVERRIDES = {'data.data_dir': DATA_DIR}
ROWS = list(base.TABLE5_ROWS)


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('study')
  lines = []
  result = ablation.run_study(SPEC, str(workdir), seeds=1, overrides=OVERRIDES,
                              log=lines.append)
  return workdir, result, lines


def test_the_study_trains_stage_1_once_and_every_row_from_it(study):
  workdir, result, lines = study
  assert result['trained'] == ['stage1'] + [f'{r}_seed0' for r in ROWS]
  assert len(lines) == 5 and lines[-1].endswith('study ETA done')
  assert 'trained 6 steps' in lines[0] and 'ETA unknown' not in lines[1]
  for row in ROWS:
    ckpt = checkpoint.Checkpointer(str(workdir / f'{row}_seed0'))
    init = ckpt.read_meta()['init']
    ckpt.close()
    assert init['checkpoint'] == str(workdir / 'stage1') and init['step'] == 6
    assert init['config']['loss']['pose_3d'] == 0.0  # stage 1: heatmaps only
  # The table holds the runs' own reports: with one seed its mean is that run's number.
  report = json.loads((workdir / 'baseline_seed0' / 'eval' / '6' /
                       'synthetic_humans_wild_test.json').read_text())
  assert (result['table']['baseline']['wild_test']['global_scale']['pck']
          == dict(mean=report['global_scale_pck'], std=None, n=1))
  assert (result['table']['all']['studio_test']['none']['mpjpe']['mean']
          == result['runs']['all_seed0']['metrics']['studio_test']['none']['mpjpe'])
  on_disk = json.loads((workdir / 'ablation.json').read_text())
  assert on_disk['rows'] == ROWS and list(on_disk['table']) == ROWS
  markdown = (workdir / 'ablation.md').read_text()
  assert all(f'| {row} | 1 |' in markdown for row in ROWS)
  assert '| baseline | 1 |' in markdown.split('## unscaled')[1]
  assert '62.3 / 30.3' in markdown and '## globally scaled' in markdown
  assert (workdir / 'ablation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_a_second_call_skips_finished_runs_and_resumes_an_interrupted_one(study):
  workdir, first, _ = study
  lines = []
  again = ablation.run_study(SPEC, str(workdir), seeds=1, overrides=OVERRIDES,
                             log=lines.append)
  assert again['trained'] == [] and all('skipped' in line for line in lines)
  assert again['table'] == first['table']

  # Interrupted after its checkpoint at step 3: the final checkpoint and reports are gone.
  run = workdir / 'projection_seed0'
  shutil.rmtree(run / 'checkpoints' / '6')
  shutil.rmtree(run / 'eval')
  lines = []
  resumed = ablation.run_study(SPEC, str(workdir), seeds=1, overrides=OVERRIDES,
                               log=lines.append)
  assert resumed['trained'] == ['projection_seed0']
  assert 'trained 3 steps (resumed at 3)' in lines[3]
  assert resumed['runs']['projection_seed0']['metrics']['wild_test']


def test_a_run_of_another_config_is_refused(study):
  workdir, _, _ = study
  with pytest.raises(ValueError, match=r'stage1 holds a run of another config .*batch_size: 8 '
                     r'vs 4'):
    ablation.run_study(SPEC, str(workdir), seeds=1, overrides=dict(OVERRIDES, batch_size=4))


def test_overrides_may_not_undo_what_a_row_switches(tmp_path):
  with pytest.raises(ValueError, match=r'--config.loss.heatmap would override .*loss.heatmap'):
    ablation.plan(SPEC, str(tmp_path), 1, dict(OVERRIDES, **{'loss.heatmap': 1.0}))
  with pytest.raises(ValueError, match=r"drop \['baseline'\]"):
    ablation.plan(SPEC.replace(':smoke', ':baseline,smoke'), str(tmp_path), 1)


def test_the_paper_experiment_plans_its_study_from_pretrain_2d(tmp_path):
  runs = ablation.plan(str(CONFIGS / 'h36m_only.py') + ':smoke', str(tmp_path), 2,
                       {'init.backbone': '/weights/resnet50_res4f.npz'})
  stage1, rows = runs[0], runs[1:]
  assert stage1.config.loss.pose_3d == 0
  assert set(stage1.config.data.train) == {'mpii', 'lsp_extended', 'lsp'}
  assert stage1.config.init.backbone == '/weights/resnet50_res4f.npz'
  assert stage1.config.total_steps == 6  # :smoke reaches stage 1 too
  assert [r.name for r in rows] == [f'{r}_seed{s}' for s in (0, 1) for r in ROWS]
  for run in rows:
    assert run.config.init.checkpoint == str(tmp_path / 'stage1')
    assert run.config.init.backbone == ''
  assert list(rows[0].config.data.train) == ['h36m'] and rows[0].config.loss.heatmap == 0
  assert rows[4].config.seed == 1


@pytest.mark.parametrize('row', ROWS)
def test_synthetic_rows_switch_what_the_paper_experiment_rows_switch(row):
  """Each row leaves out the same losses and 2D-only data in both experiments."""
  synthetic, h36m = load_config('synthetic', row), load_config('h36m_only', row)
  for key in h36m.loss:
    assert (synthetic.loss[key] == 0) == (h36m.loss[key] == 0), key
  for config, three_d in ((synthetic, 'studio'), (h36m, 'h36m')):
    if row == 'baseline':
      assert list(config.data.train) == [three_d] and config.data.train[three_d].fraction == 1
    else:
      assert len(config.data.train) > 1


def test_synthetic_stage_1_trains_heatmaps_on_the_wild_images_only():
  config = load_config('synthetic', 'stage1,study')
  assert list(config.data.train) == ['wild'] and config.data.train.wild.fraction == 1.0
  assert config.loss.heatmap > 0 and not config.data.eval
  assert config.loss.pose_3d == config.loss.bone == config.loss.projection == 0.0
  assert config.total_steps == load_config('synthetic', 'study').total_steps == 4000
  assert config.model == load_config('synthetic', None).model  # warm-startable into rows
