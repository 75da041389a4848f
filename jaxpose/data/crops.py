"""Person crops cut at build time, shared by every dataset builder.

The convention (the input pipeline relies on it):
  * the *tight box* is the square of side ``BOX_PADDING`` × the larger extent of the valid
    2D joints, centred on the middle of their extent (the paper's evaluation crop);
  * the *stored crop* has the same centre and ``STORE_MARGIN`` × the tight box's side, so
    the tight box is its central ``1 / STORE_MARGIN``; the margin leaves pixels for scale,
    rotation and translation augmentation.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from jaxpose import geometry
from jaxpose import skeleton

BOX_PADDING = 1.2
STORE_MARGIN = 1.5


def tight_box(joints_2d: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
  """Centre (2,) and side of the tight square box around the valid joints (pixels)."""
  points = np.asarray(joints_2d)[np.asarray(valid, bool)]
  if len(points) < 2:
    raise ValueError(f'need at least 2 valid joints for a person box, got {len(points)}')
  lo, hi = points.min(axis=0), points.max(axis=0)
  side = float(max(hi - lo)) * BOX_PADDING
  return (lo + hi) / 2.0, max(side, 1.0)


class BadJointsError(ValueError):
  """Labelled joints that cannot give a person box: not finite, or far outside the image."""


def check_joints(joints_2d: np.ndarray, valid: np.ndarray, image_shape) -> None:
  """Raises ``BadJointsError`` for a valid joint that is not finite or lies more than the
  image's own size outside it (people cut by the border are labelled a little outside;
  farther out a label is corrupt and its crop would be black)."""
  points = np.asarray(joints_2d, np.float64)
  height, width = image_shape[:2]
  for j in np.flatnonzero(valid):
    x, y = points[j]
    if not (np.isfinite(x) and np.isfinite(y)):
      raise BadJointsError(f'joint {j} ({skeleton.JOINT_NAMES[j]}) is labelled at ({x}, {y}); '
                           'expected finite pixels')
    if not (-width <= x <= 2 * width and -height <= y <= 2 * height):
      raise BadJointsError(f'joint {j} ({skeleton.JOINT_NAMES[j]}) is labelled at ({x:.6g}, '
                           f'{y:.6g}), more than the '
                           f'image\'s size ({width}×{height} pixels) outside it')


def cut(image: np.ndarray, centre, side: float, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Cuts the square (centre, side) out of ``image`` (H, W, 3 uint8) at ``out_size`` pixels.

  Pixels outside the image are black. Returns the crop and the 3×3 matrix mapping the
  image's pixels to the crop's (``geometry.apply_affine``).
  """
  matrix = geometry.crop_matrix(centre, side, out_size)
  inverse = np.linalg.inv(matrix)
  crop = Image.fromarray(np.asarray(image, np.uint8)).transform(
      (out_size, out_size), Image.Transform.AFFINE, data=tuple(inverse[:2].ravel()),
      resample=Image.Resampling.BILINEAR)
  return np.asarray(crop), matrix


def person_crop(image: np.ndarray, joints_2d: np.ndarray, valid: np.ndarray,
                out_size: int, focal=None, principal=None, mask=None) -> dict:
  """The stored crop of a person and its labels moved into it.

  Args:
    image: (H, W, 3) uint8 frame.
    joints_2d: (17, 2) pixels in the frame. valid: (17,) bool.
    out_size: the stored crop's side in pixels.
    focal, principal: (2,) the frame's intrinsics, or None when unknown.
    mask: None, or (H, W, 3) uint8 masks of the frame, cut exactly like ``image``.

  Raises:
    BadJointsError: see ``check_joints``.

  Returns:
    ``image`` (out_size, out_size, 3) uint8, ``joints_2d`` in crop pixels, ``matrix``
    (frame → crop), ``focal``/``principal`` of the crop (zeros when unknown) and, with
    ``mask``, ``mask`` (out_size, out_size, 3) uint8.
  """
  check_joints(joints_2d, valid, np.shape(image))
  centre, side = tight_box(joints_2d, valid)
  crop, matrix = cut(image, centre, side * STORE_MARGIN, out_size)
  extra = {} if mask is None else {
      'mask': cut(mask, centre, side * STORE_MARGIN, out_size)[0]}
  joints = geometry.apply_affine(matrix, np.asarray(joints_2d, np.float64))
  joints = np.where(np.asarray(valid, bool)[:, None], joints, 0.0)
  if focal is None:
    focal_c, principal_c = np.zeros(2), np.zeros(2)
  else:
    focal_c, principal_c = geometry.transform_intrinsics(
        matrix, np.asarray(focal, np.float64), np.asarray(principal, np.float64))
  return dict(image=crop, joints_2d=joints.astype(np.float32), matrix=matrix,
              focal=np.float32(focal_c), principal=np.float32(principal_c), **extra)


def encode_jpeg(image: np.ndarray, quality: int = 92) -> bytes:
  """JPEG bytes of an (H, W, 3) uint8 image (for builders that store encoded crops)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=quality)
  return buffer.getvalue()


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of an (H, W, 3) uint8 image (lossless, small for the flat masks)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG', optimize=True)
  return buffer.getvalue()
