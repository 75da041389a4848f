"""The benchmark's inventory of the network's convolutions: every convolution once per call,
with the shapes, strides and padding it runs at, and the FLOP count built on it."""

import collections

import jax
import jax.numpy as jnp
import numpy as np

from conftest import load_config
from jaxpose import benchmark
from jaxpose.models import posenet


def test_conv_layers_are_the_networks_convolutions():
  config = load_config('synthetic', 'paper_model')
  model = posenet.create(config.model)
  size = config.data.input_size
  layers = benchmark.conv_layers(model, size)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                             train=False))['params']
  kernels = [leaf.shape for leaf in jax.tree.leaves(params) if leaf.ndim == 4]
  # Each convolution runs once per image: the layers are the network's 4-D kernels.
  assert collections.Counter(layer.kernel for layer in layers) == collections.Counter(kernels)
  first, *rest = layers
  # ResNet's stem: 7×7/2, padded by 3, on the image; the only one without an input gradient.
  assert first == benchmark.ConvLayer((size, size, 3), (7, 7, 3, 64), (2, 2), ((3, 3), (3, 3)),
                                      input_grad=False)
  assert all(layer.input_grad for layer in rest)
  # Every 3×3 is padded by 1 at stride 1 and every 1×1 unpadded; spatial sizes halve from
  # size / 4 after the stem and the pool.
  for layer in rest:
    assert layer.input[0] in (size // 4, size // 8, size // 16)
    if layer.kernel[:2] == (3, 3):
      assert (layer.strides, layer.padding) == ((1, 1), ((1, 1), (1, 1)))
    else:
      assert layer.kernel[:2] == (1, 1) and layer.padding == ((0, 0), (0, 0))
  # The analytic count: the convolutions' FLOPs plus 2 · in · out of each dense layer.
  dense = sum(2 * int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(params)
              if leaf.ndim == 2)
  assert benchmark.forward_flops(model, size) == sum(l.flops() for l in layers) + dense
  # ResNet-50's 3×3 convolution of res2 on a 64×64 map: 2 · 9 · 64 · 64 · 64².
  res2 = [l for l in layers if l.kernel == (3, 3, 64, 64)]
  assert len(res2) == 3 and res2[0].flops() == 2 * 9 * 64 * 64 * (size // 4)**2
