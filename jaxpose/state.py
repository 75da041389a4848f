"""How a train state comes to be: the state, the optimiser, creation already sharded over
the mesh, and initialisation from trained weights (ImageNet backbone weights in the npz
``python -m jaxpose.tools.import_resnet50`` writes, or another run's checkpoint)."""

from __future__ import annotations

import functools
import io
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxpose import checkpoint
from jaxpose import fileio
from jaxpose import parallel
from jaxpose.models import posenet

# The backbone the ImageNet weights fill: ResNet-50's conv2 … conv4 = res2 … res4.
IMAGENET_STAGE_SIZES = (3, 4, 6)


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


def create_train_state(config: ml_collections.ConfigDict, mesh, model: posenet.PoseNet,
                       tx: optax.GradientTransformation):
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
  source = dict(checkpoint=fileio.absolute(init.checkpoint), step=step, modules=list(modules),
                config=meta['config'])
  return state, source


def _flatten(tree: dict, prefix: str, leaf=np.asarray) -> dict:
  """{'prefix/a/b': leaf(tree['a']['b'])} for every leaf of nested dicts."""
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}/{k}', leaf))
    else:
      out[f'{prefix}/{k}'] = leaf(v)
  return out


def save_backbone(path: str, params: dict, stats: dict) -> None:
  """Writes backbone weights as a flat npz: ``params/<module path>`` and
  ``batch_stats/<module path>`` (e.g. ``params/res4f/conv3/kernel``), float32, relative to
  the backbone (``PoseNet``'s ``backbone`` collection entry)."""
  fileio.write_atomically(path, lambda f: np.savez(f, **_flatten(params, 'params'),
                                                   **_flatten(stats, 'batch_stats')),
                          binary=True)


def load_backbone(path: str) -> tuple[dict, dict]:
  """(params, batch_stats) nested dicts from a file written by ``save_backbone``."""
  if not fileio.gfile.exists(path):
    raise FileNotFoundError(f'config.init.backbone: {path} does not exist (convert the '
                            f'weights with `python -m jaxpose.tools.import_resnet50`)')
  trees = {'params': {}, 'batch_stats': {}}
  with fileio.gfile.GFile(path, 'rb') as f:
    contents = io.BytesIO(f.read())
  with np.load(contents) as data:
    for key in data.files:
      top, *names = key.split('/')
      if top not in trees or not names:
        raise ValueError(f'config.init.backbone: {path} has an entry {key!r}; expected '
                         f'params/… and batch_stats/… (a file written by import_resnet50)')
      node = trees[top]
      for name in names[:-1]:
        node = node.setdefault(name, {})
      node[names[-1]] = data[key]
  return trees['params'], trees['batch_stats']


def load_backbone_into_state(state: TrainState, path: str) -> TrainState:
  """``state`` with its backbone's params and batch_stats replaced by the file's, placed
  like the arrays they replace. Raises naming every path whose shape differs or that only
  one side has."""
  params, stats = load_backbone(path)
  targets = {'params': state.params['backbone'], 'batch_stats': state.batch_stats['backbone']}
  loaded = {'params': params, 'batch_stats': stats}
  problems = []
  for collection, target in targets.items():
    want = _flatten(target, collection, leaf=np.shape)
    have = _flatten(loaded[collection], collection, leaf=np.shape)
    for key in sorted(set(want) | set(have)):
      if key not in have:
        problems.append(f'{key}: missing in the file (model {want[key]})')
      elif key not in want:
        problems.append(f'{key}: not in the model (file {have[key]})')
      elif want[key] != have[key]:
        problems.append(f'{key}: file {have[key]} vs model {want[key]}')
  if problems:
    shown = '; '.join(problems[:8]) + (f'; … {len(problems) - 8} more'
                                       if len(problems) > 8 else '')
    raise ValueError(f'config.init.backbone={path} does not fit the model\'s backbone '
                     f'(backbone/…): {shown}. The file holds ResNet-50 (model.stage_sizes='
                     f'{IMAGENET_STAGE_SIZES}, model.width=64)')
  place = lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding)
  return state.replace(
      params={**state.params, 'backbone': jax.tree.map(place, params, targets['params'])},
      batch_stats={**state.batch_stats,
                   'backbone': jax.tree.map(place, stats, targets['batch_stats'])})


