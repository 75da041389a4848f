"""Stage 1 -> stage 2 (paper §4.2): a fresh run initialised from another run's checkpoint,
resuming winning over the warm start, and the named errors."""

import logging

import jax
import ml_collections
import numpy as np
import pytest

from jaxpose import checkpoint
from jaxpose import parallel
from jaxpose import state as state_lib
from jaxpose import train
from jaxpose.models import posenet
from conftest import load_config


def _short(config, steps=2):
  config.total_steps = steps
  config.image_every_steps = 0
  config.data.eval = ml_collections.ConfigDict()  # Evaluation is tested elsewhere.
  return config


@pytest.fixture(scope='module')
def stage_1(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('stage_1'))
  config = _short(load_config('pretrain_2d'), steps=3)
  config.checkpoint_every_steps = 1
  state = train.train_and_evaluate(config, workdir)
  return workdir, jax.device_get(state)


def _stage_2(stage_1_workdir, **overrides):
  config = _short(load_config('h36m_only'))
  config.init.checkpoint = stage_1_workdir
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  return config


def test_stage_2_starts_fresh_from_the_stage_1_weights(stage_1, tmp_path, caplog):
  s1_workdir, s1 = stage_1
  config = _stage_2(s1_workdir, **{'optim.learning_rate': 0.0})
  with caplog.at_level(logging.INFO, logger='absl'):
    s2 = jax.device_get(train.train_and_evaluate(config, str(tmp_path)))
  assert 'Warm start: backbone, res5a taken from step 3 of' in caplog.text
  # Learning rate 0: the taken modules end as stage 1 ended them, bit for bit.
  for module in ('backbone', 'res5a'):
    jax.tree.map(np.testing.assert_array_equal, s2.params[module], s1.params[module])
  # ... which are stage 1's training, not the initialisation both runs share.
  fresh = jax.jit(lambda: posenet.create(config.model).init(
      jax.random.key(config.seed),
      np.zeros((1,) + (config.data.input_size,) * 2 + (3,), np.float32),
      train=False))()
  assert not np.array_equal(s2.params['res5a']['conv1']['kernel'],
                            fresh['params']['res5a']['conv1']['kernel'])
  meta = checkpoint.Checkpointer(str(tmp_path)).read_meta()
  # Counted from 0: two steps of stage 2, not stage 1's 3 + 2, and the data from the start.
  assert int(s2.step) == 2 and checkpoint.Checkpointer(str(tmp_path)).latest_step() == 2
  assert sum(meta['data_position'].values()) == 2 * config.batch_size
  assert meta['init']['step'] == 3 and meta['init']['modules'] == ['backbone', 'res5a']
  assert meta['init']['config']['loss']['pose_3d'] == 0.0  # stage 1's config

  # Run again, longer: resuming its own checkpoints wins over the warm start.
  config.total_steps = 3
  caplog.clear()
  with caplog.at_level(logging.INFO, logger='absl'):
    state = train.train_and_evaluate(config, str(tmp_path))
  assert 'Resumed from step 2' in caplog.text and 'Warm start from' in caplog.text
  assert 'skipped' in caplog.text and int(state.step) == 3
  # The warm start's record survives the resume.
  assert checkpoint.Checkpointer(str(tmp_path)).read_meta()['init']['step'] == 3


def test_a_chosen_step_is_taken(stage_1, tmp_path):
  s1_workdir, _ = stage_1
  config = _stage_2(s1_workdir, **{'init.checkpoint_step': 2})
  config.total_steps = 1
  train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.Checkpointer(str(tmp_path)).read_meta()['init']['step'] == 2


def _fresh_state(config):
  mesh = parallel.make_mesh(jax.devices()[:1])
  model = posenet.create(config.model)
  tx = state_lib.make_optimizer(config.optim)
  return state_lib.create_train_state(config, mesh, model, tx)[0]


def test_named_errors(stage_1, tmp_path):
  s1_workdir, _ = stage_1
  config = _stage_2(s1_workdir)
  state = _fresh_state(config)
  missing = _stage_2(str(tmp_path / 'missing')).init
  with pytest.raises(FileNotFoundError, match='config.init.checkpoint=.*no checkpoint'):
    state_lib.warm_start(state, missing)
  with pytest.raises(FileNotFoundError, match='config.init.checkpoint=.*step 99'):
    state_lib.warm_start(state, _stage_2(s1_workdir, **{'init.checkpoint_step': 99}).init)
  with pytest.raises(ValueError, match=r"config.init.modules=.*unknown \['lifter'\]"):
    state_lib.warm_start(state,
                         _stage_2(s1_workdir, **{'init.modules': ('backbone', 'lifter')}).init)
  # res5a with other channels: the message lists both shapes.
  other = _stage_2(s1_workdir, **{'model.res5a_channels': 20})
  with pytest.raises(ValueError, match=r'params/res5a/.*checkpoint \(.*\) vs model \('):
    state_lib.warm_start(_fresh_state(other), other.init)
  with pytest.raises(ValueError, match='config.init.checkpoint=.*config.init.backbone='):
    train.train_and_evaluate(_stage_2(s1_workdir, **{'init.backbone': '/weights.npz'}),
                             str(tmp_path / 'e'))
