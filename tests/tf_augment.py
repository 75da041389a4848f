"""The TensorFlow augmentation jaxpose ran in tf.data until issue 27, kept as the reference
that ``jaxpose.data.augment`` is held against: the same code with its random numbers
taken from ``augment.draw``'s draws instead of TF's stateless RNG."""

import math

import numpy as np
import tensorflow as tf

from jaxpose import skeleton
from jaxpose.data import crops


def _similarity(scale, rotation, flip, centre, target):
  c, s = tf.cos(rotation), tf.sin(rotation)
  f = tf.where(flip, -1.0, 1.0)
  m = tf.stack([tf.stack([scale * c * f, -scale * s]), tf.stack([scale * s * f, scale * c])])
  t = target - tf.linalg.matvec(m, centre)
  return tf.concat([tf.concat([m, t[:, None]], axis=1), [[0.0, 0.0, 1.0]]], axis=0)


def _warp(image, matrix, size: int):
  inverse = tf.linalg.inv(matrix)
  half = tf.constant([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
  inverse = tf.linalg.inv(half) @ inverse @ half
  params = tf.reshape(inverse, [9])[:8] / inverse[2, 2]
  out = tf.raw_ops.ImageProjectiveTransformV3(
      images=tf.cast(image, tf.float32)[None], transforms=params[None],
      output_shape=[size, size], fill_value=0.0, interpolation='BILINEAR',
      fill_mode='CONSTANT')
  return out[0]


def _apply(matrix, points):
  return tf.linalg.matmul(points, matrix[:2, :2], transpose_b=True) + matrix[:2, 2]


def transform_example(example: dict, matrix, rotation, flip, input_size: int) -> dict:
  flip_perm = tf.constant(skeleton.FLIP_PERMUTATION)
  maybe_flip = lambda x: tf.cond(flip, lambda: tf.gather(x, flip_perm), lambda: x)
  c, s = tf.cos(rotation), tf.sin(rotation)
  f = tf.where(flip, -1.0, 1.0)
  rot3 = tf.stack([[c * f, -s, 0.0], [s * f, c, 0.0], [0.0, 0.0, 1.0]])
  scale = tf.norm(matrix[:2, 0])
  has_k = example['has_intrinsics']
  joints_2d = _apply(matrix, example['joints_2d'])
  return dict(
      image=_warp(example['image'], matrix, input_size),
      joints_2d=maybe_flip(joints_2d),
      joints_2d_valid=maybe_flip(example['joints_2d_valid']),
      joints_3d=maybe_flip(tf.linalg.matmul(example['joints_3d'], rot3, transpose_b=True)),
      has_3d=example['has_3d'],
      focal=tf.where(has_k, example['focal'] * scale, 0.0),
      principal=tf.where(has_k, _apply(matrix, example['principal'][None])[0], 0.0),
      has_intrinsics=has_k,
  )


def _crop_geometry(image):
  size = tf.cast(tf.shape(image)[0], tf.float32)
  return tf.stack([size / 2, size / 2]), size / crops.STORE_MARGIN


def eval_example(example: dict, input_size: int) -> dict:
  centre, box = _crop_geometry(example['image'])
  matrix = _similarity(input_size / box, 0.0, tf.constant(False), centre,
                       tf.constant([input_size / 2] * 2, tf.float32))
  return transform_example(example, matrix, tf.constant(0.0), tf.constant(False), input_size)


def background_texture(d: dict, height, width) -> tf.Tensor:
  """``d``: ``augment.texture_draws`` (grids of the most cells, cut to ``cells``)."""
  cells = int(d['cells'])
  roughness = float(d['roughness'])
  noise = tf.zeros([height, width, 3])
  for octave in range(3):
    n = cells * 2**octave
    grid = tf.constant(np.asarray(d['grids'][octave])[:n, :n])
    noise += roughness**octave * tf.image.resize(grid, [height, width])
  noise /= 1.0 + roughness + roughness**2
  angle = float(d['angle'])
  period = 4.0 + float(d['period']) * (tf.cast(tf.maximum(height, width), tf.float32) / 2
                                       - 4.0)
  y, x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                     indexing='ij')
  wave = 0.5 + 0.5 * tf.sin(2 * math.pi * (x * tf.cos(angle) + y * tf.sin(angle)) / period)
  colours = tf.constant(np.asarray(d['colours']))
  stripes = wave[..., None] * colours[0] + (1 - wave[..., None]) * colours[1]
  blend = float(d['blend'])
  return (blend * noise + (1 - blend) * stripes) * 255.0


def composite_background(image, mask, draws, picture=None) -> tf.Tensor:
  """``picture``: None (a texture behind the person) or the background image."""
  image = tf.cast(image, tf.float32)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  person = tf.cast(mask[..., 0:1], tf.float32) / 255
  chair = tf.cast(mask[..., 1:2], tf.float32) / 255
  chair *= 1.0 - person
  if picture is None:
    back = background_texture(draws['back'], height, width)
  else:
    back = tf.image.resize(tf.cast(picture, tf.float32), [height, width])
  return (person * image + chair * background_texture(draws['chair'], height, width) +
          (1.0 - person - chair) * back)


def train_example(example: dict, draws: dict, input_size: int, augment,
                  background=False, picture=None) -> dict:
  """``example``: one stored crop, unpadded, with ``focal`` and ``principal``."""
  example = dict(example)
  if augment.background > 0 and background:
    example['image'] = composite_background(example['image'], example['mask'], draws,
                                            picture)
  centre, box = _crop_geometry(example['image'])
  scale = float(draws['scale'])
  rotation = tf.constant(float(draws['rotation']))
  flip = tf.constant(bool(draws['flip']))
  shift = tf.constant(np.asarray(draws['shift'], np.float32))
  matrix = _similarity(input_size / (box * scale), rotation, flip, centre,
                       (0.5 + shift) * input_size)
  out = transform_example(example, matrix, rotation, flip, input_size)
  if augment.color > 0:
    image = out['image'] / 255.0
    image = tf.image.adjust_brightness(image, float(draws['brightness']))
    image = tf.image.adjust_contrast(image, float(draws['contrast']))
    image = tf.image.adjust_saturation(image, float(draws['saturation']))
    out['image'] = tf.clip_by_value(image, 0.0, 1.0) * 255.0
  return {k: np.asarray(v) for k, v in out.items()}
