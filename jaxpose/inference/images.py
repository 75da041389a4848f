"""Photos read for prediction: files, folders and glob patterns of ``--image``, any image
mode PIL opens as 8-bit RGB, turned upright by their EXIF, and the errors that name them."""

from __future__ import annotations

import glob
import os
import pathlib
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


def to_rgb(pil: Image.Image) -> np.ndarray:
  """(H, W, 3) uint8 RGB of an image of any mode PIL opens.

  PIL's own conversion clips grey levels wider than 8 bits at 255 (a 16-bit PNG turns
  white), so those are scaled: ``I;16*`` from 0-65535; ``I`` (32-bit integers) and ``F``
  (floats), whose files do not say their range, from the smallest of 1 (``F`` only), 255,
  65535 and 2^32 - 1 that holds the brightest pixel, negatives as 0. Every other mode (1, L,
  LA, P, PA, RGBA, CMYK, YCbCr, LAB, HSV, ...) is PIL's conversion.
  """
  if not (pil.mode.startswith('I;16') or pil.mode in ('I', 'F')):
    return np.asarray(pil.convert('RGB'))
  values = np.nan_to_num(np.asarray(pil, np.float64))
  if pil.mode.startswith('I;16'):
    full = 65535.0
  else:
    top = float(values.max(initial=0.0))
    scales = ((1.0,) if pil.mode == 'F' else ()) + (255.0, 65535.0, 2.0**32 - 1)
    full = next((s for s in scales if top <= s), top)
  grey = np.round(np.clip(values / full, 0.0, 1.0) * 255).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def load_image(image) -> tuple[np.ndarray, str]:
  """(H, W, 3) uint8 RGB (``to_rgb``) and a name for messages, from a path or an array."""
  if isinstance(image, (str, os.PathLike)):
    path = pathlib.Path(image)
    if not path.is_file():
      raise FileNotFoundError(f'image {path} does not exist')
    try:
      with Image.open(path) as pil:
        # Phone photos are stored sideways with an EXIF note on how to turn them.
        return to_rgb(ImageOps.exif_transpose(pil)), str(path)
    except Image.DecompressionBombError as e:
      # PIL refuses more than twice its MAX_IMAGE_PIXELS; its message gives the size.
      size = re.search(r'\((\d+) pixels\)', str(e))
      needed = -(-int(size.group(1)) // 2) if size else 'N'
      raise ValueError(f'image {path}: {e} (PIL\'s guard against decompression bombs: twice '
                       f'PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); to read it, '
                       f'raise the limit with --max_image_pixels={needed}') from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
      raise ValueError(f'cannot read image {path}: {e}') from e
  array = np.asarray(image)
  if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
    raise ValueError(f'image must be a path or an (H, W, 3) uint8 array, got an array of '
                     f'shape {array.shape} and dtype {array.dtype}')
  if min(array.shape[:2]) < 1:
    raise ValueError(f'image is empty: shape {array.shape}')
  return array, f'array {array.shape}'


def image_paths(values: Sequence[str]) -> list[str]:
  """The files of ``--image`` values: a file as it is, a folder as its images (the files
  with an extension PIL reads, by name), a glob pattern as its matches (by name)."""
  Image.init()
  readable = set(Image.registered_extensions())
  paths = []
  for value in values:
    if os.path.isdir(value):
      found = sorted(str(p) for p in pathlib.Path(value).iterdir()
                     if p.is_file() and p.suffix.lower() in readable)
      if not found:
        raise FileNotFoundError(f'--image={value}: the folder holds no image (no file named '
                                f'*.jpg, *.png or another extension PIL reads)')
    elif glob.has_magic(value) and not os.path.exists(value):
      found = sorted(p for p in glob.glob(value) if os.path.isfile(p))
      if not found:
        raise FileNotFoundError(f'--image={value}: no file matches this pattern')
    else:
      found = [value]
    paths += found
  return paths
