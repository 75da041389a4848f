"""ResNet-50 in the original (Caffe/Keras) arrangement, up to res4f.

The original arrangement puts the stride-2 of a downsampling block on its first 1×1
convolution (torchvision's "v1.5" moves it to the 3×3); ImageNet weights converted from
Keras therefore fit these modules exactly. Blocks are named as in the original release
(res2a, res2b, …, res4f) so that converted weights and the paper's text line up.
"""

from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxpose.models import ops


# Keras' ResNet-50 uses BatchNorm epsilon 1.001e-5; using the same value keeps converted
# ImageNet weights bit-faithful.
BN_EPSILON = 1.001e-5


def block_name(stage: int, index: int) -> str:
  """'res4d' for stage 4 (res2 is the first residual stage), block index 3."""
  return f'res{stage}{chr(ord("a") + index)}'


class Bottleneck(nn.Module):
  """1×1 (strided) → 3×3 → 1×1 bottleneck with a projection shortcut where shapes change."""
  width: int
  out_features: int
  strides: int = 1
  dtype: Any = jnp.float32  # of the computation; parameters are float32

  @nn.compact
  def __call__(self, x, train: bool):
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype,
                             conv_general_dilated=ops.conv_general_dilated)
    # In bfloat16 BatchNorm still reduces and keeps its statistics in float32.
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=BN_EPSILON, dtype=self.dtype)
    shortcut = x
    if self.strides != 1 or x.shape[-1] != self.out_features:
      shortcut = conv(self.out_features, (1, 1), (self.strides, self.strides),
                      name='proj_conv')(x)
      shortcut = norm(name='proj_bn')(shortcut)
    y = conv(self.width, (1, 1), (self.strides, self.strides), name='conv1')(x)
    y = nn.relu(norm(name='bn1')(y))
    y = conv(self.width, (3, 3), padding=((1, 1), (1, 1)), name='conv2')(y)
    y = nn.relu(norm(name='bn2')(y))
    y = conv(self.out_features, (1, 1), name='conv3')(y)
    # Zero-initialised last scale: each new block starts as the identity, which trains
    # from scratch more stably (Goyal et al. 2017); converted weights overwrite it.
    y = norm(name='bn3', scale_init=nn.initializers.zeros)(y)
    return nn.relu(y + shortcut)


class Backbone(nn.Module):
  """conv1 → pool → res2 … res4 (ResNet-50: stage_sizes (3, 4, 6), width 64).

  Returns the output of the last block and of block ``tap_block`` of the last stage
  (res4d in the paper's network, whose first J channels are heatmaps).
  """
  stage_sizes: Sequence[int] = (3, 4, 6)
  width: int = 64
  tap_block: int = 3
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    if not 0 <= self.tap_block < self.stage_sizes[-1]:
      raise ValueError(f'model.heatmap_block={self.tap_block} is not a block of the last '
                       f'stage, which has {self.stage_sizes[-1]} blocks')
    x = nn.Conv(self.width, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                dtype=self.dtype, name='conv1')(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPSILON,
                     dtype=self.dtype, name='bn_conv1')(x)
    x = nn.relu(x)
    # Keras pads by 1 and pools 3×3/2 with VALID padding; the same as SAME-style (1, 1).
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    tap = None
    for s, size in enumerate(self.stage_sizes):
      width = self.width * 2**s
      for b in range(size):
        strides = 2 if s > 0 and b == 0 else 1
        x = Bottleneck(width, width * 4, strides, dtype=self.dtype,
                       name=block_name(s + 2, b))(x, train)
        if s == len(self.stage_sizes) - 1 and b == self.tap_block:
          tap = x
    return x, tap


def stride(num_stages: int) -> int:
  """Input pixels per output cell: conv1, the max pool and every stage after the first
  halve the resolution (``output_size`` is ``size / stride`` for a multiple of it)."""
  return 2 ** (num_stages + 1)


def output_size(size: int, num_stages: int) -> int:
  """Spatial size of the backbone's output for a square input of ``size`` pixels."""
  size = (size + 6 - 7) // 2 + 1   # conv1 7×7/2, pad 3
  size = (size + 2 - 3) // 2 + 1   # max pool 3×3/2, pad 1
  for _ in range(num_stages - 1):
    size = (size - 1) // 2 + 1      # 1×1/2 convolution
  return size


