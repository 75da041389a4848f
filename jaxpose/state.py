"""How a train state comes to be: the state, the optimiser, creation already sharded over
the mesh, and initialisation from trained weights (ImageNet backbone weights in the npz
``python -m jaxpose.tools.import_resnet50`` writes, or another run's checkpoint); and
``load_model``, the one way a model leaves a checkpoint (evaluation, prediction, warm starts,
``tools.loss_balance``)."""

from __future__ import annotations

import functools
import io
from typing import Any, Callable, NamedTuple

import flax
from flax import traverse_util
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


class LoadedModel(NamedTuple):
  """A model and its variables (params, batch_stats) as a checkpoint holds them, with the
  config given or the checkpoint's own, and the checkpoint's meta and step."""
  config: ml_collections.ConfigDict
  model: posenet.PoseNet | None  # None where ``load_model`` restored ``into`` given arrays
  variables: dict
  meta: dict
  step: int


def load_model(workdir: str, step: int | None = None,
               config: ml_collections.ConfigDict | None = None,
               sharding: jax.sharding.Sharding | Callable | None = None,
               into: dict | None = None) -> LoadedModel:
  """The model of ``workdir``'s checkpoint (the latest, or ``step``) and its variables: the
  one way a model leaves a checkpoint. Only the model variables are read (the optimiser
  state's structure depends on settings that may have changed since).

  Args:
    workdir: the run's folder.
    step: the checkpoint's step; None: the latest.
    config: the config whose model is built; it must describe the checkpoint's model. None:
      the checkpoint's own.
    sharding: where the variables go: one sharding for all, or a function from the abstract
      variables to a tree of them; None: the first device.
    into: arrays whose shapes and places the variables take instead (a warm start's parts
      of a new model): no model is built and no model config checked.
  """
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def load(ckpt, step):
    # Meta and variables of one step (``read`` looks again if training deletes it).
    meta = ckpt.read_meta(step)
    chosen = checkpoint.config_from_json(meta['config']) if config is None else config
    if into is not None:
      variables = ckpt.restore_variables(checkpoint.abstract_arrays(into), step)
      return LoadedModel(chosen, None, variables, meta, step)
    if config is not None:
      checkpoint.check_model_config(meta['config'], config, ckpt.directory)
    model = posenet.create(chosen.model)
    abstract = posenet.abstract_variables(model, int(chosen.data.input_size))
    placed = checkpoint.abstract_arrays(
        abstract, sharding(abstract) if callable(sharding) else sharding)
    return LoadedModel(chosen, model, ckpt.restore_variables(placed, step), meta, step)

  return checkpoint.read(workdir, step, load)


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
    loaded = load_model(init.checkpoint, init.checkpoint_step, into=targets)
  except (FileNotFoundError, ValueError) as e:
    raise type(e)(f'config.init.checkpoint={init.checkpoint}: {e}') from e
  variables = loaded.variables
  state = state.replace(params={**state.params, **variables['params']},
                        batch_stats={**state.batch_stats, **variables['batch_stats']})
  source = dict(checkpoint=fileio.absolute(init.checkpoint), step=loaded.step,
                modules=list(modules), config=loaded.meta['config'])
  return state, source


def _flatten(tree: dict, leaf=np.asarray) -> dict:
  """{'a/b': leaf(tree['a']['b'])} for every leaf of nested dicts."""
  return {k: leaf(v) for k, v in traverse_util.flatten_dict(tree, sep='/').items()}


def save_backbone(path: str, params: dict, stats: dict) -> None:
  """Writes backbone weights as a flat npz: ``params/<module path>`` and
  ``batch_stats/<module path>`` (e.g. ``params/res4f/conv3/kernel``), float32, relative to
  the backbone (``PoseNet``'s ``backbone`` collection entry)."""
  fileio.write_atomically(
      path, lambda f: np.savez(f, **_flatten({'params': params, 'batch_stats': stats})),
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
  differences = checkpoint.shape_differences(_flatten(targets, np.shape),
                                             _flatten(loaded, np.shape), 'file')
  if differences:
    raise ValueError(f'config.init.backbone={path} does not fit the model\'s backbone '
                     f'(backbone/…): {differences}. The file holds ResNet-50 (model.stage_sizes='
                     f'{IMAGENET_STAGE_SIZES}, model.width=64)')
  place = lambda new, old: jax.device_put(np.asarray(new, old.dtype), old.sharding)
  return state.replace(
      params={**state.params, 'backbone': jax.tree.map(place, params, targets['params'])},
      batch_stats={**state.batch_stats,
                   'backbone': jax.tree.map(place, stats, targets['batch_stats'])})


