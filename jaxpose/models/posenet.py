"""The paper's network: backbone → res5a (heatmaps + depth features) → latent → lifter, and
the camera head (Habibie et al. 2019, Fig. 2)."""

from __future__ import annotations

import functools
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.models import resnet

# The lifter's last layer works in metres, so that its initial outputs have a human scale;
# poses leave the model in millimetres.
MM_PER_OUTPUT_UNIT = 1000.0
# A person's tight box (crops.BOX_PADDING × body extent) is about this many mm across; the
# camera head's scale is relative to input_size / TYPICAL_BOX_MM pixels per mm.
TYPICAL_BOX_MM = 2000.0
# ImageNet statistics of RGB pixel values in [0, 255].
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class PoseNet(nn.Module):
  """From an RGB crop (B, S, S, 3) in [0, 255] to:

  * ``pose_3d`` (B, J, 3) root-relative mm,
  * ``heatmaps`` (B, 2, h, w, J): the first J channels of res4d and res5a,
  * ``camera``: ``scale`` (B,) px/mm and ``principal`` (B, 2) px of a weak-perspective
    camera, and ``pose_2d`` (B, J, 2): ``pose_3d`` projected with it into the crop.
  """
  stage_sizes: Sequence[int] = (3, 4, 6)
  width: int = 64
  heatmap_block: int = 3
  res5a_width: int = 512
  res5a_channels: int = 64
  lifter_width: int = 1024
  lifter_layers: int = 4
  camera_hidden: int = 256
  num_joints: int = skeleton.NUM_JOINTS
  dtype: str = 'float32'  # of the computation: 'float32' or 'bfloat16'

  @nn.compact
  def __call__(self, images, train: bool = False):
    if self.res5a_channels <= self.num_joints:
      raise ValueError(f'model.res5a_channels={self.res5a_channels} leaves no depth '
                       f'channels beside the {self.num_joints} heatmaps')
    if self.dtype not in ('float32', 'bfloat16'):
      raise ValueError(f"model.dtype={self.dtype!r}: expected 'float32' or 'bfloat16'")
    dtype = jnp.dtype(self.dtype)
    size = images.shape[1]
    x = (images.astype(jnp.float32) - jnp.array(PIXEL_MEAN)) / jnp.array(PIXEL_STD)
    x, res4d = resnet.Backbone(self.stage_sizes, self.width, self.heatmap_block, dtype,
                               name='backbone')(x, train)
    # res5a without stride and with fewer channels, trained from scratch (§3.3).
    res5a = resnet.Bottleneck(self.res5a_width, self.res5a_channels, dtype=dtype,
                              name='res5a')(x, train)
    j = self.num_joints
    # Outputs leave the model in float32, so the losses are computed in float32.
    heatmaps = jnp.stack([res4d[..., :j], res5a[..., :j]], axis=1).astype(jnp.float32)

    latent = nn.Dense(self.lifter_width, dtype=dtype, name='latent')(
        res5a.reshape(res5a.shape[0], -1))
    h = latent
    for i in range(self.lifter_layers):
      h = nn.relu(nn.Dense(self.lifter_width, dtype=dtype, name=f'lifter_{i}')(h))
      if i == 1:
        h = h + latent  # residual into the second layer's output (§3.1)
    # The output layers are tiny; in float32 they keep the pose's millimetres (bfloat16
    # would round joints near 1 m to steps of 4-8 mm).
    pose = nn.Dense(j * 3, dtype=jnp.float32, name='pose')(h).reshape(-1, j, 3)
    pose = geometry.root_centre(pose * MM_PER_OUTPUT_UNIT)

    c = nn.relu(nn.Dense(self.camera_hidden, dtype=jnp.float32, name='camera_hidden')(latent))
    c = nn.Dense(3, dtype=jnp.float32, name='camera_out', kernel_init=nn.initializers.zeros)(c)
    # exp keeps the scale positive; zero output = a typical person filling the crop,
    # with the root at the centre.
    scale = jnp.exp(c[:, 0]) * size / TYPICAL_BOX_MM
    principal = size * (0.5 + c[:, 1:])
    return dict(pose_3d=pose, heatmaps=heatmaps,
                camera=dict(scale=scale, principal=principal),
                pose_2d=geometry.weak_perspective(pose, scale, principal))


def create(model_config: ml_collections.ConfigDict) -> PoseNet:
  return PoseNet(**model_config.to_dict())


def abstract_variables(model: PoseNet, input_size: int) -> dict:
  """The shapes and dtypes of ``model``'s ``params`` and ``batch_stats`` (nothing computed)."""
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                        jnp.zeros((1, input_size, input_size, 3), jnp.float32))


def activation_bytes(model: PoseNet, input_size: int) -> int:
  """Bytes of the outputs of every module of one image's training forward pass: about what
  a train step keeps per image for its backward pass (XLA's temporaries measured 1.3-1.5
  times this). Shapes only: JAX's backend is not started."""
  variables = jax.eval_shape(
      functools.partial(model.init, train=True, capture_intermediates=True, mutable=True),
      jax.ShapeDtypeStruct((2,), jnp.uint32),
      jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32))
  return sum(leaf.size * leaf.dtype.itemsize
             for leaf in jax.tree.leaves(variables['intermediates']))


def latent_grid_size(model_config: ml_collections.ConfigDict, input_size: int) -> int:
  """Side of the heatmap grid (res4d/res5a) for square inputs of ``input_size``."""
  return resnet.output_size(input_size, len(model_config.stage_sizes))


# The top-level modules that ImageNet weights initialise (``config.init.backbone``).
IMAGENET_MODULES = ('backbone',)
