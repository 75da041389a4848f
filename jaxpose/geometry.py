"""Cameras and point transforms (conventions in ``jaxpose.skeleton``'s docstring).

Every function works on numpy and jax.numpy arrays alike (only operators and methods that
both share are used), broadcasting over leading batch axes, unless it says otherwise.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose import skeleton


def root_centre(joints):
  """(..., J, D) → the same joints with the root (pelvis) moved to the origin."""
  return joints - joints[..., skeleton.ROOT:skeleton.ROOT + 1, :]


def project(points, focal, principal):
  """Pinhole projection ``u = f * X / Z + c``.

  Args:
    points: (..., J, 3) camera-frame points, Z > 0.
    focal: (..., 2) focal lengths in pixels.
    principal: (..., 2) principal point in pixels.

  Returns:
    (..., J, 2) pixels.
  """
  return points[..., :2] / points[..., 2:3] * focal[..., None, :] + principal[..., None, :]


def weak_perspective(points, scale, principal):
  """The camera head's projection ``u = s * X + c`` of root-relative points.

  Args:
    points: (..., J, 3) root-relative points in mm.
    scale: (...,) pixels per mm (focal length over the root's depth).
    principal: (..., 2) where the root lands, pixels.

  Returns:
    (..., J, 2) pixels.
  """
  return points[..., :2] * scale[..., None, None] + principal[..., None, :]


def unproject_depth(scale, focal):
  """Depth (mm) of the root that makes a weak-perspective ``scale`` agree with ``focal``.

  A weak-perspective camera is a pinhole camera with the whole body at the root's depth Z:
  ``s = f / Z``. Given the real focal length, ``Z = f / s``.
  """
  return focal / scale


# --- 2D affine maps (3×3 homogeneous matrices acting on pixel column vectors) -----------

def affine_matrix(scale=1.0, rotation=0.0, flip=False, centre=(0.0, 0.0),
                  target=(0.0, 0.0)) -> np.ndarray:
  """The map: flip about ``centre`` (x → -x), rotate (radians, image axes, clockwise on
  screen since y points down), scale about it, then move ``centre`` onto ``target``.

  numpy only (it builds augmentation and crop matrices, not per-joint work).
  """
  cx, cy = centre
  tx, ty = target
  c, s = np.cos(rotation), np.sin(rotation)
  mirror = np.diag([-1.0 if flip else 1.0, 1.0, 1.0])
  rot = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
  to_origin = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
  to_target = np.array([[scale, 0, 0], [0, scale, 0], [0, 0, 1]], dtype=np.float64)
  to_target[:2, 2] = (tx, ty)
  return to_target @ rot @ mirror @ to_origin


def crop_matrix(centre, size, out_size) -> np.ndarray:
  """The map from an image's pixels to an axis-aligned square crop of side ``size``
  centred on ``centre``, resampled to ``out_size`` pixels (numpy only)."""
  return affine_matrix(scale=out_size / size, centre=centre,
                       target=(out_size / 2.0, out_size / 2.0))


def crop_matrices(centres, sides, out_size):
  """``crop_matrix`` for a batch: (..., 3, 3) maps onto the squares of ``sides`` (...)
  centred on ``centres`` (..., 2), numpy or jax.numpy (by the type of ``sides``)."""
  xp = jnp if isinstance(sides, jax.Array) else np
  scale = out_size / sides
  zero, one = xp.zeros_like(scale), xp.ones_like(scale)
  return xp.stack([
      xp.stack([scale, zero, out_size / 2 - scale * centres[..., 0]], -1),
      xp.stack([zero, scale, out_size / 2 - scale * centres[..., 1]], -1),
      xp.stack([zero, zero, one], -1)], axis=-2)


def from_crop(matrix, points):
  """(..., J, 2) crop pixels → image pixels, for (..., 3, 3) scale-and-translate crop
  matrices (numpy or jax.numpy; no matrix inverse, which TensorFlow cannot run from JAX)."""
  xp = np if isinstance(matrix, np.ndarray) else jnp
  scale = xp.stack([matrix[..., 0, 0], matrix[..., 1, 1]], axis=-1)
  return (points - matrix[..., None, :2, 2]) / scale[..., None, :]


def apply_affine(matrix, points):
  """(3, 3) or (..., 3, 3) matrix applied to (..., J, 2) pixels."""
  return (points @ matrix[..., :2, :2].swapaxes(-1, -2)) + matrix[..., None, :2, 2]


def transform_intrinsics(matrix, focal, principal):
  """Intrinsics of an image warped by a scale-and-translate ``matrix`` (no rotation, no
  flip: those change the camera's orientation, see ``jaxpose.data``'s augmentation)."""
  scale = np.stack([matrix[..., 0, 0], matrix[..., 1, 1]], axis=-1)
  return focal * scale, principal * scale + matrix[..., :2, 2]


# --- Perspective correction --------------------------------------------------------------

def crop_rotation(focal, principal, crop_centre):
  """Rotation from the camera frame into the virtual camera looking through a crop's
  centre (numpy or jax.numpy, by the type of ``focal``).

  A crop off the optical axis sees the person as a camera rotated towards them would. Its
  z axis is the ray ``K^-1 [u, v, 1]`` through the crop centre; its x axis is
  ``z × up`` (up = -y, so an on-axis crop gives the identity) and its y axis ``z × x``.

  Args:
    focal: (..., 2) pixels. principal: (..., 2) pixels. crop_centre: (..., 2) pixels.

  Returns:
    (..., 3, 3) ``R`` with rows (x, y, z): ``p_virtual = R @ p_camera``.
  """
  xp = jnp if isinstance(focal, jax.Array) else np
  ray = (crop_centre - principal) / focal
  z = xp.concatenate([ray, xp.ones_like(ray[..., :1])], axis=-1)
  z = z / xp.linalg.norm(z, axis=-1, keepdims=True)
  # z × (0, -1, 0) = (z_z, 0, -z_x), already orthogonal to z.
  x = xp.stack([z[..., 2], xp.zeros_like(z[..., 0]), -z[..., 0]], axis=-1)
  x = x / xp.linalg.norm(x, axis=-1, keepdims=True)
  y = xp.cross(z, x)
  return xp.stack([x, y, z], axis=-2)


def virtual_camera_rotation(focal, principal, has_intrinsics, input_size: int):
  """(B, 3, 3) rotations into the virtual cameras of (B,) square crops of ``input_size``
  pixels, identity where the intrinsics are unknown (numpy or jax.numpy)."""
  xp = jnp if isinstance(focal, jax.Array) else np
  known = has_intrinsics[..., None]
  centre = xp.full(principal.shape, input_size / 2.0, principal.dtype)
  # Unknown intrinsics are zeros: substitute an on-axis camera to keep the maths finite.
  rotation = crop_rotation(xp.where(known, focal, 1.0), xp.where(known, principal, centre),
                           centre)
  return xp.where(known[..., None], rotation, xp.eye(3, dtype=rotation.dtype))


def to_crop_frame(pose, rotation):
  """Rotates (..., J, 3) camera-frame points into the crop's virtual camera."""
  return pose @ np.swapaxes(rotation, -1, -2)


def correct_perspective(pose, rotation):
  """Rotates a (..., J, 3) pose predicted in a crop's virtual camera back into the real
  camera frame (the inverse of ``to_crop_frame``)."""
  return pose @ rotation


def to_camera(pose_3d_crop, crop_scale, crop_principal, matrix, focal, principal,
              input_size: int, virtual_camera: bool = True):
  """A network's outputs for crops → the camera frame; numpy or jax.numpy (by the type of
  ``matrix``), over any leading batch axes (shown as ...).

  The pose is rotated from the crop's virtual camera back into the real one, and the root
  follows from the weak-perspective camera ``u = s X + c``: it lies on the ray through ``c``
  at the depth where ``s = f / Z`` (Z along the axis of the frame the network predicts in).

  Args:
    pose_3d_crop: (..., J, 3) root-relative pose as predicted (the crop's virtual camera
      frame when ``virtual_camera``, the camera frame otherwise).
    crop_scale, crop_principal: (...) and (..., 2) the weak-perspective camera in the crop
      (px/mm, px).
    matrix: (..., 3, 3) image → crop pixels. focal: (...) the image's focal length, px.
    principal: (..., 2) the image's principal point, px. input_size: the crop's side, px.
    virtual_camera: the checkpoint's ``config.data.virtual_camera``.

  Returns:
    (..., J, 3) root-relative pose in the camera frame, (..., 3) the root's position in it
    (mm), and (..., 2) the root's pixel in the image.
  """
  xp = np if isinstance(matrix, np.ndarray) else jnp
  dtype = matrix.dtype
  focal = xp.asarray(focal, dtype)[..., None] * xp.ones(2, dtype)
  principal = xp.asarray(principal, dtype)
  # The crop is scale-and-translate: its focal scales, its principal point maps.
  crop_focal = focal * matrix[..., 0, 0, None]
  crop_principal_point = apply_affine(matrix, principal[..., None, :])[..., 0, :]
  pose = xp.asarray(pose_3d_crop, dtype)
  if virtual_camera:
    batch = crop_focal.reshape(-1, 2)
    rotation = virtual_camera_rotation(
        batch, crop_principal_point.reshape(-1, 2), xp.ones(batch.shape[:1], bool),
        input_size).reshape(matrix.shape)
    pose = correct_perspective(pose, rotation)
  else:
    rotation = xp.broadcast_to(xp.eye(3, dtype=dtype), matrix.shape)
  root_pixel = from_crop(matrix, xp.asarray(crop_principal, dtype)[..., None, :])[..., 0, :]
  # The scale is f / Z with Z the root's depth along the frame the network predicts in
  # (the virtual camera's axis); the root is on the ray through its pixel.
  depth = unproject_depth(xp.asarray(crop_scale, dtype), crop_focal[..., 0])
  ray = xp.concatenate([(root_pixel - principal) / focal, xp.ones_like(depth)[..., None]],
                       axis=-1)
  along = (rotation[..., 2, :] * ray).sum(-1)
  return pose, ray * (depth / along)[..., None], root_pixel
