"""The train step and loop: sharding, resumption, and stopping on a non-finite loss."""

import os
import json
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxpose import benchmark
from jaxpose import checkpoint
from jaxpose import fileio
from jaxpose import parallel
from jaxpose import state as state_lib
from jaxpose import train
from conftest import DATA_DIR, REPO, load_config


def _run_steps(config, devices, batches):
  mesh = parallel.make_mesh(devices)
  _, state, _, step = train.setup(config, mesh)
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
  # Sharding only reorders float32 sums: the batch's (per device, then across devices) and
  # each convolution's (one example per device instead of eight). Reordering alone, on one
  # device with the batch permuted, moves these parameters by up to 4.9e-5 (jax 0.12.1;
  # 3.3e-6 on 0.10.2), where the first steps pass small gradients' rounding straight into
  # the parameters (Adadelta's first update is -g below |g| ≈ sqrt(eps / (1 - rho))).
  # Sharding measured 4.9e-5 (0.10.2) and 4.3e-6 (0.12.1): allow twice that scale.
  assert max(jax.tree.leaves(diff)) < 1e-4
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
  _, state, _, step = train.setup(config, mesh)
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
  state = train.setup(config, parallel.make_mesh(jax.devices()[:1])).state
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


# The shortest smoke run that saves several times; evaluated at its end only.
CRASH_RUN = dict(total_steps=8, checkpoint_every_steps=1, image_every_steps=0,
                 eval_every_steps=8, log_every_steps=2)


def _checkpoint_steps(workdir) -> list[int]:
  directory = workdir / 'checkpoints'
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) if (
      directory.exists()) else []


def _writing(workdir, since: float = 0.0) -> bool:
  """Whether Orbax is writing a checkpoint: a temporary folder made after ``since`` (a
  killed run leaves its folder behind, under the name the next run writes again)."""
  for path in (workdir / 'checkpoints').glob('*.orbax-checkpoint-tmp*'):
    try:
      if path.stat().st_mtime >= since:
        return True
    except FileNotFoundError:  # renamed to its step meanwhile
      pass
  return False


def _start_training(workdir, log):
  """``python -m jaxpose.train`` of ``CRASH_RUN`` in ``workdir``, its log in ``log``."""
  with open(log, 'w') as stderr:
    return subprocess.Popen(
        [sys.executable, '-m', 'jaxpose.train', '--config=configs/synthetic.py:smoke',
         f'--config.data.data_dir={DATA_DIR}',
         *(f'--config.{k}={v}' for k, v in CRASH_RUN.items()), f'--workdir={workdir}'],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr,
        env=dict(os.environ, JAX_PLATFORMS='cpu'))


def _kill_when(process, ready, timeout_s: float = 600) -> bool:
  """SIGKILLs ``process`` as soon as ``ready()``; False if it ended first."""
  deadline = time.monotonic() + timeout_s
  while process.poll() is None:
    if ready() or time.monotonic() > deadline:
      process.send_signal(signal.SIGKILL)
      process.wait()
      assert time.monotonic() <= deadline, f'the run never got to the moment in {timeout_s} s'
      return True
    time.sleep(0.002)
  return False


def test_runs_killed_at_random_moments_resume_to_the_uninterrupted_state(tmp_path):
  """SIGKILL at seeded random moments after a new checkpoint and once while Orbax writes
  one; each restart resumes from the last complete checkpoint, and the last one ends with
  the state, data position and evaluation of a run never interrupted."""
  config = load_config('synthetic')
  config.update(CRASH_RUN)
  full = train.train_and_evaluate(config, str(tmp_path / 'full'))
  workdir = tmp_path / 'killed'
  rng = random.Random(18)
  plan = ['random', 'writing', 'random']
  kills, starts = [], []  # (moment, killed while writing), steps saved when each started
  for attempt in range(len(plan) + 1):
    log = tmp_path / f'attempt_{attempt}.log'
    before = _checkpoint_steps(workdir)
    starts.append(before)
    started = time.time()
    process = _start_training(workdir, log)
    if attempt < len(plan):
      if plan[attempt] == 'writing':
        ready = lambda: _writing(workdir, started)
      else:
        delay = rng.uniform(0.0, 1.0)
        ready = lambda: (_checkpoint_steps(workdir)[-1:] > before[-1:]
                         and time.sleep(delay) is None)
      if _kill_when(process, ready):
        kills.append((plan[attempt], _writing(workdir, started)))
        continue
    assert process.wait(timeout=600) == 0, log.read_text()[-3000:]
    break
  assert [moment for moment, _ in kills] == plan and kills[1] == ('writing', True), kills
  # Each killed run had saved a checkpoint, and the next one resumed from the newest.
  for attempt, steps in enumerate(starts[1:], 1):
    text = (tmp_path / f'attempt_{attempt}.log').read_text()
    assert f'Resumed from step {steps[-1]} of' in text, text[-3000:]

  abstract = train.setup(config, parallel.make_mesh()).state
  ckpt = checkpoint.Checkpointer(str(workdir))
  assert ckpt.latest_step() == config.total_steps
  resumed, meta = ckpt.restore(abstract)
  ckpt.close()
  diff = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - np.asarray(b)).max()),
                      jax.device_get(full), jax.device_get(resumed))
  assert max(jax.tree.leaves(diff)) < 1e-6
  full_ckpt = checkpoint.Checkpointer(str(tmp_path / 'full'))
  full_meta = full_ckpt.read_meta()
  full_ckpt.close()
  assert meta['data_position'] == full_meta['data_position']
  for name in ('synthetic_humans_wild_val.json', 'synthetic_humans_studio_val.json'):
    killed_report, full_report = (json.loads((d / 'eval' / '8' / name).read_text())
                                  for d in (workdir, tmp_path / 'full'))
    assert killed_report['mpjpe'] == pytest.approx(full_report['mpjpe'], rel=1e-5)
  assert not _writing(workdir)


def test_a_workdir_orbax_cannot_hold_is_refused_before_anything_is_written():
  config = load_config('synthetic')
  with pytest.raises(ValueError, match='--workdir=ram://refused: checkpoints need a local '
                                       'folder or a gs:// URL'):
    train.train_and_evaluate(config, 'ram://refused')
  assert not fileio.gfile.exists('ram://refused')


def test_an_object_store_workdir_goes_unlocked_with_a_warning(caplog):
  with checkpoint.workdir_lock('gs://bucket/run'):
    with checkpoint.workdir_lock('gs://bucket/run'):
      pass
  assert caplog.text.count('gs://bucket/run is not on a local file system: no lock keeps a '
                           'second training run out of it') == 2
