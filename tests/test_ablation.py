"""The Table 5 study (jaxpose.ablation) end to end on the smoke synthetic config, as its
command line runs it: stage 1 once, every row × 2 seeds warm-started from it, validation
and test reports, the Welch tests and the three outputs, skipping and resuming."""

import json
import shutil

import numpy as np
import pytest
from scipy import stats

from jaxpose import ablation
from jaxpose import checkpoint
from jaxpose import config as base
from conftest import CONFIGS, DATA_DIR, load_config

SPEC = str(CONFIGS / 'synthetic.py') + ':smoke'
# No pictures: their predict function would compile once more per run.
OVERRIDES = {'data.data_dir': DATA_DIR, 'image_every_steps': 0}
ROWS = list(base.TABLE5_ROWS)
SEEDS = (0, 1)


@pytest.fixture(scope='module')
def study(tmp_path_factory):
  # What `python -m jaxpose.ablation --config=SPEC --workdir=W --seeds=2` runs.
  workdir = tmp_path_factory.mktemp('study')
  ablation.run_study(SPEC, str(workdir), seeds=2, overrides=OVERRIDES)
  return workdir, json.loads((workdir / 'ablation.json').read_text())


def test_the_command_trains_stage_1_once_and_every_row_and_seed_from_it(study):
  workdir, result = study
  assert result['seeds'] == list(SEEDS) and result['rows'] == ROWS
  assert list(result['runs']) == ['stage1'] + [f'{r}_seed{s}' for s in SEEDS for r in ROWS]
  for row in ROWS:
    ckpt = checkpoint.Checkpointer(str(workdir / f'{row}_seed1'))
    init = ckpt.read_meta()['init']
    ckpt.close()
    assert init['checkpoint'] == str(workdir / 'stage1') and init['step'] == 6
    assert init['config']['loss']['pose_3d'] == 0.0  # stage 1: heatmaps only
    assert init['config']['optim']['pretrained_lr_multiplier'] == 1.0


def test_validation_and_test_are_reported_apart(study):
  workdir, result = study
  assert {part: set(splits) for part, splits in result['splits'].items()} == {
      'validation': {'wild_val', 'studio_val'}, 'test': {'wild_test', 'studio_test'}}
  assert result['global_scale_reference'] == "the ground truth's own bone-length sum"
  for part, split in (('validation', 'wild_val'), ('test', 'wild_test')):
    values = []
    for seed in SEEDS:
      report = json.loads((workdir / f'baseline_seed{seed}' / 'eval' / '6' /
                           f'synthetic_humans_{split}.json').read_text())
      assert report['step'] == 6 and report['num_examples'] == 16
      values.append(report['global_scale_pck'])
      assert (result['runs'][f'baseline_seed{seed}']['metrics'][part][split]['global_scale']
              ['pck'] == report['global_scale_pck'])
    cell = result['table'][part]['baseline'][split]['global_scale']['pck']
    assert cell['n'] == 2 and cell['values'] == values
    assert cell['mean'] == pytest.approx(np.mean(values))
    assert cell['std'] == pytest.approx(np.std(values, ddof=1))


def test_every_comparison_is_tested_on_both_parts(study):
  workdir, result = study
  for part in ablation.PARTS:
    tests = result['tests'][part]
    pairs = {(t['row'], t['against']) for t in tests}
    assert {(r, 'baseline') for r in ROWS[1:]} <= pairs
    assert [a for r, a in pairs if r == 'all' and a != 'baseline'] in (
        ['latent_2d'], ['projection'], ['latent_2d', 'projection'], ['projection', 'latent_2d'])
    assert len(tests) == 4 * 2 * len(ablation.ALIGNMENTS) * len(ablation.METRICS)
    table = result['table'][part]
    for t in tests:
      row = table[t['row']][t['split']][t['alignment']][t['metric']]['values']
      other = table[t['against']][t['split']][t['alignment']][t['metric']]['values']
      better = 'less' if t['metric'] == 'mpjpe' else 'greater'
      expected = stats.ttest_ind(row, other, equal_var=False, alternative=better)
      if t['p'] is not None:
        assert t['p'] == pytest.approx(expected.pvalue, rel=1e-9)
  markdown = (workdir / 'ablation.md').read_text()
  for part in ablation.PARTS:
    assert f'## {part}, globally scaled' in markdown and f'## {part}, unscaled' in markdown
    assert f'## {part}, one-sided Welch t-tests' in markdown
  assert all(f'| {row} | 2 |' in markdown for row in ROWS)
  assert '62.3 / 30.3' in markdown
  assert (workdir / 'ablation.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_a_second_call_skips_finished_runs_and_resumes_an_interrupted_one(study):
  workdir, first = study
  lines = []
  again = ablation.run_study(SPEC, str(workdir), seeds=2, overrides=OVERRIDES,
                             log=lines.append)
  assert again['trained'] == [] and all('skipped' in line for line in lines)
  assert again['table'] == first['table']

  # Interrupted after its checkpoint at step 3: the final checkpoint and reports are gone.
  run = workdir / 'projection_seed0'
  shutil.rmtree(run / 'checkpoints' / '6')
  shutil.rmtree(run / 'eval')
  # Trained to the end but stopped before its test splits were read.
  tested = workdir / 'all_seed1' / 'eval' / '6'
  for path in tested.glob('synthetic_humans_*_test.*'):
    path.unlink()
  lines = []
  resumed = ablation.run_study(SPEC, str(workdir), seeds=2, overrides=OVERRIDES,
                               log=lines.append)
  assert resumed['trained'] == ['projection_seed0', 'all_seed1']
  assert 'trained 3 steps (resumed at 3)' in lines[3]
  assert 'trained 0 steps' in lines[8]
  assert resumed['runs']['projection_seed0']['metrics']['test']['wild_test']
  assert (tested / 'synthetic_humans_wild_test.json').exists()


def test_welch_t_test_matches_a_hand_computation():
  # a: mean 3, sample variance 1, n 3; b: mean 1, variance 4, n 3. Standard error
  # sqrt(1/3 + 4/3) = 1.29099, t = 2 / 1.29099 = 1.54919; df = (5/3)^2 / ((1/3)^2/2 +
  # (4/3)^2/2) = 50/17 = 2.94118. The t table puts P(T > 1.549) at 0.1307 for 2 and 0.1096
  # for 3 degrees of freedom: p lies between.
  a, b = [2.0, 3.0, 4.0], [-1.0, 1.0, 3.0]
  result = ablation.welch_t_test(a, b)
  assert result['t'] == pytest.approx(1.5491933, rel=1e-6)
  assert result['df'] == pytest.approx(50 / 17, rel=1e-9)
  assert 0.1096 < result['p'] < 0.1307
  reference = stats.ttest_ind(a, b, equal_var=False, alternative='greater')
  assert result['p'] == pytest.approx(reference.pvalue, rel=1e-9)
  # The other direction is the complement; too few values or no spread give no test.
  assert ablation.welch_t_test(b, a)['p'] == pytest.approx(1 - result['p'])
  assert ablation.welch_t_test([1.0], [2.0, 3.0])['p'] is None
  assert ablation.welch_t_test([1.0, 1.0], [2.0, 2.0])['p'] is None


def test_a_run_of_another_config_is_refused(study):
  workdir, _ = study
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


def _switched(config_file: str, row: str, study: str, names: dict) -> dict:
  """Every key the ``row`` variant changes against ``all`` in ``config_file`` (data sources
  renamed by ``names`` to the roles they play), with its value."""
  load = lambda variant: checkpoint.config_to_json(
      load_config(config_file, ','.join(filter(None, (variant, study)))))
  differences = ablation._differences(load('all'), load(row))  # pylint: disable=protected-access
  out = {}
  for d in differences:
    key = d.key
    for name, role in names.items():
      key = key.replace(f'data.train.{name}', f'data.train.<{role}>')
    out[key] = d.b
  return out


@pytest.mark.parametrize('row', ROWS)
def test_synthetic_rows_switch_exactly_what_the_paper_experiment_rows_switch(row):
  """Every key a row changes, compared key for key between the two experiments (the 2D-only
  sources named by role: the synthetic wild images stand for MPII and LSP together)."""
  synthetic = _switched('synthetic', row, 'study', {'studio': '3d', 'wild': '2d'})
  h36m = _switched('h36m_only', row, '', {'h36m': '3d', 'mpii': '2d', 'lsp_extended': '2d'})
  assert synthetic == h36m


def test_every_row_has_the_paper_rows_learning_rate_discrepancy():
  for row in ROWS:
    study = load_config('synthetic', f'{row},study')
    assert study.optim.pretrained_lr_multiplier == load_config(
        'h36m_only', row).optim.pretrained_lr_multiplier == 0.1
  for stage1 in (load_config('synthetic', 'study,stage1'), load_config('pretrain_2d')):
    assert stage1.optim.pretrained_lr_multiplier == 1.0


def test_synthetic_stage_1_trains_heatmaps_on_the_wild_images_only():
  config = load_config('synthetic', 'study,stage1')
  assert list(config.data.train) == ['wild'] and config.data.train.wild.fraction == 1.0
  assert config.loss.heatmap > 0 and not config.data.eval and not config.data.test
  assert config.loss.pose_3d == config.loss.bone == config.loss.projection == 0.0
  assert config.total_steps == load_config('synthetic', 'study').total_steps
  assert config.model == load_config('synthetic', None).model  # warm-startable into rows
