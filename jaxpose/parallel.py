"""Every jit and sharding decision of jaxpose, in one place.

One mesh axis, ``data``: the batch is split over it, the parameters and optimiser state are
replicated (or, with ``fsdp``, the big latent kernel is split over it too). Under jit with a
batch-sharded input, BatchNorm computes statistics over the global batch by itself (XLA
inserts the all-reduce), so the step code has no pmean and no axis names.
"""

from __future__ import annotations

import collections
import itertools
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA = 'data'


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: all devices of all processes)."""
  devices = np.asarray(jax.devices() if devices is None else devices)
  # Auto axes: GSPMD propagates shardings (the default Explicit axes would need per-op
  # annotations for FSDP-sharded kernels).
  return Mesh(devices, (DATA,), axis_types=(jax.sharding.AxisType.Auto,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA))


def state_sharding(mesh: Mesh, abstract_state, fsdp: bool):
  """Replicated everywhere, except with ``fsdp`` the latent layer's kernel (and its
  optimiser slots) split along its input axis, where that axis divides evenly."""
  size = mesh.shape[DATA]

  def spec(path, leaf):
    keys = [getattr(k, 'key', getattr(k, 'name', None)) for k in path]
    if (fsdp and 'latent' in keys and keys[-1] == 'kernel' and leaf.ndim == 2
        and leaf.shape[0] % size == 0):
      return NamedSharding(mesh, P(DATA, None))
    return replicated(mesh)

  return jax.tree_util.tree_map_with_path(spec, abstract_state)


def create_sharded(init_fn: Callable[..., Any], mesh: Mesh, fsdp: bool, *args):
  """Runs ``init_fn(*args)`` under jit so that its outputs are created already sharded."""
  abstract = jax.eval_shape(init_fn, *args)
  shardings = state_sharding(mesh, abstract, fsdp)
  return jax.jit(init_fn, out_shardings=shardings)(*args), shardings


def jit_train_step(step_fn, mesh: Mesh, state_shardings):
  """``step_fn(state, batch) -> (state, metrics)`` compiled once: batch split over
  ``data``, state donated (updated in place), metrics replicated."""
  return jax.jit(step_fn, in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=(state_shardings, replicated(mesh)), donate_argnums=(0,))


def jit_predict(predict_fn, mesh: Mesh, state_shardings):
  """``predict_fn(state, batch) -> outputs`` with outputs split like the batch."""
  return jax.jit(predict_fn, in_shardings=(state_shardings, batch_sharding(mesh)),
                 out_shardings=batch_sharding(mesh))


def jit_summary(summary_fn, mesh: Mesh, variable_shardings):
  """``summary_fn(variables, batch) -> small outputs`` (scalars, norms), replicated."""
  return jax.jit(summary_fn, in_shardings=(variable_shardings, batch_sharding(mesh)),
                 out_shardings=replicated(mesh))


@jax.jit
def all_finite(tree) -> jax.Array:
  """Whether every leaf of ``tree`` is finite: one reduction where the leaves live."""
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def jit_data_parallel(fn, mesh: Mesh):
  """``fn`` of one array split over ``data`` along its first axis, output split alike."""
  return jax.jit(fn, in_shardings=batch_sharding(mesh), out_shardings=batch_sharding(mesh))


def jit_local(fn, static_argnums=()):
  """``fn`` compiled for arrays on one device, unsharded: photos, video frames and exported
  models, which run on one device whatever the mesh."""
  return jax.jit(fn, static_argnums=static_argnums)


def prefetch(local_batches: Iterator[dict], mesh: Mesh, size: int) -> Iterator[tuple]:
  """(local batch, global batch) pairs with ``size`` global batches already on the devices:
  the transfer of the next batches overlaps the step that runs on the current one."""
  queue = collections.deque()

  def put(n):
    for local in itertools.islice(local_batches, n):
      queue.append((local, to_global(local, mesh)))

  put(size)
  while queue:
    yield queue.popleft()
    put(1)


def to_global(local_batch: dict, mesh: Mesh) -> dict:
  """This process's share of a batch (numpy) → global arrays split over ``data``."""
  sharding = batch_sharding(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x),
                      local_batch)
