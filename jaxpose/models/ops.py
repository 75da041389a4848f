"""Convolution and max pooling with backward passes that XLA:CPU runs fast.

The forward passes are ``lax``'s own, so outputs are unchanged. On CPU, two backward passes
are written by hand instead of being derived by JAX:

* A 1×1 convolution's kernel gradient is one matrix product over all pixels,
  ``x(N·H·W, C)ᵀ · dy(N·H·W, D)``. JAX derives it as a convolution whose batch and feature
  axes are swapped; XLA:CPU lays both operands out feature-major for it, with transposes
  that it fuses with recomputations of the BatchNorm/ReLU chain and that took about 1.2 of
  the paper network's 2.8 s train step (256 px, batch 8, 2 cores). The product reads the
  activations where they lie.
* Max pooling's gradient: XLA:CPU expands ``select_and_scatter`` into index arrays and a
  scatter over the whole padded input (about 0.2 s of the same step). Here each window
  offset routes the output gradient to the inputs that equal the maximum, the first in
  row-major window order on ties, as ``select_and_scatter`` does.

Other platforms keep JAX's derivatives (``lax.platform_dependent`` decides when the
computation is lowered, so an export for several platforms carries each one's own).
Gradients equal the plain path's (the kernel gradient up to the order of summation):
``tests/test_ops.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax


_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _is_pointwise(lhs_shape, rhs_shape, padding, lhs_dilation, rhs_dilation,
                  feature_group_count, batch_group_count, dimension_numbers) -> bool:
  """A plain 1×1 convolution over NHWC inputs and HWIO kernels (no padding, dilation or
  groups), which is a matrix product per pixel."""
  if len(rhs_shape) != 4 or tuple(rhs_shape[:2]) != (1, 1) or dimension_numbers is None:
    return False
  ones = lambda d: d is None or all(v == 1 for v in d)
  unpadded = padding in ('SAME', 'VALID') or all(tuple(p) == (0, 0) for p in padding)
  layout = lax.conv_dimension_numbers(lhs_shape, rhs_shape, dimension_numbers)
  return (unpadded and ones(lhs_dilation) and ones(rhs_dilation) and feature_group_count == 1
          and batch_group_count == 1
          and layout == lax.conv_dimension_numbers(lhs_shape, rhs_shape, _NHWC))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _pointwise_conv(x, kernel, strides, precision):
  return lax.conv_general_dilated(x, kernel, strides, 'VALID', precision=precision,
                                  dimension_numbers=_NHWC)


def _pointwise_conv_fwd(x, kernel, strides, precision):
  return _pointwise_conv(x, kernel, strides, precision), (x, kernel)


def _pointwise_conv_bwd(strides, precision, residuals, dy):
  x, kernel = residuals
  conv = lambda x: lax.conv_general_dilated(x, kernel, strides, 'VALID', precision=precision,
                                            dimension_numbers=_NHWC)
  dx, = jax.vjp(conv, x)[1](dy)
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


def _reduce_window_max(x, window, strides, padding):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1),
                           ((0, 0), *padding, (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_pool(x, window, strides, padding):
  return _reduce_window_max(x, window, strides, padding)


def _max_pool_fwd(x, window, strides, padding):
  y = _max_pool(x, window, strides, padding)
  return y, (x, y)


def _max_pool_bwd(window, strides, padding, residuals, dy):
  x, y = residuals
  padded = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  out_h, out_w = y.shape[1:3]
  (sh, sw), zero = strides, jnp.zeros((), dy.dtype)
  taken = jnp.zeros(y.shape, bool)
  grad = jnp.zeros(padded.shape, dy.dtype)
  for i in range(window[0]):
    for j in range(window[1]):
      # The input each output's window reads at offset (i, j) of the window.
      ends = (i + (out_h - 1) * sh + 1, j + (out_w - 1) * sw + 1)
      values = lax.slice(padded, (0, i, j, 0), (x.shape[0], *ends, x.shape[3]),
                         (1, sh, sw, 1))
      first = (values == y) & ~taken
      taken = taken | first
      # Back to the padded input's grid: offset, then every stride-th position.
      grad = grad + lax.pad(jnp.where(first, dy, zero), zero,
                            ((0, 0, 0), (i, padded.shape[1] - ends[0], sh - 1),
                             (j, padded.shape[2] - ends[1], sw - 1), (0, 0, 0)))
  (top, _), (left, _) = padding
  return (grad[:, top:top + x.shape[1], left:left + x.shape[2], :],)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x, window: tuple[int, int], strides: tuple[int, int],
             padding: tuple[tuple[int, int], tuple[int, int]]):
  """``flax.linen.max_pool`` of NHWC ``x`` with explicit padding, whose gradient avoids
  XLA:CPU's scatter on CPU."""
  window, strides = tuple(window), tuple(strides)
  padding = tuple(tuple(p) for p in padding)
  return lax.platform_dependent(
      x, cpu=lambda x: _max_pool(x, window, strides, padding),
      default=lambda x: _reduce_window_max(x, window, strides, padding))
