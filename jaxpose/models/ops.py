"""Convolution with a backward pass that XLA:CPU runs fast.

A 1×1 convolution's kernel gradient is one matrix product over all pixels,
``x(N·H·W, C)ᵀ · dy(N·H·W, D)``. JAX derives it as a convolution whose batch and feature
axes are swapped; XLA:CPU lays both operands out feature-major for it, with transposes that
it fuses with recomputations of the BatchNorm/ReLU chain and that took much of the paper
network's train step (docs/performance.md). On CPU the product is written here instead and
reads the activations where they lie; the forward pass and the input gradient stay
``lax``'s own. Other platforms keep JAX's derivative
(``lax.platform_dependent`` decides when the computation is lowered, so an export for
several platforms carries each one's own). Gradients equal the plain path's up to the
order of summation: ``tests/test_ops.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


# The network's layout: NHWC activations, HWIO kernels.
NHWC = ('NHWC', 'HWIO', 'NHWC')


def _is_pointwise(lhs_shape, rhs_shape, padding, lhs_dilation, rhs_dilation,
                  feature_group_count, batch_group_count, dimension_numbers) -> bool:
  """A plain 1×1 convolution over NHWC inputs and HWIO kernels (no padding, dilation or
  groups), which is a matrix product per pixel."""
  if len(rhs_shape) != 4 or tuple(rhs_shape[:2]) != (1, 1):
    return False
  ones = lambda d: d is None or all(v == 1 for v in d)
  unpadded = padding in ('SAME', 'VALID') or all(tuple(p) == (0, 0) for p in padding)
  layout = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return (unpadded and ones(lhs_dilation) and ones(rhs_dilation) and feature_group_count == 1
          and batch_group_count == 1
          and layout == lax.conv_dimension_numbers(lhs_shape, rhs_shape, NHWC))


def _conv(x, kernel, strides, precision):
  return lax.conv_general_dilated(x, kernel, strides, 'VALID', precision=precision,
                                  dimension_numbers=NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _pointwise_conv(x, kernel, strides, precision):
  return _conv(x, kernel, strides, precision)


def _pointwise_conv_fwd(x, kernel, strides, precision):
  return _pointwise_conv(x, kernel, strides, precision), (x, kernel)


def _pointwise_conv_bwd(strides, precision, residuals, dy):
  x, kernel = residuals
  dx, = jax.vjp(lambda x: _conv(x, kernel, strides, precision), x)[1](dy)
  sampled = x[:, ::strides[0], ::strides[1], :]  # The pixels a strided 1×1 kernel reads.
  dkernel = lax.dot_general(sampled.reshape(-1, x.shape[-1]), dy.reshape(-1, dy.shape[-1]),
                            (((0,), (0,)), ((), ())), precision=precision,
                            preferred_element_type=jnp.float32)
  return dx, dkernel.astype(kernel.dtype).reshape(kernel.shape)


_pointwise_conv.defvjp(_pointwise_conv_fwd, _pointwise_conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` (the signature ``flax.linen.Conv`` calls), with the
  kernel gradient of 1×1 convolutions as a matrix product on CPU."""
  plain = functools.partial(
      lax.conv_general_dilated, window_strides=window_strides, padding=padding,
      lhs_dilation=lhs_dilation, rhs_dilation=rhs_dilation,
      dimension_numbers=dimension_numbers, feature_group_count=feature_group_count,
      batch_group_count=batch_group_count, precision=precision,
      preferred_element_type=preferred_element_type)
  if preferred_element_type is not None or not _is_pointwise(
      lhs.shape, rhs.shape, padding, lhs_dilation, rhs_dilation, feature_group_count,
      batch_group_count, dimension_numbers):
    return plain(lhs, rhs)
  # A 1×1 kernel never needs padding: SAME pads by max((out - 1)·s + 1 - in, 0) = 0.
  cpu = lambda x, k: _pointwise_conv(x, k, tuple(window_strides), precision)
  return lax.platform_dependent(lhs, rhs, cpu=cpu, default=plain)
