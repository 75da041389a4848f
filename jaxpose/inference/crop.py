"""Where the network looks in a photo: a person's square and the kernel that cuts it, one
geometry for the Predictor and the exported model (``jaxpose.inference.export``).

The network was trained on the *tight box*: the square of side ``crops.BOX_PADDING`` × the
larger extent of the 2D joints, centred on the middle of that extent
(``jaxpose.data.crops``). A user box (x, y, w, h) is taken as the extent of the person's
joints (head top to ankles and wrists, as a person box drawn by hand or by a detector is),
so the network sees the square of side ``BOX_PADDING × max(w, h)`` centred on the box.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxpose.data import crops
from jaxpose.inference import boxes as box_lib


def person_squares(boxes):
  """Centres (..., 2) and sides (...) of the network's input squares for person boxes
  (..., 4) (module docstring); numpy or jax.numpy."""
  return boxes[..., :2] + boxes[..., 2:] / 2, boxes[..., 2:].max(axis=-1) * crops.BOX_PADDING


def person_region(box, image_size: tuple[int, int], name: str) -> tuple[np.ndarray, float]:
  """``person_squares`` of one box, once ``boxes.check_box`` has checked it."""
  centre, side = person_squares(box_lib.check_box(box, image_size, name))
  return centre, float(side)


def crop_images(image, centres, sides, size: int):
  """The squares (``centres`` (N, 2), ``sides`` (N,), pixels) of an (H, W, 3) image at
  ``size`` × ``size`` pixels, (N, size, size, 3) float32 (jax.numpy).

  Each crop pixel averages the image over a window of the crop pixel's size (at least one
  image pixel) centred on it, pixels outside the image black: an area average where the
  crop shrinks (bilinear sampling alone would alias; training crops are smooth) and bilinear
  interpolation where it enlarges. The crop is axis-aligned, so this is one matrix product
  per image axis, and the same graph runs in the exported model.
  """
  def weights(centre, side, length):
    """(N, size, length): crop pixel i's share of each image pixel k along one axis."""
    step = side / size
    middle = centre[:, None] + (jnp.arange(size, dtype=jnp.float32) + 0.5 - size / 2) * step[
        :, None]
    half = jnp.maximum(step, 1.0)[:, None, None] / 2
    k = jnp.arange(length, dtype=jnp.float32)  # image pixel k covers [k, k + 1)
    overlap = (jnp.minimum(middle[..., None] + half, k + 1)
               - jnp.maximum(middle[..., None] - half, k))
    return jnp.maximum(overlap, 0.0) / (2 * half)

  centres = jnp.asarray(centres, jnp.float32)
  sides = jnp.asarray(sides, jnp.float32)
  rows = weights(centres[:, 1], sides, image.shape[0])
  cols = weights(centres[:, 0], sides, image.shape[1])
  return jnp.einsum('nih,hwc,njw->nijc', rows, image.astype(jnp.float32), cols,
                    precision=jax.lax.Precision.HIGHEST)
