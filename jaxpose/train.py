"""Training: the train state, the optimiser, one pure train step and the loop.

``python -m jaxpose.train --config=configs/synthetic.py[:smoke] --workdir=DIR`` runs
``train_and_evaluate(config, workdir)``; a second run in the same workdir resumes.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from clu import metric_writers
from clu import parameter_overview
from clu import periodic_actions

from jaxpose import checkpoint
from jaxpose import cli
from jaxpose import config as config_lib
from jaxpose import evaluate
from jaxpose import geometry
from jaxpose import losses
from jaxpose import parallel
from jaxpose.data import pipeline
from jaxpose.models import posenet
from jaxpose.tools import import_resnet50


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self):
    return {'params': self.params, 'batch_stats': self.batch_stats}


def learning_rate_schedule(optim: ml_collections.ConfigDict) -> optax.Schedule:
  return optax.exponential_decay(optim.learning_rate, optim.decay_steps, optim.decay_rate)


def pretrained_modules(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """The top-level modules that start from trained weights: those a warm start takes, or
  the ImageNet backbone. The learning-rate discrepancy (§4.2) applies to them."""
  return tuple(config.init.modules) if config.init.checkpoint else posenet.IMAGENET_MODULES


def make_optimizer(optim: ml_collections.ConfigDict,
                   pretrained: tuple[str, ...] = posenet.IMAGENET_MODULES
                   ) -> optax.GradientTransformation:
  """Adadelta with exponential decay; the rate of the ``pretrained`` top-level modules ×
  ``optim.pretrained_lr_multiplier``."""
  schedule = learning_rate_schedule(optim)
  base = lambda lr: optax.adadelta(lr, rho=optim.rho, eps=optim.eps)
  group = lambda name: 'pretrained' if name in pretrained else 'new'
  tx = optax.multi_transform(
      {'new': base(schedule),
       'pretrained': base(lambda s: schedule(s) * optim.pretrained_lr_multiplier)},
      lambda params: {k: jax.tree.map(lambda _: group(k), v) for k, v in params.items()})
  if optim.grad_clip_norm > 0:
    tx = optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), tx)
  return tx


def init_state(config: ml_collections.ConfigDict, model: posenet.PoseNet,
               tx: optax.GradientTransformation, rng) -> TrainState:
  size = config.data.input_size
  variables = model.init(rng, jnp.zeros((1, size, size, 3), jnp.float32), train=False)
  return TrainState(step=jnp.zeros((), jnp.int32), params=variables['params'],
                    batch_stats=variables['batch_stats'],
                    opt_state=tx.init(variables['params']))


def make_targets(batch: dict, config: ml_collections.ConfigDict) -> dict:
  """Loss targets: root-relative 3D in the model's frame (the crop's virtual camera when
  ``data.virtual_camera``), and the 2D labels."""
  pose = geometry.root_centre(batch['joints_3d'])
  if config.data.virtual_camera:
    rotation = geometry.virtual_camera_rotation(batch['focal'], batch['principal'],
                                                batch['has_intrinsics'], config.data.input_size)
    pose = geometry.to_crop_frame(pose, rotation)
  return dict(pose_3d=pose, has_3d=batch['has_3d'], joints_2d=batch['joints_2d'],
              joints_2d_valid=batch['joints_2d_valid'],
              ref_bone_lengths=batch['ref_bone_lengths'], has_ref_bones=batch['has_ref_bones'])


def train_step(state: TrainState, batch: dict, *, model: posenet.PoseNet,
               tx: optax.GradientTransformation, config: ml_collections.ConfigDict):
  """One optimisation step: (state, batch) -> (state, metrics). Pure; jit it with
  ``parallel.jit_train_step``."""
  targets = make_targets(batch, config)

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
      'learning_rate': learning_rate_schedule(config.optim)(state.step),
  }
  new_state = TrainState(step=state.step + 1, params=params, batch_stats=batch_stats,
                         opt_state=opt_state)
  return new_state, metrics


class NonFiniteLossError(FloatingPointError):
  pass


# Checked after every step: the losses (of the state before the step) and the norm of the
# parameters it produced, so that a step that breaks the state stops before it is saved.
def _non_finite(metrics: dict) -> list[str]:
  return [k for k, v in metrics.items()
          if (k.startswith('loss') or k == 'param_norm') and not np.isfinite(v)]


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def _stop(ckpt: checkpoint.Checkpointer, step: int, where: str):
  ckpt.wait()
  last = ckpt.latest_step()
  kept = (f'the last good checkpoint is step {last} in {ckpt.directory}' if last is not None
          else f'no checkpoint was written yet (in {ckpt.directory})')
  raise NonFiniteLossError(f'non-finite values at step {step}: {where}; training stopped, '
                           f'{kept}')


def _check_finite(metrics: dict, step: int, ckpt: checkpoint.Checkpointer) -> None:
  bad = _non_finite(metrics)
  if bad:
    _stop(ckpt, step, ', '.join(f'{k}={metrics[k]}' for k in bad))


def create_train_state(config, mesh, model, tx):
  """The train state, created already sharded over ``mesh``; returns (state, shardings)."""
  init = functools.partial(init_state, config, model, tx)
  return parallel.create_sharded(init, mesh, config.fsdp, jax.random.key(config.seed))


def warm_start(state: TrainState, init: ml_collections.ConfigDict) -> tuple[TrainState, dict]:
  """``state`` with the params and batch_stats of the modules ``init.modules`` taken from
  the checkpoint of another run (``init.checkpoint``, a workdir; its latest step or
  ``init.checkpoint_step``), placed like the arrays they replace. Everything else, the step
  and the optimiser state included, stays as created: a fresh run from those weights.

  Returns (state, where the weights came from: the source workdir, step, modules and the
  source run's config, for the new run's checkpoint meta).
  """
  modules = tuple(init.modules)
  unknown = sorted(set(modules) - set(state.params))
  if not modules or unknown:
    raise ValueError(f'config.init.modules={modules!r}: expected a non-empty subset of the '
                     f'model\'s top-level modules {sorted(state.params)}'
                     + (f'; unknown {unknown}' if unknown else ''))
  targets = {'params': {m: state.params[m] for m in modules},
             'batch_stats': {m: state.batch_stats[m] for m in modules if m in state.batch_stats}}
  try:
    variables, meta, step = checkpoint.restore_variables(init.checkpoint, targets,
                                                         init.checkpoint_step)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f'config.init.checkpoint={init.checkpoint}: {e}') from e
  state = state.replace(params={**state.params, **variables['params']},
                        batch_stats={**state.batch_stats, **variables['batch_stats']})
  source = dict(checkpoint=os.path.abspath(init.checkpoint), step=step, modules=list(modules),
                config=meta['config'])
  return state, source


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and evaluates
  on ``config.data.eval`` periodically and at the end. Returns the final state.

  Raises:
    config.ConfigError: before anything is written, for a config that cannot run.
    checkpoint.WorkdirLockedError: if another training run is using ``workdir``.
  """
  config_lib.validate(config)
  os.makedirs(workdir, exist_ok=True)
  with checkpoint.workdir_lock(workdir):
    return _train_and_evaluate(config, workdir)


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  mesh = parallel.make_mesh()
  model = posenet.create(config.model)
  tx = make_optimizer(config.optim, pretrained_modules(config))
  state, shardings = create_train_state(config, mesh, model, tx)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  position = None
  source = None
  if ckpt.latest_step() is not None:
    meta = ckpt.read_meta()
    checkpoint.check_model_config(meta['config'], config, ckpt.directory)
    state, meta = ckpt.restore(state)
    position = meta['data_position']
    source = meta.get('init')
    logging.info('Resumed from step %d of %s', int(state.step), ckpt.directory)
    if config.init.checkpoint:
      logging.warning('Warm start from config.init.checkpoint=%s skipped: %s holds '
                      'checkpoints of its own, and resuming them wins', config.init.checkpoint,
                      ckpt.directory)
  elif config.init.checkpoint:
    state, source = warm_start(state, config.init)
    logging.info('Warm start: %s taken from step %d of %s; a fresh run otherwise (step 0, '
                 'new optimiser state, data from the start)', ', '.join(source['modules']),
                 source['step'], source['checkpoint'])
  elif config.init.backbone:
    state = import_resnet50.load_into_state(state, config.init.backbone)
    logging.info('Backbone initialised from %s', config.init.backbone)
  start = int(state.step)

  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  if start == 0:
    parameter_overview.log_parameter_overview(state.params)
    writer.write_hparams({k: v for k, v in _flat(checkpoint.config_to_json(config)).items()
                          if isinstance(v, (int, float, str, bool))})
  step_fn = parallel.jit_train_step(
      functools.partial(train_step, model=model, tx=tx, config=config), mesh, shardings)
  report = periodic_actions.ReportProgress(num_train_steps=config.total_steps, writer=writer)
  stream = pipeline.TrainStream(config, position)
  mean_pose = None if stream.mean_pose is None else stream.mean_pose.tolist()
  meta = lambda: {'config': checkpoint.config_to_json(config),
                  'data_position': dict(stream.position), 'mean_training_pose': mean_pose,
                  'init': source}
  try:
    for step in range(start + 1, config.total_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        local_batch = next(stream)
        state, metrics = step_fn(state, parallel.to_global(local_batch, mesh))
      metrics = jax.device_get(metrics)
      _check_finite(metrics, step, ckpt)
      report(step)
      if step % config.log_every_steps == 0 or step == config.total_steps:
        writer.write_scalars(step, metrics)
      if config.image_every_steps and step % config.image_every_steps == 0:
        writer.write_images(step, {'train/predictions': evaluate.prediction_pictures(
            model, state.variables(), local_batch)})
      if step % config.eval_every_steps == 0 or step == config.total_steps:
        evaluate.evaluate_all(config, model, state.variables(), mesh, shardings.variables(),
                              workdir, step, writer, mean_pose)
      if step % config.checkpoint_every_steps == 0 or step == config.total_steps:
        # The optimiser state and batch statistics too: nothing non-finite is saved.
        if not _all_finite(state):
          _stop(ckpt, step, 'the train state (optimiser state or batch statistics)')
        ckpt.save(step, state, meta())
  finally:
    ckpt.wait()
    ckpt.close()
    writer.flush()
  return state


def _flat(tree: dict, prefix: str = '') -> dict:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v
  return out


def main(argv):
  del argv
  train_and_evaluate(cli.FLAGS.config, cli.FLAGS.workdir)


if __name__ == '__main__':
  cli.run(main)
