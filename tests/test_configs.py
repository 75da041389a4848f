"""Every experiment config loads, with each of its variants, and its keys are known; a
config that cannot run is refused, naming its fields, before anything is written."""

import os
import subprocess
import sys

import pytest

from jaxpose import config as base
from jaxpose import evaluate
from jaxpose import train
from conftest import REPO, load_config

EXPERIMENTS = {
    'synthetic': ['', 'smoke', 'study', 'test', 'baseline,study,smoke'],
    'pretrain_2d': ['', 'smoke'],
    'h36m_only': ['', 'smoke', 'baseline', 'latent_2d', 'projection', 'baseline,smoke',
                  'fps5'],
    'full': ['', 'smoke'],
}


@pytest.mark.parametrize('name,variant', [(n, v) for n, vs in EXPERIMENTS.items() for v in vs])
def test_config_loads_with_only_known_keys(name, variant):
  config = load_config(name, variant or None)
  defaults = base.base_config()
  for section in ('model', 'optim', 'loss'):
    assert set(config[section]) == set(defaults[section]), section
  assert sum(s.fraction for s in config.data.train.values()) == pytest.approx(1.0)
  base.validate(config)


def test_table5_variants_switch_the_right_losses():
  baseline = load_config('h36m_only', 'baseline')
  assert baseline.loss.heatmap == 0 and baseline.loss.projection == 0
  assert list(baseline.data.train) == ['h36m']
  assert load_config('h36m_only', 'latent_2d').loss.projection == 0
  assert load_config('h36m_only', 'projection').loss.heatmap == 0
  assert load_config('h36m_only', None).optim.pretrained_lr_multiplier == 0.1
  assert load_config('full', None).optim.pretrained_lr_multiplier == 1.0


def test_paper_sampling_and_background_augmentation():
  full = load_config('full', None)
  assert full.data.train.h36m.builder_config == 'h80k'  # "unless stated otherwise" (§4.3)
  assert full.data.augment.background > 0
  assert load_config('h36m_only', None).data.augment.background == 0
  assert load_config('h36m_only', 'fps5').data.train.h36m.builder_config == 'fps5'


def test_unknown_variant_is_named():
  with pytest.raises(ValueError, match="unknown config variant 'smok'"):
    load_config('synthetic', 'smok')


def test_validate_names_every_field_at_fault(tmp_path):
  config = load_config('synthetic')
  config.update_from_flattened_dict({'batch_size': 12, 'total_steps': -1,
                                     'data.input_size': 70, 'eval_batch_size': 0,
                                     'checkpoint_every_steps': 0})
  with pytest.raises(base.ConfigError) as error:
    train.train_and_evaluate(config, str(tmp_path / 'work'))
  for expected in ('config.batch_size=12: expected a multiple of the 8 devices',
                   'config.total_steps=-1: expected an integer >= 1',
                   "config.data.input_size=70: expected a multiple of the network's stride 16",
                   'config.eval_batch_size=0: expected an integer >= 1',
                   'config.checkpoint_every_steps=0: expected an integer >= 1'):
    assert expected in str(error.value)
  assert not (tmp_path / 'work').exists()
  config = load_config('synthetic')
  config.batch_size = 0
  with pytest.raises(base.ConfigError, match=r'config.batch_size=0: expected an integer >= 1'):
    base.validate(config)
  # Evaluation runs a trained config on whatever devices it has: batch_size is not its.
  config.batch_size = 12
  base.validate(config, training=False)


@pytest.mark.parametrize('args, message', [
    (['--config=configs/nothere.py'], '--config=configs/nothere.py: no file configs/nothere.py'),
    (['--config=configs/synthetic.py:smok'],
     "flag --config=configs/synthetic.py:smok: unknown config variant 'smok'; known: "
     "['all', 'baseline', 'latent_2d', 'paper_model', 'projection', 'smoke', 'stage1', "
     "'study', 'test']"),
    (['--config=configs/synthetic.py:smoke', '--config.batchsize=8'],
     '--config.batchsize: the config has no key \'batchsize\' Did you mean '
     '"batch_size" instead of "batchsize"?'),
    (['--config=configs/synthetic.py:smoke', '--config.batch_size=12'],
     'config.batch_size=12: expected a multiple of the 8 devices'),
])
def test_bad_config_gets_one_line_and_nothing_written(tmp_path, args, message):
  workdir = tmp_path / 'work'
  result = subprocess.run([sys.executable, '-m', 'jaxpose.train', *args, f'--workdir={workdir}'],
                          cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 1
  last = result.stderr.splitlines()[-1]
  assert last.startswith('train.py: error: ') and message in last, result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()


def test_full_config_trains_on_the_fake_benchmark_data(tmp_path):
  """All four benchmark builders build from their dummy_data (the real on-disk layouts)
  and feed one mixed batch stream."""
  config = load_config('full', 'smoke')
  config.data.data_dir = str(tmp_path / 'tfds')
  config.total_steps = 2
  config.image_every_steps = 0
  state = train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(state.step) == 2
  # No validation split: training evaluates nothing; the test splits are read after it.
  assert not (tmp_path / 'work' / 'eval').exists()
  reports = evaluate.restore_and_evaluate(base.on_test(config), str(tmp_path / 'work'))
  assert set(reports) == {'mpi_inf_3dhp', 'h36m'}
  assert reports['h36m']['global_scale_reference'].startswith('a fixed skeleton size, 4296.99')
  assert (tmp_path / 'work' / 'eval' / '2' / 'mpi_inf_3dhp_test.json').exists()
  assert (tmp_path / 'work' / 'eval' / '2' / 'h36m_test.json').exists()


def test_choices_are_made_on_validation_and_the_test_splits_kept_apart():
  synthetic = load_config('synthetic', None)
  assert {s.split for s in synthetic.data.eval.values()} == {'wild_val', 'studio_val'}
  assert {s.split for s in synthetic.data.test.values()} == {'wild_test', 'studio_test'}
  on_test = load_config('synthetic', 'test')
  assert on_test.data.eval == synthetic.data.test
  for paper in ('h36m_only', 'full'):
    config = load_config(paper, None)
    assert not config.data.eval  # the benchmarks have no validation split
    assert {s.split for s in config.data.test.values()} == {'test'}


def test_global_scale_reference_matches_the_paper_in_the_paper_configs():
  assert load_config('synthetic', None).global_scale_size == 0.0  # each subject's own
  for paper in ('h36m_only', 'full'):
    assert load_config(paper, None).global_scale_size == 4296.99
  config = load_config('synthetic')
  config.global_scale_size = -1.0
  with pytest.raises(base.ConfigError, match=r'config.global_scale_size=-1.0: expected a '
                     'finite number >= 0'):
    base.validate(config, training=False)
