"""The benchmark's figures: the network's layer inventory (``jaxpose.models.inventory``:
every convolution once per call, with the shapes, strides and padding it runs at) and the
analytic FLOP count built on it, against XLA's own count of the compiled programs."""

import collections

import jax
import jax.numpy as jnp
import numpy as np

import pytest

from conftest import load_config
from jaxpose import benchmark
from jaxpose.models import inventory
from jaxpose.models import posenet


def test_conv_layers_are_the_networks_convolutions():
  config = load_config('synthetic', 'paper_model')
  model = posenet.create(config.model)
  size = config.data.input_size
  layers = inventory.conv_layers(model, size)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                                             train=False))['params']
  kernels = [leaf.shape for leaf in jax.tree.leaves(params) if leaf.ndim == 4]
  # Each convolution runs once per image: the layers are the network's 4-D kernels.
  assert collections.Counter(layer.kernel for layer in layers) == collections.Counter(kernels)
  first, *rest = layers
  # ResNet's stem: 7×7/2, padded by 3, on the image; the only one without an input gradient.
  assert first == inventory.ConvLayer((size, size, 3), (7, 7, 3, 64), (2, 2), ((3, 3), (3, 3)),
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
  assert inventory.forward_flops(model, size) == sum(l.flops() for l in layers) + dense
  # ResNet-50's 3×3 convolution of res2 on a 64×64 map: 2 · 9 · 64 · 64 · 64².
  res2 = [l for l in layers if l.kernel == (3, 3, 64, 64)]
  assert len(res2) == 3 and res2[0].flops() == 2 * 9 * 64 * 64 * (size // 4)**2


def test_the_figures_count_the_flops_xla_compiles():
  """The train step and inference of the smoke network, timed: XLA's count of the compiled
  programs' FLOPs (the ``flops_per_image`` of both, ``fraction_of_peak``) agrees with the
  analytic count (3 × the forward pass per trained image: ``mfu``), and the network runs
  below the peak its fractions are taken of."""
  config = load_config('synthetic')
  figures = benchmark.benchmark(config, ['train', 'infer'], timed_steps=5, infer_batch=16)
  forward = inventory.forward_flops(posenet.create(config.model), config.data.input_size)
  train, infer = figures['train'], figures['infer']
  assert train['analytic_flops_per_image'] == 3 * forward
  # Measured 0.98 and 0.99 (jaxlib 0.10.2): XLA also counts normalisation, activations, the
  # loss and the optimiser, which the analytic count leaves out.
  assert train['flops_per_image'] == pytest.approx(3 * forward, rel=0.1)
  assert infer['flops_per_image'] == pytest.approx(forward, rel=0.1)
  assert (train['batch_size'], infer['batch_size']) == (config.batch_size, 16)
  for section in (train, infer):
    assert section['images_per_s'] > 0
    assert 0 < section['fraction_of_peak'] < 1
  assert 0 < train['mfu'] < 1
  assert 0 < infer['latency_ms_p50'] <= infer['latency_ms_p90']
