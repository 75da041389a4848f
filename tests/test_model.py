"""The network: the paper configuration's size, outputs and parameter groups."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import config as base
from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.models import posenet

J = skeleton.NUM_JOINTS


def _bottleneck(cin, width, cout, projection):
  # conv1 1×1, conv2 3×3, conv3 1×1 without bias, each followed by BatchNorm (scale, bias).
  n = cin * width + 2 * width + 9 * width * width + 2 * width + width * cout + 2 * cout
  return n + (cin * cout + 2 * cout if projection else 0)


def _paper_parameter_count(input_size=256):
  """ResNet-50 to res4f + res5a (64 ch, unstrided) + latent + lifter + pose + camera."""
  n = 7 * 7 * 3 * 64 + 2 * 64                                    # conv1, bn_conv1
  cin = 64
  for blocks, width in ((3, 64), (4, 128), (6, 256)):            # res2, res3, res4
    for b in range(blocks):
      n += _bottleneck(cin, width, 4 * width, projection=(b == 0))
      cin = 4 * width
  n += _bottleneck(1024, 512, 64, projection=True)               # res5a
  grid = input_size // 16                                        # stride 16 at res4
  n += grid * grid * 64 * 1024 + 1024                            # latent
  n += 4 * (1024 * 1024 + 1024)                                  # lifter
  n += 1024 * 3 * J + 3 * J                                      # pose
  n += 1024 * 256 + 256 + 256 * 3 + 3                            # camera MLP
  return n


def _variables(model, size, batch=1):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((batch, size, size, 3))))


def test_paper_configuration_parameter_count():
  model = posenet.create(base.base_config().model)
  params = _variables(model, 256)['params']
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))
  assert count == _paper_parameter_count() == 32_819_574


def test_outputs_shapes_and_conventions():
  c = base.smoke(base.base_config())
  model = posenet.create(c.model)
  images = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3), maxval=255.0)
  variables = model.init(jax.random.key(0), images)
  out = model.apply(variables, images)
  grid = posenet.latent_grid_size(c.model, 64)
  assert grid == 4
  assert out['pose_3d'].shape == (2, J, 3)
  assert out['heatmaps'].shape == (2, 2, grid, grid, J)
  np.testing.assert_allclose(out['pose_3d'][:, skeleton.ROOT], 0.0, atol=1e-6)
  np.testing.assert_allclose(
      out['pose_2d'], geometry.weak_perspective(out['pose_3d'], out['camera']['scale'],
                                                out['camera']['principal']), rtol=1e-6)
  # A freshly initialised camera head: a 2 m box fills the crop, root at the centre.
  np.testing.assert_allclose(out['camera']['scale'], 64 / 2000.0, rtol=1e-6)
  np.testing.assert_allclose(out['camera']['principal'], 32.0, rtol=1e-6)


def test_heatmaps_are_the_first_channels_of_res4_tap_and_res5a():
  c = base.smoke(base.base_config())
  c.model.stage_sizes = (1, 1, 2)
  c.model.heatmap_block = 1
  model = posenet.create(c.model)
  images = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3), maxval=255.0)
  variables = model.init(jax.random.key(0), images)
  out, state = model.apply(variables, images, capture_intermediates=True,
                           mutable=['intermediates'])
  inter = state['intermediates']
  res4_tap = inter['backbone']['res4b']['__call__'][0]
  res5a = inter['res5a']['__call__'][0]
  np.testing.assert_array_equal(out['heatmaps'][:, 0], res4_tap[..., :J])
  np.testing.assert_array_equal(out['heatmaps'][:, 1], res5a[..., :J])


def test_bad_configuration_is_named():
  c = base.smoke(base.base_config())
  c.model.heatmap_block = 5
  with pytest.raises(ValueError, match='heatmap_block=5'):
    _variables(posenet.create(c.model), 64)
