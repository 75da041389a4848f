"""Mixed precision: bfloat16 compute, float32 parameters, optimiser state and losses."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import benchmark
from jaxpose import parallel
from jaxpose import train
from jaxpose.models import posenet
from conftest import load_config

LOSSES = ('loss', 'loss_pose_3d', 'loss_bone', 'loss_heatmap', 'loss_projection')


def _one_step(config, batch):
  """(parameters before, state after, metrics) of one train step on one device."""
  mesh = parallel.make_mesh(jax.devices()[:1])
  _, state, _, step = train.setup(config, mesh)
  before = jax.device_get(state.params)
  state, metrics = step(state, parallel.to_global(batch, mesh))
  return before, jax.device_get(state), jax.device_get(metrics)


def _relative_error(a, b):
  """|a - b| / |b| over all leaves (Euclidean norms)."""
  diff = sum(float(np.sum((x - y)**2)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  norm = sum(float(np.sum(y**2)) for y in jax.tree.leaves(b))
  return (diff / norm)**0.5


def test_bfloat16_step_stays_close_to_float32():
  config = load_config('synthetic')
  batch = benchmark.random_batch(config, 8)
  start, full, full_metrics = _one_step(config, batch)
  config.model.dtype = 'bfloat16'
  start_bf16, mixed, mixed_metrics = _one_step(config, batch)

  for leaf in jax.tree.leaves((start_bf16, mixed.params, mixed.opt_state, mixed.batch_stats)):
    assert not jnp.issubdtype(leaf.dtype, jnp.floating) or leaf.dtype == jnp.float32
  # Tolerances are about 2× the largest differences measured on three random batches.
  for name in LOSSES:
    assert mixed_metrics[name].dtype == np.float32
    # Measured: up to 0.9% apart.
    np.testing.assert_allclose(mixed_metrics[name], full_metrics[name], rtol=0.02, err_msg=name)
  assert _relative_error(mixed.batch_stats, full.batch_stats) < 3e-4  # measured: 1.3e-4
  update = jax.tree.map(np.subtract, full.params, start)
  mixed_update = jax.tree.map(np.subtract, mixed.params, start_bf16)
  # Measured: 18-27% apart. Gradients carry bfloat16's 3 significant digits, BatchNorm's
  # backward pass subtracts nearly equal terms, and Adadelta's first step is about
  # sign(gradient) × 0.0045, so small gradients of uncertain sign dominate the difference.
  assert _relative_error(mixed_update, update) < 0.5


def test_unknown_dtype_names_the_config_field():
  config = load_config('synthetic')
  config.model.dtype = 'float16'
  model = posenet.create(config.model)
  with pytest.raises(ValueError, match='model.dtype'):
    model.init(jax.random.key(0), np.zeros((1, 64, 64, 3), np.float32))
