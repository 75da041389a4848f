"""The paper's network, its losses and its optimiser in PyTorch: the yardstick of
``python -m benchmarks.compare_torch``.

Layer for layer the network of ``jaxpose.models.posenet`` and ``resnet`` (same shapes, the
same parameter names, BatchNorm momentum and epsilon), the four losses of
``jaxpose.losses`` and Adadelta with the config's rate, rho and eps. ``load_flax_variables``
copies a Flax model's variables into it, so both frameworks time the same weights (and a
test checks that both compute the same outputs and gradients). Convolutions run
channels-last, PyTorch's fastest layout on CPU.

torch is the optional ``bench`` extra: nothing under ``jaxpose/`` imports this module.
"""

from __future__ import annotations

import functools

import ml_collections
import numpy as np
import torch
from flax import traverse_util
import torch.nn.functional as F
from torch import nn

from jaxpose import losses
from jaxpose import skeleton
from jaxpose.models import posenet
from jaxpose.models import resnet

# Flax's BatchNorm keeps ``momentum`` of the old statistics, PyTorch's replaces ``momentum``.
BN_MOMENTUM = 1.0 - 0.9


def _norm(features: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(features, eps=resnet.BN_EPSILON, momentum=BN_MOMENTUM)


class Bottleneck(nn.Module):
  """``resnet.Bottleneck``: 1×1 (strided) → 3×3 → 1×1, projection where shapes change."""

  def __init__(self, in_features: int, width: int, out_features: int, strides: int = 1):
    super().__init__()
    self.proj_conv = self.proj_bn = None
    if strides != 1 or in_features != out_features:
      self.proj_conv = nn.Conv2d(in_features, out_features, 1, strides, bias=False)
      self.proj_bn = _norm(out_features)
    self.conv1 = nn.Conv2d(in_features, width, 1, strides, bias=False)
    self.bn1 = _norm(width)
    self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
    self.bn2 = _norm(width)
    self.conv3 = nn.Conv2d(width, out_features, 1, bias=False)
    self.bn3 = _norm(out_features)
    nn.init.zeros_(self.bn3.weight)

  def forward(self, x):
    shortcut = x if self.proj_conv is None else self.proj_bn(self.proj_conv(x))
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    return F.relu(self.bn3(self.conv3(y)) + shortcut)


class Backbone(nn.Module):
  """``resnet.Backbone``: conv1 → pool → res2 … res4; returns (last block, tap block)."""

  def __init__(self, stage_sizes, width: int, tap_block: int):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
    self.bn_conv1 = _norm(width)
    self.blocks = []
    features = width
    for s, size in enumerate(stage_sizes):
      for b in range(size):
        name = resnet.block_name(s + 2, b)
        stage_width = width * 2**s
        self.add_module(name, Bottleneck(features, stage_width, stage_width * 4,
                                         2 if s > 0 and b == 0 else 1))
        self.blocks.append(name)
        features = stage_width * 4
    self.tap = resnet.block_name(len(stage_sizes) + 1, tap_block)
    self.out_features = features

  def forward(self, x):
    x = F.max_pool2d(F.relu(self.bn_conv1(self.conv1(x))), 3, 2, padding=1)
    tap = None
    for name in self.blocks:
      x = getattr(self, name)(x)
      if name == self.tap:
        tap = x
    return x, tap


class PoseNet(nn.Module):
  """``posenet.PoseNet`` of ``model_config`` for square inputs of ``input_size`` pixels;
  takes uint8 (B, S, S, 3) crops and returns the same outputs, with heatmaps (B, 2, J, h, w)
  (channels first)."""

  def __init__(self, model_config: ml_collections.ConfigDict, input_size: int):
    super().__init__()
    m = model_config
    self.num_joints = skeleton.NUM_JOINTS
    self.input_size = input_size
    self.backbone = Backbone(m.stage_sizes, m.width, m.heatmap_block)
    self.res5a = Bottleneck(self.backbone.out_features, m.res5a_width, m.res5a_channels)
    grid = resnet.output_size(input_size, len(m.stage_sizes))
    self.latent = nn.Linear(grid * grid * m.res5a_channels, m.lifter_width)
    self.lifters = [f'lifter_{i}' for i in range(m.lifter_layers)]
    for name in self.lifters:
      self.add_module(name, nn.Linear(m.lifter_width, m.lifter_width))
    self.pose = nn.Linear(m.lifter_width, self.num_joints * 3)
    self.camera_hidden = nn.Linear(m.lifter_width, m.camera_hidden)
    self.camera_out = nn.Linear(m.camera_hidden, 3)
    nn.init.zeros_(self.camera_out.weight)
    nn.init.zeros_(self.camera_out.bias)
    self.register_buffer('pixel_mean', torch.tensor(posenet.PIXEL_MEAN))
    self.register_buffer('pixel_std', torch.tensor(posenet.PIXEL_STD))

  def forward(self, images):
    x = (images.float() - self.pixel_mean) / self.pixel_std
    x = x.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    x, res4d = self.backbone(x)
    res5a = self.res5a(x)
    j = self.num_joints
    heatmaps = torch.stack([res4d[:, :j], res5a[:, :j]], dim=1)
    # Flattened in (h, w, c) order, as the Flax network flattens its NHWC arrays.
    latent = self.latent(res5a.permute(0, 2, 3, 1).reshape(res5a.shape[0], -1))
    h = latent
    for i, name in enumerate(self.lifters):
      h = F.relu(getattr(self, name)(h))
      if i == 1:
        h = h + latent
    pose = self.pose(h).reshape(-1, j, 3) * posenet.MM_PER_OUTPUT_UNIT
    pose = pose - pose[:, skeleton.ROOT:skeleton.ROOT + 1]
    c = self.camera_out(F.relu(self.camera_hidden(latent)))
    scale = torch.exp(c[:, 0]) * self.input_size / posenet.TYPICAL_BOX_MM
    principal = self.input_size * (0.5 + c[:, 1:])
    return dict(pose_3d=pose, heatmaps=heatmaps, camera=dict(scale=scale, principal=principal),
                pose_2d=pose[..., :2] * scale[:, None, None] + principal[:, None, :])


def _masked_mean(values, mask):
  mask = mask.to(values.dtype)
  return torch.sum(values * mask) / torch.clamp(torch.sum(mask), min=1.0)


def _bone_vectors(joints):
  return joints[:, skeleton.BONES[:, 1]] - joints[:, skeleton.BONES[:, 0]]


def compute_losses(outputs: dict, targets: dict, weights: dict, input_size: int,
                   heatmap_sigma: float):
  """``jaxpose.losses.compute`` (weighted total, unweighted terms) of ``PoseNet``'s outputs
  and the targets of ``losses.make_targets`` as tensors."""
  pred, target, has_3d = outputs['pose_3d'], targets['pose_3d'], targets['has_3d']
  box = losses.BODY_BOX_MM
  pose_3d = _masked_mean(torch.mean(torch.sum(((pred - target) / box)**2, -1), -1), has_3d)
  bones = _bone_vectors(pred) / box
  vector_error = torch.mean(torch.sum((bones - _bone_vectors(target) / box)**2, -1), -1)
  length = torch.sqrt(torch.sum(bones**2, -1) + 1e-12)
  length_error = torch.mean((length - targets['ref_bone_lengths'] / box)**2, -1)
  use_length = targets['has_ref_bones'] & ~has_3d
  bone = _masked_mean(torch.where(has_3d, vector_error,
                                  torch.where(use_length, length_error, 0.0)),
                      has_3d | use_length)
  # Gaussian heatmap targets (B, J, grid_y, grid_x), as losses.heatmap_targets.
  heatmaps = outputs['heatmaps']
  grid = heatmaps.shape[-1]
  cells = targets['joints_2d'] * (grid / input_size) - 0.5
  axis = torch.arange(grid, dtype=cells.dtype)
  dx = axis[None, None, :] - cells[..., 0, None]   # (B, J, grid_x)
  dy = axis[None, None, :] - cells[..., 1, None]   # (B, J, grid_y)
  maps = torch.exp(-(dy[..., :, None]**2 + dx[..., None, :]**2) / (2 * heatmap_sigma**2))
  per_joint = torch.mean((heatmaps - maps[:, None])**2, dim=(3, 4))   # (B, L, J)
  valid = targets['joints_2d_valid']
  heatmap = _masked_mean(torch.mean(per_joint, 1), valid)
  projection = _masked_mean(
      torch.sum(((outputs['pose_2d'] - targets['joints_2d']) / input_size)**2, -1), valid)
  terms = dict(pose_3d=pose_3d, bone=bone, heatmap=heatmap, projection=projection)
  return sum(weights[name] * value for name, value in terms.items()), terms


def make_optimizer(model: nn.Module, optim: ml_collections.ConfigDict) -> torch.optim.Optimizer:
  """Adadelta at the config's initial rate (the decay schedule is left out: a scalar)."""
  return torch.optim.Adadelta(model.parameters(), lr=optim.learning_rate, rho=optim.rho,
                              eps=optim.eps)


def load_flax_variables(model: PoseNet, variables: dict) -> None:
  """Copies Flax ``params`` and ``batch_stats`` (same tree as ``posenet.PoseNet``'s) into
  ``model``; every parameter and statistic must be matched by exactly one Flax leaf of the
  same (transposed) shape."""
  targets = {}
  for collection, tree in variables.items():
    for path, leaf in traverse_util.flatten_dict(tree).items():
      *module, name = path
      key = '.'.join(module)
      kind = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
              'var': 'running_var'}[name]
      value = np.array(leaf, np.float32)  # a writable copy, as torch.from_numpy wants
      if name == 'kernel':   # HWIO → OIHW; (in, out) → (out, in)
        value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
      targets[f'{key}.{kind}'] = (f'{collection}/{"/".join(path)}', value)
  state = model.state_dict()
  own = {k for k in state if not k.endswith('num_batches_tracked')} - {'pixel_mean', 'pixel_std'}
  if own != set(targets):
    raise ValueError(f'Flax variables do not match the PyTorch network: missing in Flax '
                     f'{sorted(own - set(targets))}, unknown to PyTorch '
                     f'{sorted(set(targets) - own)}')
  with torch.no_grad():
    for key, (source, value) in targets.items():
      if tuple(state[key].shape) != value.shape:
        raise ValueError(f'{source}: shape {value.shape} (as PyTorch orders it) does not fit '
                         f'{key} of shape {tuple(state[key].shape)}')
      state[key].copy_(torch.from_numpy(value))


def conv_call(layer, x: np.ndarray, kernel: np.ndarray, dy: np.ndarray | None):
  """``timing.conv_call`` in PyTorch: a call of the convolution ``layer`` (an
  ``inventory.ConvLayer``) as ``PoseNet`` runs it, the NHWC ``x`` channels-last, the HWIO
  ``kernel`` as an OIHW weight. It returns the output (N, D, H, W), or, given the output's
  gradient ``dy`` (NHWC), the output and its gradients: (input, kernel), or (kernel,) for a
  layer without ``input_grad``."""
  if any(low != high for low, high in layer.padding):
    raise ValueError(f'padding {layer.padding}: PyTorch pads both sides of an axis alike')
  inputs = torch.from_numpy(np.array(x)).permute(0, 3, 1, 2)  # channels-last memory
  weight = torch.from_numpy(np.array(kernel).transpose(3, 2, 0, 1).copy())
  conv = functools.partial(F.conv2d, stride=tuple(layer.strides),
                           padding=tuple(low for low, _ in layer.padding))
  if dy is None:
    def forward():
      with torch.inference_mode():
        return conv(inputs, weight)
    return forward
  grad_out = torch.from_numpy(np.array(dy)).permute(0, 3, 1, 2)
  inputs.requires_grad_(layer.input_grad)
  weight.requires_grad_(True)
  wrt = [inputs, weight] if layer.input_grad else [weight]

  def train():
    y = conv(inputs, weight)
    return y.detach(), torch.autograd.grad(y, wrt, grad_out)
  return train


def benchmark_calls(config: ml_collections.ConfigDict, variables: dict, batch: dict,
                    targets: dict, images: np.ndarray):
  """``(train_step, infer)``: calls of the PyTorch network of ``config``, started from Flax
  ``variables``, for timing: one Adadelta step on ``batch`` (a host batch of
  ``jaxpose.benchmark.random_batch``; ``targets`` its ``losses.make_targets``) and inference on the
  uint8 ``images``."""
  model = PoseNet(config.model, config.data.input_size)
  load_flax_variables(model, variables)
  optimizer = make_optimizer(model, config.optim)
  train_images = torch.from_numpy(batch['image'])
  train_targets = {k: torch.from_numpy(np.asarray(v)) for k, v in targets.items()}
  infer_images = torch.from_numpy(images)
  weights = dict(config.loss)

  def train_step():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total, _ = compute_losses(model(train_images), train_targets, weights,
                              config.data.input_size, config.data.heatmap_sigma)
    total.backward()
    optimizer.step()

  def infer():
    model.eval()
    with torch.inference_mode():
      model(infer_images)

  return train_step, infer
