"""Training: one pure train step and the loop around it.

``python -m jaxpose.train --config=configs/synthetic.py[:smoke] --workdir=DIR`` runs
``train_and_evaluate(config, workdir)``; a second run in the same workdir resumes.

The loop never waits for the devices needlessly: the step's metrics stay on the devices and
are fetched once per logging window (every ``log_every_steps``, and before every save),
averaged over the window, with the window's images/s per device (wall time: input, step
and whatever else ran in it); the next global batch is put on the devices while the current step
runs (``parallel.prefetch``); the evaluation and picture functions compile once per run.
"""

from __future__ import annotations

import functools
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import parameter_overview
from flax import traverse_util

from jaxpose import checkpoint
from jaxpose import cli
from jaxpose import config as config_lib
from jaxpose import evaluate
from jaxpose import fileio
from jaxpose import losses
from jaxpose import parallel
from jaxpose import preemption
from jaxpose import state as state_lib
from jaxpose import summary
from jaxpose.data import augment
from jaxpose.data import pipeline
from jaxpose.models import posenet

# Global batches on the devices ahead of the step that uses them.
PREFETCH = 2


def train_step(state: state_lib.TrainState, batch: dict, *, model: posenet.PoseNet,
               tx: optax.GradientTransformation, config: ml_collections.ConfigDict):
  """One optimisation step: (state, batch) -> (state, metrics). Pure; jit it with
  ``parallel.jit_train_step``."""
  targets = losses.make_targets(batch, config)

  def loss_fn(params):
    outputs, updates = model.apply({'params': params, 'batch_stats': state.batch_stats},
                                   batch['image'], train=True, mutable=['batch_stats'])
    total, terms = losses.compute(outputs, targets, dict(config.loss), config.data.input_size,
                                  config.data.heatmap_sigma)
    return total, (terms, updates['batch_stats'], outputs)

  (total, (terms, batch_stats, outputs)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  error = jnp.linalg.norm(outputs['pose_3d'] - targets['pose_3d'], axis=-1).mean(-1)
  has_3d = targets['has_3d'].astype(jnp.float32)
  metrics = {
      'loss': total,
      **{f'loss_{k}': v for k, v in terms.items()},
      'train_mpjpe_mm': jnp.sum(error * has_3d) / jnp.maximum(has_3d.sum(), 1.0),
      'grad_norm': optax.global_norm(grads),
      'param_norm': optax.global_norm(params),
      'learning_rate': state_lib.learning_rate_schedule(config.optim)(state.step),
  }
  new_state = state_lib.TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state)
  return new_state, metrics


class Setup(NamedTuple):
  """What a training run (or a benchmark, or a test) needs to take steps."""
  model: posenet.PoseNet
  state: state_lib.TrainState      # fresh, sharded over the mesh
  shardings: state_lib.TrainState  # of the state
  step: Callable                   # (state, global batch) -> (state, metrics), compiled


def setup(config: ml_collections.ConfigDict, mesh) -> Setup:
  """The model, sharded initial state and jitted ``train_step`` of ``config`` over
  ``mesh``, with the optimiser of ``config`` (learning-rate discrepancy included)."""
  model = posenet.create(config.model)
  tx = state_lib.make_optimizer(config.optim, state_lib.pretrained_modules(config))
  state, shardings = state_lib.create_train_state(config, mesh, model, tx)
  step = parallel.jit_train_step(
      functools.partial(train_step, model=model, tx=tx, config=config), mesh, shardings)
  return Setup(model, state, shardings, step)


def make_augment_fn(config: ml_collections.ConfigDict, mesh) -> Callable:
  """``augment.train_batch`` of ``config`` compiled for ``mesh``: the host's batch
  (``pipeline.TrainStream``'s, as global arrays) → the step's batch, split alike."""
  return parallel.jit_data_parallel(
      functools.partial(augment.train_batch, augment=config.data.augment,
                        input_size=config.data.input_size), mesh)


class NonFiniteLossError(FloatingPointError):
  pass


def _fetch(window: list[dict]) -> dict[str, np.ndarray]:
  """The window's per-step device metrics as host arrays, one row per step."""
  host = jax.device_get(window)
  return {k: np.array([m[k] for m in host]) for k in host[0]}


def _check_finite(values: dict[str, np.ndarray], first_step: int, ckpt) -> None:
  """Raises if a loss term or the updated parameters (``param_norm``) are not finite at
  any step of the window, naming the window, the first bad step and its terms."""
  watched = [k for k in values if k.startswith('loss') or k == 'param_norm']
  bad_rows = np.flatnonzero(~np.all([np.isfinite(values[k]) for k in watched], axis=0))
  if not len(bad_rows):
    return
  row = int(bad_rows[0])
  terms = ', '.join(f'{k}={values[k][row]}' for k in watched if not np.isfinite(values[k][row]))
  _stop(ckpt, f'in steps {first_step}-{first_step + len(values["loss"]) - 1}, first at step '
              f'{first_step + row}: {terms}')


def _stop(ckpt: checkpoint.Checkpointer, where: str):
  # Every save checks its window first, so the last checkpoint predates the bad values.
  ckpt.wait()
  last = ckpt.latest_step()
  kept = (f'the last good checkpoint is step {last} in {ckpt.directory}' if last is not None
          else f'no checkpoint was written yet (in {ckpt.directory})')
  raise NonFiniteLossError(f'non-finite values {where}; training stopped, {kept}')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       resume_step: int | None = None) -> state_lib.TrainState:
  """Trains ``config`` in ``workdir`` and evaluates on ``config.data.eval`` periodically and
  at the end. Returns the final state.

  It resumes from the newest checkpoint that restores completely (``Checkpointer.resume``:
  damaged ones are skipped and kept aside), or from the one of ``resume_step`` (newer ones
  kept aside). SIGTERM or SIGINT stops it after the current step, which is saved
  (``jaxpose.preemption``).

  Raises:
    config.ConfigError: before anything is written, for a config that cannot run.
    ValueError: likewise, for a workdir where Orbax cannot keep checkpoints; or for a
      checkpoint past ``config.total_steps``.
    checkpoint.WorkdirLockedError: if another training run is using ``workdir``.
    preemption.Preempted: after saving the step reached when a signal came.
  """
  config_lib.validate(config)
  fileio.check_checkpoint_directory(workdir)
  fileio.gfile.makedirs(workdir)
  with checkpoint.workdir_lock(workdir), preemption.Watch() as watch:
    return _train_and_evaluate(config, workdir, resume_step, watch)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                        resume_step: int | None,
                        watch: preemption.Watch) -> state_lib.TrainState:
  mesh = parallel.make_mesh()
  model, state, shardings, step_fn = setup(config, mesh)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  position = None
  source = None
  newest = ckpt.latest_step() if resume_step is None else resume_step
  if newest is not None and newest > config.total_steps:
    raise ValueError(f'config.total_steps={config.total_steps} is below step {newest} of the '
                     f'checkpoint in {ckpt.directory}: expected total_steps >= {newest} to '
                     'train on (or --step=N to resume from an earlier checkpoint)')
  resumed = ckpt.resume(state, lambda meta: checkpoint.check_model_config(
      meta['config'], config, ckpt.directory), resume_step)
  if resumed is not None:
    state, meta = resumed
    position = meta['data_position']
    source = meta.get('init')
    logging.info('Resumed from step %d of %s', int(state.step), ckpt.directory)
    if config.init.checkpoint:
      logging.warning('Warm start from config.init.checkpoint=%s skipped: %s holds '
                      'checkpoints of its own, and resuming them wins', config.init.checkpoint,
                      ckpt.directory)
  elif config.init.checkpoint:
    state, source = state_lib.warm_start(state, config.init)
    logging.info('Warm start: %s taken from step %d of %s; a fresh run otherwise (step 0, '
                 'new optimiser state, data from the start)', ', '.join(source['modules']),
                 source['step'], source['checkpoint'])
  elif config.init.backbone:
    state = state_lib.load_backbone_into_state(state, config.init.backbone)
    logging.info('Backbone initialised from %s', config.init.backbone)
  start = int(state.step)

  writer = summary.Writer(workdir, just_logging=jax.process_index() > 0)
  if start == 0:
    parameter_overview.log_parameter_overview(state.params)
    hparams = traverse_util.flatten_dict(checkpoint.config_to_json(config), sep='.')
    writer.write_hparams({k: v for k, v in hparams.items()
                          if isinstance(v, (int, float, str, bool))})
  predict_fn = evaluate.make_predict_fn(config, model, mesh, shardings.variables())
  report = summary.Progress(config.total_steps, writer)
  stream = pipeline.TrainStream(config, position)
  start_position = dict(stream.position)
  mean_pose = None if stream.mean_pose is None else stream.mean_pose.tolist()

  def meta(step):
    # The stream runs PREFETCH batches ahead of the step: its position at ``step`` is
    # counted, not read.
    done = step - start
    return {'config': checkpoint.config_to_json(config),
            'data_position': {n: p + done * stream.local_shares[n]
                              for n, p in start_position.items()},
            'mean_training_pose': mean_pose, 'init': source}

  batches = parallel.prefetch(stream, mesh, PREFETCH)
  augment_fn = make_augment_fn(config, mesh)
  window, window_start = [], start + 1
  last_log = None  # (step, time) of the last window's end; the first window compiles
  if start == config.total_steps:
    logging.info('Nothing to train: the checkpoint of step %d in %s is at config.total_steps',
                 start, ckpt.directory)
  try:
    for step in range(start + 1, config.total_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        _, raw = next(batches)
        batch = augment_fn(raw)
        state, metrics = step_fn(state, batch)
      window.append(metrics)
      report(step)
      # Asked once per step on every process: several agree on the step through JAX.
      stop = watch.reached(step) and step < config.total_steps
      log = step % config.log_every_steps == 0 or step == config.total_steps
      save = stop or step % config.checkpoint_every_steps == 0 or step == config.total_steps
      if log or save:
        values = _fetch(window)
        _check_finite(values, window_start, ckpt)
        if log:
          scalars = {k: float(v.mean()) for k, v in values.items()}
          now = time.perf_counter()
          if last_log is not None:
            scalars['images_per_s_per_device'] = ((step - last_log[0]) * config.batch_size
                                                  / (now - last_log[1]) / jax.device_count())
          last_log = step, now
          writer.write_scalars(step, scalars)
          writer.flush()
          window, window_start = [], step + 1
      # A stopping run spends its grace period on the checkpoint alone.
      if not stop and config.image_every_steps and step % config.image_every_steps == 0:
        local_batch = {k: evaluate._local_rows(batch[k])  # pylint: disable=protected-access
                       for k in ('image', 'joints_2d', 'joints_2d_valid')}
        writer.write_images(step, {'train/predictions': evaluate.prediction_pictures(
            predict_fn, state.variables(), batch, local_batch)})
      if not stop and (step % config.eval_every_steps == 0 or step == config.total_steps):
        evaluate.evaluate_all(config, predict_fn, state.variables(), mesh, workdir, step,
                              writer, mean_pose)
      if save:
        # The optimiser state and batch statistics too: nothing non-finite is saved.
        if not parallel.all_finite(state):
          _stop(ckpt, f'at step {step}: the train state (optimiser state or batch '
                      'statistics) is not finite')
        ckpt.save(step, state, meta(step))
      if stop:
        ckpt.wait()
        raise preemption.Preempted(
            f'stopped at step {step} by SIGTERM or SIGINT, the checkpoint of step {step} saved '
            f'in {ckpt.directory}: run the same command again to resume from it')
  finally:
    ckpt.wait()
    ckpt.close()
    writer.close()
  return state


def main(argv):
  del argv
  train_and_evaluate(cli.FLAGS.config, cli.FLAGS.workdir, cli.FLAGS.step)


if __name__ == '__main__':
  cli.run(main)
