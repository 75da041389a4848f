"""Augmentation on the device: JAX on a batch of stored crops, inside one jitted function.

The host (``jaxpose.data.pipeline``) only reads and decodes; everything per example that is
arithmetic on pixels or labels happens here, drawn from the example's key (a pure function
of seed, source and stream position, made on the host).

Augmentation is a similarity map of the pixels, ``u' = A u`` with ``A = [s R F | t]``
(F a horizontal flip, R an in-plane rotation). The 3D labels follow as ``X' = R3 F3 X``
(rotation about the optical axis, mirror of x) and the intrinsics as ``f' = s f``,
``c' = A c``, so that projecting the new 3D with the new intrinsics gives the new 2D.
Before it, an example the host marked ``background`` (it has masks) gets a new background
behind the person and a texture on the chair, composited on the stored crop, where the
masks lie exactly on the pixels; the labels do not change.

Stored crops of different sizes share one batch padded with black to the largest (``size``
says each one's side): black is what the warp reads outside a crop anyway.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose import skeleton
from jaxpose.data import crops

# Grid side of each noise octave of a texture at the most cells (16 × 2^octave).
TEXTURE_GRIDS = (16, 32, 64)


# --- Draws --------------------------------------------------------------------------------

def texture_draws(key) -> dict:
  """The random numbers of one procedural texture (see ``texture``)."""
  k = jax.random.split(key, 9)
  return dict(
      cells=jax.random.randint(k[0], (), 2, 17),
      roughness=jax.random.uniform(k[1], (), minval=0.2, maxval=0.8),
      grids=tuple(jax.random.uniform(k[2 + o], (g, g, 3))
                  for o, g in enumerate(TEXTURE_GRIDS)),
      blend=jax.random.uniform(k[5]),
      angle=jax.random.uniform(k[6], (), maxval=math.pi),
      period=jax.random.uniform(k[7]),  # 0 → 4 px, 1 → half the crop's side
      colours=jax.random.uniform(k[8], (2, 3)),
  )


def draw(key_data, augment: ml_collections.ConfigDict) -> dict:
  """One example's augmentation parameters from its key (uint32 (2,), see
  ``pipeline.example_keys``)."""
  key = jax.random.wrap_key_data(key_data, impl='threefry2x32')
  k = jax.random.split(key, 9)
  uniform = lambda i, lo, hi, shape=(): jax.random.uniform(k[i], shape, minval=lo, maxval=hi)
  c = augment.color
  draws = dict(
      scale=uniform(0, 1.0 - augment.scale, 1.0 + augment.scale),
      rotation=uniform(1, -1.0, 1.0) * math.radians(augment.rotation_deg),
      flip=jnp.logical_and(augment.flip, uniform(2, 0.0, 1.0) < 0.5),
      shift=uniform(3, -1.0, 1.0, (2,)) * augment.translation,
      brightness=uniform(4, -c, c), contrast=uniform(5, 1 - c, 1 + c),
      saturation=uniform(6, 1 - c, 1 + c))
  if augment.background > 0:
    draws['back'], draws['chair'] = texture_draws(k[7]), texture_draws(k[8])
  return draws


# --- Pixels -------------------------------------------------------------------------------

def _interpolation(source, target, out: int, length: int):
  """(out, length) matrix of linear resampling: the first ``source`` (dynamic) of ``length``
  pixels to ``target`` pixels, on an ``out``-pixel canvas (half-pixel centres, edges
  clamped: TF's bilinear resize, without antialiasing)."""
  position = (jnp.arange(out, dtype=jnp.float32) + 0.5) * (source / target) - 0.5
  low = jnp.floor(position)
  frac = (position - low)[:, None]
  last = jnp.asarray(source, jnp.int32) - 1
  i0 = jnp.clip(low.astype(jnp.int32), 0, last)[:, None]
  i1 = jnp.clip(low.astype(jnp.int32) + 1, 0, last)[:, None]
  columns = jnp.arange(length)
  return (1 - frac) * (columns == i0) + frac * (columns == i1)


def resize(image, source, target, out: int):
  """The top-left ``source``² pixels of ``image`` (H, W, C) resized to ``target``² and put
  on an ``out``² canvas (beyond ``target`` the pixels are meaningless). Two matrix products,
  not gathers: faster under vmap (docs/performance.md)."""
  rows = _interpolation(source, target, out, image.shape[0])
  columns = _interpolation(source, target, out, image.shape[1])
  return jnp.einsum('oi,ijc,pj->opc', rows, image, columns,
                    precision=jax.lax.Precision.HIGHEST)


def texture(d: dict, size, canvas: int):
  """(canvas, canvas, 3) float32 in [0, 255]: a procedural texture for a ``size``-pixel
  crop, colour noise of three octaves from ``d['cells']`` cells blended with stripes.

  Every term is separable in (row, column): an octave's bilinear upsampling is rows · grid ·
  columnsᵀ, and the stripes' sin(u x + v y) is sin(u x) cos(v y) + cos(u x) sin(v y). The
  texture is therefore one matrix product of (canvas, 3, k) row factors and (canvas, k)
  column factors: faster than a product per octave and a sine per pixel
  (docs/performance.md)."""
  r, blend = d['roughness'], d['blend']
  noise = blend * 255.0 / (1.0 + r + r**2)
  rows, columns = [], []
  for o, grid in enumerate(d['grids']):
    # The grids are square: one resampling matrix serves rows and columns.
    resample = _interpolation(d['cells'] * 2**o, size, canvas, grid.shape[0])
    rows.append(noise * r**o * jnp.einsum('oi,ijc->ocj', resample, grid,
                                          precision=jax.lax.Precision.HIGHEST))
    columns.append(resample)
  # Stripes between two colours: c1 + (c0 - c1) (1 + sin(u x + v y)) / 2 at pixel (y, x).
  period = 4.0 + d['period'] * (size / 2 - 4.0)
  phase = jnp.arange(canvas, dtype=jnp.float32) * (2 * math.pi / period)
  u, v = phase * jnp.cos(d['angle']), phase * jnp.sin(d['angle'])
  high, low = (1 - blend) * 255.0 * d['colours']
  rows.append(jnp.stack([jnp.broadcast_to((high + low) / 2, (canvas, 3)),
                         (high - low) / 2 * jnp.cos(v)[:, None],
                         (high - low) / 2 * jnp.sin(v)[:, None]], axis=-1))
  columns.append(jnp.stack([jnp.ones(canvas), jnp.sin(u), jnp.cos(u)], axis=-1))
  return jnp.einsum('ocj,pj->opc', jnp.concatenate(rows, -1), jnp.concatenate(columns, -1),
                    precision=jax.lax.Precision.HIGHEST)


def composite(image, mask, size, draws, picture=None, picture_size=None, use_picture=False):
  """``image`` (S, S, 3) float with a new background behind the person and a texture on the
  chair (``mask`` (S, S, 2) uint8: person, chair); the background is ``picture`` resized
  where ``use_picture``, a texture otherwise."""
  canvas = image.shape[0]
  person = mask[..., 0:1].astype(jnp.float32) / 255
  # Where a mask says both, the person is in front of the chair.
  chair = mask[..., 1:2].astype(jnp.float32) / 255 * (1.0 - person)
  back = texture(draws['back'], size, canvas)
  if picture is not None:
    back = jnp.where(use_picture,
                     resize(picture.astype(jnp.float32), picture_size, size, canvas), back)
  return (person * image + chair * texture(draws['chair'], size, canvas) +
          (1.0 - person - chair) * back)


def similarity(scale, rotation, flip, centre, target):
  """3×3 float32 map: flip about ``centre``, rotate, scale, move centre onto ``target``
  (``geometry.affine_matrix`` for traced parameters)."""
  c, s = jnp.cos(rotation), jnp.sin(rotation)
  f = jnp.where(flip, -1.0, 1.0)
  m = jnp.stack([jnp.stack([scale * c * f, -scale * s]), jnp.stack([scale * s * f, scale * c])])
  t = target - m @ centre
  return jnp.concatenate([jnp.concatenate([m, t[:, None]], axis=1),
                          jnp.array([[0.0, 0.0, 1.0]])], axis=0)


def warp(image, matrix, size: int):
  """(size, size, C) float32: output pixel u' shows input pixel ``A^-1 u'``, bilinear,
  black outside ``image`` (pixel centres at +0.5)."""
  inverse = jnp.linalg.inv(matrix)
  axis = jnp.arange(size, dtype=jnp.float32) + 0.5
  y, x = jnp.meshgrid(axis, axis, indexing='ij')
  u = inverse[0, 0] * x + inverse[0, 1] * y + inverse[0, 2] - 0.5
  v = inverse[1, 0] * x + inverse[1, 1] * y + inverse[1, 2] - 0.5
  u0, v0 = jnp.floor(u), jnp.floor(v)
  fu, fv = (u - u0)[..., None], (v - v0)[..., None]
  height, width = image.shape[:2]
  flat = image.reshape(height * width, -1)

  def pixel(row, col):
    inside = (row >= 0) & (row < height) & (col >= 0) & (col < width)
    index = jnp.clip(row, 0, height - 1) * width + jnp.clip(col, 0, width - 1)
    return jnp.where(inside[..., None], flat[index.astype(jnp.int32)], 0.0)

  top = (1 - fu) * pixel(v0, u0) + fu * pixel(v0, u0 + 1)
  bottom = (1 - fu) * pixel(v0 + 1, u0) + fu * pixel(v0 + 1, u0 + 1)
  return (1 - fv) * top + fv * bottom


def colour(image, draws):
  """Brightness, contrast and saturation jitter of a [0, 255] image (TF's
  ``adjust_brightness``/``_contrast``/``_saturation`` in that order), clipped."""
  image = image / 255.0 + draws['brightness']
  mean = image.mean(axis=(0, 1))
  image = (image - mean) * draws['contrast'] + mean
  # HSV saturation scaled with hue and value kept: every channel moves away from the
  # maximum (the value) in proportion; TF's kernel gives s = 0 where value <= 0.
  value, low = image.max(-1, keepdims=True), image.min(-1, keepdims=True)
  saturation = jnp.where(value > 0, (value - low) / jnp.where(value > 0, value, 1.0), 0.0)
  scaled = jnp.clip(saturation * draws['saturation'], 0.0, 1.0)
  ratio = jnp.where(saturation > 0, scaled / jnp.where(saturation > 0, saturation, 1.0), 0.0)
  image = value - (value - image) * ratio
  return jnp.clip(image, 0.0, 1.0) * 255.0


# --- Labels -------------------------------------------------------------------------------

def transform_labels(example: dict, matrix, rotation, flip) -> dict:
  """The labels of ``example`` moved by ``matrix`` (which is [s R(rotation) F(flip) | t])."""
  maybe_flip = lambda x: jnp.where(flip, x[np.asarray(skeleton.FLIP_PERMUTATION)], x)
  c, s = jnp.cos(rotation), jnp.sin(rotation)
  f = jnp.where(flip, -1.0, 1.0)
  rot3 = jnp.array([[c * f, -s, 0.0], [s * f, c, 0.0], [0.0, 0.0, 1.0]])
  scale = jnp.linalg.norm(matrix[:2, 0])
  apply = lambda points: points @ matrix[:2, :2].T + matrix[:2, 2]
  has_k = example['has_intrinsics']
  return dict(
      joints_2d=maybe_flip(apply(example['joints_2d'])),
      joints_2d_valid=maybe_flip(example['joints_2d_valid']),
      joints_3d=maybe_flip(example['joints_3d'] @ rot3.T),
      has_3d=example['has_3d'],
      focal=jnp.where(has_k, example['focal'] * scale, 0.0),
      principal=jnp.where(has_k, apply(example['principal'][None])[0], 0.0),
      has_intrinsics=has_k)


# --- Examples and batches -----------------------------------------------------------------

def _geometry(size):
  """Centre and side of the tight box inside a stored crop of side ``size``."""
  return jnp.stack([size / 2, size / 2]), size / crops.STORE_MARGIN


def train_example(example: dict, draws: dict, augment: ml_collections.ConfigDict,
                  input_size: int) -> dict:
  """One training example (the host's arrays, unbatched) augmented with ``draws``; the
  image float32 in [0, 255]."""
  image = example['image'].astype(jnp.float32)
  size = example['size']
  if augment.background > 0:
    changed = composite(image, example['mask'], size, draws, example.get('picture'),
                        example.get('picture_size'), example.get('use_picture', False))
    image = jnp.where(example['background'], changed, image)
  centre, box = _geometry(size)
  matrix = similarity(input_size / (box * draws['scale']), draws['rotation'], draws['flip'],
                      centre, (0.5 + draws['shift']) * input_size)
  out = transform_labels(example, matrix, draws['rotation'], draws['flip'])
  out['image'] = warp(image, matrix, input_size)
  if augment.color > 0:
    out['image'] = colour(out['image'], draws)
  return out


def train_batch(raw: dict, augment: ml_collections.ConfigDict, input_size: int) -> dict:
  """The training batch (``pipeline.TrainStream``'s arrays, on the devices) augmented: the
  image uint8 (as numpy's astype truncates), the labels moved with it, the reference bone
  lengths passed through."""
  def one(example):
    return train_example(example, draw(example['key'], augment), augment, input_size)

  out = jax.vmap(one)({k: v for k, v in raw.items()
                       if k not in ('ref_bone_lengths', 'has_ref_bones')})
  out['image'] = out['image'].astype(jnp.uint8)
  out['ref_bone_lengths'], out['has_ref_bones'] = raw['ref_bone_lengths'], raw['has_ref_bones']
  return out


def eval_example(example: dict, input_size: int) -> dict:
  """The tight box, no augmentation (the paper's evaluation crop)."""
  centre, box = _geometry(example['size'])
  matrix = similarity(input_size / box, 0.0, False, centre,
                      jnp.full(2, input_size / 2, jnp.float32))
  out = transform_labels(example, matrix, 0.0, False)
  out['image'] = warp(example['image'].astype(jnp.float32), matrix, input_size)
  return out


def eval_batch(raw: dict, input_size: int) -> dict:
  """An evaluation batch (``pipeline.eval_batches``' arrays) cut to the network's input,
  the image uint8."""
  out = jax.vmap(lambda e: eval_example(e, input_size))(raw)
  out['image'] = out['image'].astype(jnp.uint8)
  return out
