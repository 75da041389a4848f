"""Every experiment config loads, with each of its variants, and its keys are known."""

import pytest

from jaxpose import config as base
from jaxpose import train
from conftest import load_config

EXPERIMENTS = {
    'synthetic': ['', 'smoke'],
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


def test_full_config_trains_on_the_fake_benchmark_data(tmp_path):
  """All four benchmark builders build from their dummy_data (the real on-disk layouts)
  and feed one mixed batch stream."""
  config = load_config('full', 'smoke')
  config.data.data_dir = str(tmp_path / 'tfds')
  config.total_steps = 2
  config.image_every_steps = 0
  state = train.train_and_evaluate(config, str(tmp_path / 'work'))
  assert int(state.step) == 2
  assert (tmp_path / 'work' / 'eval' / 'mpi_inf_3dhp_test.json').exists()
  assert (tmp_path / 'work' / 'eval' / 'h36m_test.json').exists()
