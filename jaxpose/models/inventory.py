"""The network's layers as shapes: every convolution and dense layer of one image's forward
pass, in call order, and the FLOPs counted from them. Nothing is computed (``eval_shape``).

``forward_flops`` is the analytic count behind the benchmark's MFU; ``conv_layers`` is the
list of convolutions that the PyTorch comparison (``benchmarks/compare_torch.py``) times one
by one in both frameworks.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxpose.models import ops
from jaxpose.models import posenet


def _layers(model: posenet.PoseNet, input_size: int) -> list[tuple]:
  """(module, input shape, output shape) of every convolution and dense layer of one
  image's forward pass, in call order."""
  layers = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, (nn.Conv, nn.Dense)):
      layers.append((context.module, args[0].shape, out.shape))
    return out

  image = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), image)
  return layers


def forward_flops(model: posenet.PoseNet, input_size: int) -> int:
  """FLOPs of one image's forward pass, counted from the layers' shapes (2 per
  multiply-add of every convolution and dense layer; the rest is negligible)."""
  total = 0
  for module, inputs, out in _layers(model, input_size):
    window = int(np.prod(module.kernel_size)) if isinstance(module, nn.Conv) else 1
    total += 2 * window * inputs[-1] * out[-1] * int(np.prod(out[1:-1]))
  return total


class ConvLayer(NamedTuple):
  """One convolution of the network, for one image: NHWC input without the batch, HWIO
  kernel, strides and explicit (low, high) padding per spatial axis."""
  input: tuple[int, ...]
  kernel: tuple[int, ...]
  strides: tuple[int, ...]
  padding: tuple[tuple[int, int], ...]
  # The train step needs the input's gradient of every convolution but the first, which
  # reads the image.
  input_grad: bool

  def output_shape(self, batch: int) -> tuple[int, ...]:
    """Its output's NHWC shape for ``batch`` images."""
    return lax.conv_general_shape_tuple((batch, *self.input), self.kernel, self.strides,
                                        self.padding, ops.NHWC)

  def flops(self) -> int:
    """FLOPs of its forward pass on one image."""
    return 2 * int(np.prod(self.kernel)) * int(np.prod(self.output_shape(1)[1:-1]))


def conv_layers(model: posenet.PoseNet, input_size: int) -> list[ConvLayer]:
  """Every convolution of one image's forward pass, in call order."""
  layers = []
  for module, inputs, _ in _layers(model, input_size):
    if not isinstance(module, nn.Conv):
      continue
    window = tuple(module.kernel_size)
    strides = module.strides or 1
    strides = (strides,) * len(window) if isinstance(strides, int) else tuple(strides)
    padding = nn.linear.canonicalize_padding(module.padding, len(window))
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(inputs[1:-1], window, strides, padding)
    layers.append(ConvLayer(tuple(inputs[1:]), (*window, inputs[-1], module.features), strides,
                            tuple(tuple(int(p) for p in pair) for pair in padding),
                            input_grad=bool(layers)))
  return layers
