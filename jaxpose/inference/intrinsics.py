"""The camera's intrinsics for a photo or a video: its focal length from the user, the
photo's EXIF or a typical field of view, and the principal point at the image centre."""

from __future__ import annotations

import math

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

# A typical phone or compact camera's horizontal field of view, for photos of unknown focal.
DEFAULT_FOV_DEG = 55.0


def default_focal(width: int) -> float:
  """Focal length (px) of a ``DEFAULT_FOV_DEG``° horizontal field of view."""
  return fov_focal(DEFAULT_FOV_DEG, width)


def fov_focal(fov_deg: float, width: int) -> float:
  """Focal length (px) of a ``fov_deg``° horizontal field of view across ``width`` pixels."""
  if not (np.isfinite(fov_deg) and 0 < fov_deg < 180):
    raise ValueError(f'--fov must be a horizontal field of view in degrees, between 0 and '
                     f'180, got {fov_deg}')
  return width / 2 / math.tan(math.radians(fov_deg) / 2)


def exif_focal(path, size: tuple[int, int]) -> float | None:
  """The focal length (px) from a photo's EXIF FocalLengthIn35mmFilm, or None without it.

  The 35 mm-equivalent focal length gives the angle of view of a 36 × 24 mm frame, whose
  diagonal is 43.27 mm (CIPA DC-004, as phones write it): the photo's diagonal in pixels
  spans the same angle, whatever its aspect ratio and orientation.
  """
  try:
    with Image.open(path) as pil:
      value = pil.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.FocalLengthIn35mmFilm)
  except (UnidentifiedImageError, OSError, SyntaxError):
    return None
  if not value or not np.isfinite(float(value)) or float(value) <= 0:
    return None  # 0 is EXIF for "unknown"
  return float(value) / math.hypot(36.0, 24.0) * math.hypot(*size)


def camera_intrinsics(size: tuple[int, int], focal: float | None = None,
                      fov: float | None = None, path=None, name: str = 'the image') -> dict:
  """The intrinsics of an image of ``size`` (width, height): the principal point at its centre
  and the focal length from the first of ``focal`` (px), ``fov`` (horizontal degrees), the
  EXIF of the photo at ``path``, ``DEFAULT_FOV_DEG``; ``focal_source`` says which."""
  width, height = size
  if focal is not None and fov is not None:
    raise ValueError(f'give a focal length or a field of view for {name}, not both')
  if focal is not None and not (np.isfinite(focal) and focal > 0):
    raise ValueError(f'focal of {name} must be a positive number of pixels, got {focal}')
  exif = None if focal is not None or fov is not None or path is None else exif_focal(
      path, size)
  if focal is not None:
    source = 'focal'
  elif fov is not None:
    focal, source = fov_focal(fov, width), 'fov'
  elif exif is not None:
    focal, source = exif, 'exif'
  else:
    focal, source = default_focal(width), 'default'
  return dict(focal=float(focal), principal=np.array([width / 2, height / 2]),
              focal_source=source, focal_assumed=source == 'default')
