"""jaxpose.models.ops: the same outputs and gradients as lax's convolution, and on CPU the
hand-written kernel gradient is the one compiled."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from conftest import load_config
from conftest import loss_and_grads
from jaxpose import benchmark
from jaxpose import losses
from jaxpose.models import ops
from jaxpose.models import posenet

NHWC = ops.NHWC


def _relative(a, b):
  return float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))


@pytest.mark.parametrize('strides,padding,size', [((1, 1), 'SAME', 12), ((2, 2), 'SAME', 11),
                                                   ((2, 2), 'VALID', 12),
                                                   ((1, 1), ((0, 0), (0, 0)), 9)])
def test_pointwise_convolution_matches_lax(strides, padding, size):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(3, size, size + 2, 5)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(1, 1, 5, 7)), jnp.float32)

  def loss(conv, x, kernel):
    y = conv(x, kernel, strides, padding, dimension_numbers=NHWC)
    return jnp.sum(y * jnp.cos(y)), y  # A non-trivial output gradient.

  (_, ours), (dx, dk) = jax.jit(jax.value_and_grad(
      lambda x, k: loss(ops.conv_general_dilated, x, k), (0, 1), has_aux=True))(x, kernel)
  (_, plain), (dx0, dk0) = jax.jit(jax.value_and_grad(
      lambda x, k: loss(lax.conv_general_dilated, x, k), (0, 1), has_aux=True))(x, kernel)
  # The forward pass and the input gradient are lax's own; the kernel gradient sums over
  # the pixels in another order.
  np.testing.assert_array_equal(ours, plain)
  np.testing.assert_array_equal(dx, dx0)
  assert dk.shape == dk0.shape == kernel.shape
  assert _relative(dk, dk0) < 1e-5


def test_pointwise_convolution_in_bfloat16_keeps_the_kernel_dtype():
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(2, 8, 8, 16)), jnp.bfloat16)
  kernel = jnp.asarray(rng.normal(size=(1, 1, 16, 4)), jnp.bfloat16)
  grad = lambda conv: jax.jit(jax.grad(lambda k: jnp.sum(
      conv(x, k, (1, 1), 'SAME', dimension_numbers=NHWC).astype(jnp.float32) ** 2)))(kernel)
  ours, plain = grad(ops.conv_general_dilated), grad(lax.conv_general_dilated)
  assert ours.dtype == plain.dtype == jnp.bfloat16
  assert _relative(ours.astype(jnp.float32), plain.astype(jnp.float32)) < 2e-2


def test_other_convolutions_are_lax_itself():
  x = jnp.ones((1, 6, 6, 2))
  kernel = jnp.ones((3, 3, 2, 4))
  ours = jax.make_jaxpr(lambda x, k: ops.conv_general_dilated(
      x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=NHWC))(x, kernel)
  assert [e.primitive.name for e in ours.eqns] == ['conv_general_dilated']


def test_cpu_compiles_the_hand_written_kernel_gradient():
  x = jnp.ones((2, 16, 16, 8))
  kernel = jnp.ones((1, 1, 8, 4))

  def loss(x, kernel):
    return jnp.sum(ops.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                            dimension_numbers=NHWC) ** 2)

  # What is handed to XLA (which may rewrite small convolutions into products itself):
  # the forward pass and the input gradient are convolutions, the kernel gradient a product.
  lowered = jax.jit(jax.grad(loss, (0, 1))).lower(x, kernel).as_text()
  assert lowered.count('stablehlo.convolution') == 2
  assert lowered.count('stablehlo.dot_general') == 1


def test_network_gradients_equal_the_plain_path(monkeypatch):
  """The whole network (smoke config): loss and gradients with the hand-written kernel
  gradients against JAX's derived ones."""
  config = load_config('synthetic')
  model = posenet.create(config.model)
  batch = benchmark.random_batch(config, 4)
  images, targets = batch['image'], losses.make_targets(batch, config)
  variables = model.init(jax.random.key(0), images[:1], train=False)
  (loss, _), grads = jax.device_get(loss_and_grads(model, variables, images, targets, config))
  monkeypatch.setattr(ops.lax, 'platform_dependent',
                      lambda *args, cpu, default: default(*args))
  (loss0, _), grads0 = jax.device_get(
      loss_and_grads(model, variables, images, targets, config))
  np.testing.assert_allclose(loss, loss0, rtol=1e-6)
  flat, flat0 = jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(grads0)
  assert len(flat) == len(flat0) > 50
  for (path, g), g0 in zip(flat, flat0):
    scale = max(float(np.abs(g0).max()), 1e-12)
    np.testing.assert_allclose(g / scale, g0 / scale, atol=1e-5,
                               err_msg=jax.tree_util.keystr(path))
