"""The train step and loop: sharding, resumption, and stopping on a non-finite loss."""

import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxpose import benchmark
from jaxpose import checkpoint
from jaxpose import parallel
from jaxpose import state as state_lib
from jaxpose import train
from jaxpose.models import posenet
from conftest import REPO, load_config


def _run_steps(config, devices, batches):
  mesh = parallel.make_mesh(devices)
  _, _, state, _, step = train.setup(config, mesh)
  for batch in batches:
    state, metrics = step(state, parallel.to_global(batch, mesh))
  return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize('fsdp', [False, True])
def test_sharded_step_equals_single_device(fsdp):
  assert jax.device_count() == 8
  config = load_config('synthetic')
  config.fsdp = fsdp
  batches = [benchmark.random_batch(config, 8, seed) for seed in range(2)]
  one, m1 = _run_steps(config, jax.devices()[:1], batches)
  eight, m8 = _run_steps(config, jax.devices(), batches)
  diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                      (one.params, one.batch_stats), (eight.params, eight.batch_stats))
  assert max(jax.tree.leaves(diff)) < 1e-5
  np.testing.assert_allclose(m1['loss'], m8['loss'], rtol=1e-5)
  assert int(eight.step) == 2


def test_step_reduces_the_loss_on_a_repeated_batch():
  config = load_config('synthetic')
  batch = benchmark.random_batch(config, 8)
  _, first = _run_steps(config, jax.devices()[:1], [batch])
  _, later = _run_steps(config, jax.devices()[:1], [batch] * 8)
  assert later['loss'] < first['loss']
  assert set(first) >= {'loss', 'loss_pose_3d', 'loss_bone', 'loss_heatmap',
                        'loss_projection', 'grad_norm', 'learning_rate'}


def test_pretrained_learning_rate_multiplier():
  config = load_config('synthetic')
  config.optim.pretrained_lr_multiplier = 0.0
  # A warm start takes the stage-1 modules; the discrepancy applies to all of them.
  config.init.checkpoint = '/stage1'
  assert state_lib.pretrained_modules(config) == ('backbone', 'res5a')
  batch = benchmark.random_batch(config, 8)
  mesh = parallel.make_mesh(jax.devices()[:1])
  _, _, state, _, step = train.setup(config, mesh)
  before = jax.device_get(state.params)
  after = jax.device_get(step(state, parallel.to_global(batch, mesh))[0].params)
  moved = jax.tree.map(lambda a, b: bool(np.any(a != b)), before, after)
  assert not any(jax.tree.leaves(moved['backbone'])) and not any(jax.tree.leaves(moved['res5a']))
  assert all(jax.tree.leaves(moved['lifter_0']))


def test_resumed_run_equals_uninterrupted_run(tmp_path):
  config = load_config('synthetic')
  config.total_steps = 4
  config.checkpoint_every_steps = 2
  config.image_every_steps = 0
  full = train.train_and_evaluate(config, str(tmp_path / 'full'))
  config.total_steps = 2           # "killed" after the checkpoint of step 2 ...
  train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  config.total_steps = 4           # ... and started again in the same workdir.
  resumed = train.train_and_evaluate(config, str(tmp_path / 'resumed'))
  diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                      full.params, resumed.params)
  assert max(jax.tree.leaves(diff)) < 1e-6
  meta = checkpoint.Checkpointer(str(tmp_path / 'resumed')).read_meta()
  assert meta['data_position'] == {'studio': 16, 'wild': 16}


def test_non_finite_loss_stops_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
  config = load_config('synthetic')
  config.total_steps = 6
  config.checkpoint_every_steps = 2
  config.image_every_steps = 0
  original = train.pipeline.TrainStream.__next__

  def poisoned(self):
    batch = original(self)
    if self.position['studio'] > 4 * 4:   # the 5th batch
      batch['joints_3d'] = np.full_like(batch['joints_3d'], np.nan)
    return batch

  monkeypatch.setattr(train.pipeline.TrainStream, '__next__', poisoned)
  with pytest.raises(train.NonFiniteLossError, match=r'step 5: .*loss_pose_3d=nan.*the last '
                     r'good checkpoint is step 4 in'):
    train.train_and_evaluate(config, str(tmp_path))
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.latest_step() == 4
  mesh = parallel.make_mesh(jax.devices()[:1])
  model = posenet.create(config.model)
  tx = state_lib.make_optimizer(config.optim)
  state, _ = state_lib.create_train_state(config, mesh, model, tx)
  restored, _ = ckpt.restore(state)
  assert int(restored.step) == 4
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(jax.device_get(restored.params)))


def test_a_step_that_breaks_the_state_is_never_saved(tmp_path):
  """The losses of step 1 are finite (computed before the update) but a learning rate
  that overflows float32 makes its parameters non-finite: nothing may be saved."""
  config = load_config('synthetic')
  config.optim.learning_rate = 1e39
  config.checkpoint_every_steps = 1
  config.image_every_steps = 0
  with pytest.raises(train.NonFiniteLossError,
                     match=r'step 1: param_norm=(nan|inf); .*no checkpoint was written yet'):
    train.train_and_evaluate(config, str(tmp_path))
  assert checkpoint.Checkpointer(str(tmp_path)).latest_step() is None


def test_a_second_run_on_a_workdir_in_use_is_refused(tmp_path):
  config = load_config('synthetic')
  with checkpoint.workdir_lock(str(tmp_path)):
    with pytest.raises(checkpoint.WorkdirLockedError,
                       match=rf'in use by another training run \(host .*, pid {os.getpid()},'):
      train.train_and_evaluate(config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists()


def test_a_killed_run_leaves_the_workdir_free(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time; from jaxpose import checkpoint\n'
       'with checkpoint.workdir_lock(sys.argv[1]):\n  print("locked", flush=True)\n'
       '  time.sleep(600)', str(tmp_path)],
      cwd=REPO, stdout=subprocess.PIPE, text=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  try:
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(checkpoint.WorkdirLockedError, match=f'pid {holder.pid}'):
      with checkpoint.workdir_lock(str(tmp_path)):
        pass
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  with checkpoint.workdir_lock(str(tmp_path)):
    assert f'pid {os.getpid()}' in (tmp_path / 'train.lock').read_text()
