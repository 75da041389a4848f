"""The four training losses of the paper (§3), masked by what each example has.

Units inside the losses are chosen so that the terms are comparable and mean the same at
every input size: 3D in units of ``BODY_BOX_MM`` (the side of a person's tight box, which is
what the crop spans) and 2D in units of the crop's side, so that the same physical error
costs the same in the 3D, bone and projection terms; heatmap errors averaged over the grid
cells, so that the term does not grow with the input size (summed, with every weight 1, at
256 px it pulled 15-80 times harder on the shared layers than the other terms at
initialisation). ``python -m jaxpose.tools.loss_balance`` measures each term's pull; with
the default weights of ``jaxpose.config`` every term's gradient on the backbone is within a
factor 6 of the others at initialisation, at 96 and at 256 px.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from jaxpose import geometry
from jaxpose import skeleton

# A person's tight box (crops.BOX_PADDING × body extent) is about this many mm across.
BODY_BOX_MM = 2000.0


def _masked_mean(values, mask):
  mask = mask.astype(values.dtype)
  return jnp.sum(values * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def heatmap_targets(joints_2d, input_size: int, grid: int, sigma: float):
  """Gaussian heatmaps (B, grid, grid, J) of (B, J, 2) input-pixel joints.

  Cell (i, j) of the grid covers input pixels [j, j + 1) · input_size / grid along x, so its
  centre sits at (j + 0.5) · input_size / grid; ``sigma`` is in cells.
  """
  cells = joints_2d * (grid / input_size) - 0.5
  axis = jnp.arange(grid, dtype=joints_2d.dtype)
  dx = axis[None, :, None] - cells[:, None, :, 0]   # (B, grid_x, J)
  dy = axis[None, :, None] - cells[:, None, :, 1]   # (B, grid_y, J)
  return jnp.exp(-(dy[:, :, None, :]**2 + dx[:, None, :, :]**2) / (2 * sigma**2))


def pose_3d_loss(pred_mm, target_mm, has_3d):
  """Paper eq. 1: mean squared joint distance (body boxes²) over the examples with 3D
  labels."""
  per_example = jnp.mean(jnp.sum(((pred_mm - target_mm) / BODY_BOX_MM)**2, axis=-1), axis=-1)
  return _masked_mean(per_example, has_3d)


def bone_loss(pred_mm, target_mm, has_3d, ref_lengths_mm, has_ref):
  """Bone vectors against ground truth for 3D examples; bone lengths against a training
  subject's (``ref_lengths_mm`` (B, bones), picked per example) for 2D-only ones (§3.2)."""
  pred = skeleton.bone_vectors(pred_mm) / BODY_BOX_MM
  vector_error = jnp.mean(jnp.sum((pred - skeleton.bone_vectors(target_mm) / BODY_BOX_MM)**2,
                                  axis=-1), axis=-1)
  length = jnp.sqrt(jnp.sum(pred**2, axis=-1) + 1e-12)
  length_error = jnp.mean((length - ref_lengths_mm / BODY_BOX_MM)**2, axis=-1)
  use_length = has_ref & ~has_3d
  per_example = jnp.where(has_3d, vector_error, jnp.where(use_length, length_error, 0.0))
  return _masked_mean(per_example, has_3d | use_length)


def heatmap_loss(pred, target, valid):
  """Squared error averaged over the grid cells, the labelled (example, joint) pairs and the
  heatmap levels (res4d, res5a). pred (B, L, h, w, J); target (B, h, w, J)."""
  per_joint = jnp.mean((pred - target[:, None])**2, axis=(2, 3))   # (B, L, J)
  return _masked_mean(jnp.mean(per_joint, axis=1), valid)


def projection_loss(pred_2d, joints_2d, valid, input_size: int):
  """Paper eq. 2: squared distance between the weak-perspective projection of the
  predicted pose and the 2D labels, in crop sides², over labelled joints."""
  per_joint = jnp.sum(((pred_2d - joints_2d) / input_size)**2, axis=-1)
  return _masked_mean(per_joint, valid)


def compute(outputs: dict, targets: dict, weights: dict, input_size: int,
            heatmap_sigma: float):
  """Weighted total and a dict of the unweighted terms.

  Args:
    outputs: the model's outputs (``PoseNet``).
    targets: ``pose_3d`` (B, J, 3) root-relative mm in the model's frame, ``has_3d`` (B,),
      ``joints_2d`` (B, J, 2) input pixels, ``joints_2d_valid`` (B, J),
      ``ref_bone_lengths`` (B, bones) mm and ``has_ref_bones`` (B,).
    weights: ``pose_3d``, ``bone``, ``heatmap``, ``projection``.
  """
  grid = outputs['heatmaps'].shape[2]
  valid = targets['joints_2d_valid']
  heatmaps = heatmap_targets(targets['joints_2d'], input_size, grid, heatmap_sigma)
  terms = {
      'pose_3d': pose_3d_loss(outputs['pose_3d'], targets['pose_3d'], targets['has_3d']),
      'bone': bone_loss(outputs['pose_3d'], targets['pose_3d'], targets['has_3d'],
                        targets['ref_bone_lengths'], targets['has_ref_bones']),
      'heatmap': heatmap_loss(outputs['heatmaps'], heatmaps, valid),
      'projection': projection_loss(outputs['pose_2d'], targets['joints_2d'], valid,
                                    input_size),
  }
  unknown = set(weights) - set(terms)
  if unknown:
    raise ValueError(f'config.loss has unknown terms {sorted(unknown)}; known: {sorted(terms)}')
  total = sum(weights[name] * value for name, value in terms.items())
  return total, terms


def model_frame_rotation(batch: dict, config: ml_collections.ConfigDict):
  """(B, 3, 3) rotations from the camera frame into the frame the model predicts in, each
  crop's virtual camera (``data.virtual_camera``); None where that is the camera frame."""
  if not config.data.virtual_camera:
    return None
  return geometry.virtual_camera_rotation(batch['focal'], batch['principal'],
                                          batch['has_intrinsics'], config.data.input_size)


def make_targets(batch: dict, config: ml_collections.ConfigDict) -> dict:
  """Loss targets: root-relative 3D in the model's frame (``model_frame_rotation``), and
  the 2D labels."""
  pose = geometry.root_centre(batch['joints_3d'])
  rotation = model_frame_rotation(batch, config)
  if rotation is not None:
    pose = geometry.to_crop_frame(pose, rotation)
  return dict(pose_3d=pose, has_3d=batch['has_3d'], joints_2d=batch['joints_2d'],
              joints_2d_valid=batch['joints_2d_valid'],
              ref_bone_lengths=batch['ref_bone_lengths'], has_ref_bones=batch['has_ref_bones'])
