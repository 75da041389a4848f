"""The one example format that every dataset builder emits (see ``jaxpose.skeleton`` for
units and joint order).

Keeping it identical across datasets means the input pipeline, the losses and the
evaluation never branch on where an example came from.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from jaxpose import skeleton
from jaxpose.data import crops

J = skeleton.NUM_JOINTS


def example_features() -> tfds.features.FeaturesDict:
  """The TFDS features of an example.

  * ``image``: the person crop (JPEG), stored with a margin around the joints so that
    augmentation can scale, rotate and translate without running out of pixels.
  * ``joints_2d`` (17, 2) pixels in the stored crop; ``joints_2d_valid`` (17,) labelled.
  * ``joints_3d`` (17, 3) camera frame, mm, zeros where absent; ``has_3d``.
  * ``intrinsics``: ``focal`` (2,) and ``principal`` (2,) of the stored crop in pixels,
    zeros where unknown (``has_intrinsics`` false).
  * ``mask`` (PNG) the person's and the chair's masks cut like ``image``: channel 0 the
    person (255 = person), channel 1 the chair (255 = chair), channel 2 zero; where a
    dataset has no masks, a 1×1 black placeholder and ``has_mask`` false.
  * metadata for breakdowns: ``subject``, ``sequence``, ``action``, ``scene``,
    ``camera`` (text) and ``frame`` (int).
  """
  f = tfds.features
  return f.FeaturesDict({
      'image': f.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'joints_2d': f.Tensor(shape=(J, 2), dtype=np.float32),
      'joints_2d_valid': f.Tensor(shape=(J,), dtype=np.bool_),
      'joints_3d': f.Tensor(shape=(J, 3), dtype=np.float32),
      'has_3d': f.Scalar(dtype=np.bool_),
      'intrinsics': f.FeaturesDict({
          'focal': f.Tensor(shape=(2,), dtype=np.float32),
          'principal': f.Tensor(shape=(2,), dtype=np.float32),
      }),
      'has_intrinsics': f.Scalar(dtype=np.bool_),
      'mask': f.Image(shape=(None, None, 3), encoding_format='png'),
      'has_mask': f.Scalar(dtype=np.bool_),
      'subject': f.Text(),
      'sequence': f.Text(),
      'action': f.Text(),
      'scene': f.Text(),
      'camera': f.Text(),
      'frame': f.Scalar(dtype=np.int64),
  })


# Channels of ``mask``.
PERSON, CHAIR = 0, 1


_NO_MASK_PNG = crops.encode_png(np.zeros((1, 1, 3), np.uint8))


def no_mask() -> dict:
  """``mask`` and ``has_mask`` of an example without masks."""
  return dict(mask=_NO_MASK_PNG, has_mask=False)


def empty_metadata() -> dict:
  """Metadata fields for a dataset that lacks some of them."""
  return dict(subject='', sequence='', action='', scene='', camera='', frame=0)
