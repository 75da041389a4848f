"""How much each loss term pulls on each part of the network, for choosing ``config.loss``.

  python -m jaxpose.tools.loss_balance --config=configs/synthetic.py [--workdir=W] [--batches=4]

prints JSON: for each term, its unweighted value, its weight, and the norm of the gradient of
the weighted term with respect to each top-level module's parameters (the backbone, res5a
and the latent layer are shared by every term), averaged over ``--batches`` batches of the
config's training stream; at initialisation, or at the latest checkpoint of ``--workdir``
(which must hold the config's model). Each number is given over the whole batch and over its
3D-labelled and its 2D-only examples alone (``subsets``): the 2D-only rows show whether
in-the-wild images reach the 3D output (the projection and bone-length terms' gradients on
``lifter_*``/``pose``).
"""

from __future__ import annotations

import functools
import json

import jax
import ml_collections
import numpy as np
import optax
from absl import flags

from jaxpose import cli
from jaxpose import losses
from jaxpose import parallel
from jaxpose import state as state_lib
from jaxpose import train
from jaxpose.data import pipeline
from jaxpose.models import posenet

SUBSETS = ('all', '3d', '2d_only')


def _restrict(targets: dict, subset: str) -> dict:
  """The targets with every example outside ``subset`` masked out of every term."""
  if subset == 'all':
    return targets
  keep = targets['has_3d'] if subset == '3d' else ~targets['has_3d']
  return dict(targets, has_3d=targets['has_3d'] & keep,
              joints_2d_valid=targets['joints_2d_valid'] & keep[:, None],
              has_ref_bones=targets['has_ref_bones'] & keep)


def term_gradients(variables: dict, batch: dict, *, model: posenet.PoseNet,
                   config: ml_collections.ConfigDict) -> dict:
  """subset -> term -> (value, {module: gradient norm of weight × term}); pure."""
  targets = losses.make_targets(batch, config)
  weights = dict(config.loss)

  def terms(params, subset):
    outputs, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                             batch['image'], train=True, mutable=['batch_stats'])
    return losses.compute(outputs, _restrict(targets, subset), weights,
                          config.data.input_size, config.data.heatmap_sigma)[1]

  out = {}
  for subset in SUBSETS:
    values = terms(variables['params'], subset)
    out[subset] = {}
    for name in values:
      grads = jax.grad(lambda p: weights[name] * terms(p, subset)[name])(variables['params'])
      out[subset][name] = (values[name], {m: optax.global_norm(g) for m, g in grads.items()})
  return out


def measure(config: ml_collections.ConfigDict, workdir: str | None, batches: int) -> dict:
  """The report of the module docstring."""
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  if workdir:
    loaded = state_lib.load_model(workdir, None, config, parallel.replicated(mesh))
    model, variables, step = loaded.model, loaded.variables, loaded.step
  else:
    model = posenet.create(config.model)
    tx = state_lib.make_optimizer(config.optim)
    state, _ = state_lib.create_train_state(config, mesh, model, tx)
    variables, step = state.variables(), 0
  fn = parallel.jit_summary(functools.partial(term_gradients, model=model, config=config),
                            mesh, parallel.replicated(mesh))
  stream = pipeline.TrainStream(config)
  augment = train.make_augment_fn(config, mesh)
  results = [jax.device_get(fn(variables, augment(parallel.to_global(next(stream), mesh))))
             for _ in range(batches)]
  mean = lambda xs: float(np.mean(xs))
  report = {'step': step, 'batches': batches, 'batch_size': config.batch_size,
            'input_size': config.data.input_size, 'subsets': {}}
  for subset in SUBSETS:
    report['subsets'][subset] = {
        name: {'value': mean([r[subset][name][0] for r in results]),
               'weight': float(config.loss[name]),
               'grad_norm': {m: mean([r[subset][name][1][m] for r in results])
                             for m in results[0][subset][name][1]}}
        for name in results[0][subset]}
  return report


def main(argv):
  del argv
  fl = flags.FLAGS
  print(json.dumps(measure(fl.config, fl.workdir, fl.batches), indent=1))


def define_flags():
  flags.DEFINE_integer('batches', 4, 'Training batches to average over.', lower_bound=1)


if __name__ == '__main__':
  cli.run(main, required=('config',), define_flags=define_flags)
