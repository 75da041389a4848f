"""The input pipeline: sources mixed inside every batch, augmentation that moves the labels
with the pixels, and a stream that is deterministic and resumable from a position.

Design. Every source is read by index from its array_record files: example ``i`` of a
source's stream is record ``perm_e[i mod N]`` with ``e = i div N`` and ``perm_e`` a
permutation seeded by (seed, source, e), and its augmentation is drawn from a stateless
RNG seeded by (seed, source, i). A stream is therefore a pure function of its start
position: resuming at step k means starting every source at ``k × its share of the
batch``, with nothing to replay. Each process reads its own part of every split
(``tfds.split_for_jax_process``). Decoding and augmentation run in the tf.data graph.

Augmentation is a similarity map of the pixels, ``u' = A u`` with ``A = [s R F | t]``
(F a horizontal flip, R an in-plane rotation). The 3D labels follow as ``X' = R3 F3 X``
(rotation about the optical axis, mirror of x) and the intrinsics as ``f' = s f``,
``c' = A c``, so that projecting the new 3D with the new intrinsics gives the new 2D.
Before it, an example with masks (``has_mask``) may get a new background behind the
person and a texture on the chair, composited on the stored crop, where the masks lie
exactly on the pixels; the labels do not change.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import crops
from jaxpose.data import features as features_lib
from jaxpose.data import tfds_io

LABEL_KEYS = ('joints_2d', 'joints_2d_valid', 'joints_3d', 'has_3d', 'focal', 'principal',
              'has_intrinsics')
META_KEYS = ('subject', 'sequence', 'action', 'scene', 'camera', 'frame')


@dataclasses.dataclass
class Source:
  """One opened dataset split: this process's share of it, readable by index, and the
  whole split (for statistics that must not depend on the number of processes)."""
  name: str
  builder: tfds.core.DatasetBuilder
  split: str
  records: object  # array_record random-access reader: records[i] -> serialized bytes
  num_global: int
  global_records: object  # the same over every process's share

  def __len__(self):
    return len(self.records)


def open_source(name: str, source_config, data_config, limit: int = 0) -> Source:
  """Opens ``source_config`` (see ``jaxpose.config.source``), building it if allowed;
  ``limit`` > 0 keeps the split's first ``limit`` examples (before the per-process split, so
  that the same examples count whatever the number of processes)."""
  builder = _prepared_builder(name, source_config, data_config)
  if source_config.split not in builder.info.splits:
    raise ValueError(f'data source {name!r}: {builder.info.full_name} has no split '
                     f'{source_config.split!r}; it has {sorted(builder.info.splits)}')
  # TFDS rejects a slice longer than the split: only cut splits that are longer.
  if 0 < limit < builder.info.splits[source_config.split].num_examples:
    split = f'{source_config.split}[:{limit}]'
  else:
    split = source_config.split
  num_global = builder.info.splits[split].num_examples
  try:
    records = builder.as_data_source(tfds.split_for_jax_process(split)).data_source
    global_records = builder.as_data_source(split).data_source
  except Exception as e:  # A tfrecord build has no random access.
    raise ValueError(f'data source {name!r}: cannot read {builder.data_dir} by index '
                     f'({e}); rebuild it with `python -m jaxpose.data.build` (array_record)'
                     ) from e
  try:
    tfds_io.check_readable(builder, split)
  except ValueError as e:
    raise ValueError(f'data source {name!r}: {e}') from e
  return Source(name, builder, source_config.split, records, num_global, global_records)


def _prepared_builder(name: str, source_config, data_config) -> tfds.core.DatasetBuilder:
  """The builder of ``source_config``, its dataset built first if missing and
  ``data_config.build_if_missing``. Of several processes, process 0 builds while the others
  wait for it at a barrier (up to ``data_config.build_timeout_s``), so the data dir must be
  one folder that all of them see."""
  data_dir = tfds_io.resolve_data_dir(data_config.data_dir)
  get = lambda: tfds_io.get_builder(source_config.dataset, data_dir,
                                    source_config.builder_config or None)
  builder = get()
  if not builder.is_prepared() and not data_config.build_if_missing:
    raise FileNotFoundError(
        f'data source {name!r}: dataset {source_config.dataset} is not built under '
        f'{data_dir} (config.data.data_dir); build it with `python -m jaxpose.data.build '
        f'--dataset={source_config.dataset} --manual_dir=...` or set '
        f'config.data.build_if_missing=True')
  if jax.process_index() == 0 and not builder.is_prepared():
    logging.info('Building %s into %s', builder.info.full_name, data_dir)
    try:
      tfds_io.ensure_built(builder, source_config.manual_dir or None)
    except Exception as e:
      e.add_note(f'(building data source {name!r}, {builder.info.full_name}, into '
                 f'{data_dir})')
      raise
  if jax.process_count() == 1:
    return builder
  try:
    ocp.multihost.get_barrier_sync_fn()(key=f'jaxpose_build_{name}',
                                        timeout_ms=int(data_config.build_timeout_s * 1000))
  except Exception as e:  # The coordination service's deadline error has no own type.
    raise TimeoutError(
        f'data source {name!r}: process {jax.process_index()} waited '
        f'{data_config.build_timeout_s} s (config.data.build_timeout_s) for process 0 to '
        f'build or find {builder.info.full_name} in {data_dir} ({e})') from e
  if jax.process_index() > 0:
    builder = get()  # The first one's DatasetInfo was read before the build: no splits.
  if not builder.is_prepared():
    raise FileNotFoundError(
        f'data source {name!r}: process 0 built or found {builder.info.full_name} in '
        f'{data_dir}, but process {jax.process_index()} does not see it there; '
        'config.data.data_dir must be one folder every process shares (or build the '
        'dataset on every host first)')
  return builder


def batch_shares(sources: ml_collections.ConfigDict, batch_size: int) -> dict[str, int]:
  """Examples of each training source in every (global) batch, from their ``fraction``s
  (largest remainders, so the shares always add up to the batch)."""
  names = sorted(sources)
  if not names:
    raise ValueError('config.data.train has no sources')
  fractions = np.array([sources[n].fraction for n in names], np.float64)
  if np.any(fractions < 0) or fractions.sum() <= 0:
    raise ValueError(f'config.data.train.*.fraction must be >= 0 and not all 0, got '
                     f'{dict(zip(names, fractions))}')
  exact = fractions / fractions.sum() * batch_size
  shares = np.floor(exact).astype(int)
  for i in np.argsort(-(exact - shares), kind='stable')[:batch_size - shares.sum()]:
    shares[i] += 1
  return {n: int(s) for n, s in zip(names, shares) if s > 0}


def training_pose_statistics(sources: list[Source], max_examples: int):
  """From up to ``max_examples`` examples spread evenly over each 3D source's whole split
  (the same for any number of processes): (subjects, bones) mean bone lengths (mm) of each
  training subject, for the bone loss of 2D-only examples, and the (J, 3) mean
  root-relative pose (mm), the trivial baseline that evaluation reports beside the model."""
  lengths: dict[str, list[np.ndarray]] = {}
  poses = []
  for source in sources:
    features = source.builder.info.features
    records = source.global_records
    step = max(1, len(records) // max(1, max_examples))
    for index in range(0, len(records), step):
      example = features.deserialize_example_np(
          records[index], decoders={'image': tfds.decode.SkipDecoding(),
                                           'mask': tfds.decode.SkipDecoding()})
      if example['has_3d']:
        subject = example['subject']
        subject = subject.decode() if isinstance(subject, bytes) else str(subject)
        lengths.setdefault(f'{source.name}/{subject}', []).append(
            skeleton.bone_lengths(example['joints_3d']))
        poses.append(geometry.root_centre(example['joints_3d']))
  if not lengths:
    return np.zeros((0, skeleton.NUM_BONES), np.float32), None
  table = np.stack([np.mean(v, axis=0) for _, v in sorted(lengths.items())])
  return table.astype(np.float32), np.mean(poses, axis=0)


# --- Per-example transforms (tf.data graph) ---------------------------------------------

def _similarity(scale, rotation, flip, centre, target):
  """3×3 float32 map: flip about ``centre``, rotate, scale, move centre onto target (the
  tf twin of ``geometry.affine_matrix``, for per-example random parameters)."""
  c, s = tf.cos(rotation), tf.sin(rotation)
  f = tf.where(flip, -1.0, 1.0)
  # [s R F | t] with t chosen so that centre lands on target.
  m = tf.stack([tf.stack([scale * c * f, -scale * s]), tf.stack([scale * s * f, scale * c])])
  t = target - tf.linalg.matvec(m, centre)
  return tf.concat([tf.concat([m, t[:, None]], axis=1), [[0.0, 0.0, 1.0]]], axis=0)


def _warp(image, matrix, size: int):
  """Resamples ``image`` so that output pixel u' shows input pixel ``A^-1 u'``."""
  inverse = tf.linalg.inv(matrix)
  # TF indexes pixel centres at integers; jaxpose puts them at +0.5.
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
  """Warps the crop by ``matrix`` (which must be [s R(rotation) F(flip) | t]) and moves
  every label with it."""
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


def _flatten(example: dict) -> dict:
  example = dict(example)
  intrinsics = example.pop('intrinsics')
  example['focal'], example['principal'] = intrinsics['focal'], intrinsics['principal']
  return example


def _crop_geometry(image):
  """Centre and side of the tight box inside a stored crop (``crops`` convention)."""
  size = tf.cast(tf.shape(image)[0], tf.float32)
  return tf.stack([size / 2, size / 2]), size / crops.STORE_MARGIN


def eval_example(example: dict, input_size: int) -> dict:
  """The tight box, no augmentation (the paper's evaluation crop)."""
  example = _flatten(example)
  centre, box = _crop_geometry(example['image'])
  matrix = _similarity(input_size / box, 0.0, tf.constant(False), centre,
                       tf.constant([input_size / 2] * 2, tf.float32))
  out = transform_example(example, matrix, tf.constant(0.0), tf.constant(False), input_size)
  out.update({k: example[k] for k in META_KEYS})
  return out


def background_texture(seed, height, width) -> tf.Tensor:
  """(height, width, 3) float32 in [0, 255]: a random procedural texture, colour noise of
  three octaves from a random cell size blended with stripes of random colours, period
  and direction."""
  seeds = tf.random.experimental.stateless_split(seed, 8)
  uniform = lambda i, shape, lo=0.0, hi=1.0: tf.random.stateless_uniform(
      shape, seeds[i], lo, hi)
  cells = tf.random.stateless_uniform([], seeds[0], 2, 17, dtype=tf.int32)
  roughness = uniform(1, [], 0.2, 0.8)
  noise = tf.zeros([height, width, 3])
  for octave in range(3):
    grid = uniform(2 + octave, tf.stack([cells * 2**octave, cells * 2**octave, 3]))
    noise += roughness**octave * tf.image.resize(grid, [height, width])
  noise /= 1.0 + roughness + roughness**2
  angle = uniform(5, [], 0.0, math.pi)
  period = uniform(6, [], 4.0, tf.cast(tf.maximum(height, width), tf.float32) / 2)
  y, x = tf.meshgrid(tf.range(height, dtype=tf.float32), tf.range(width, dtype=tf.float32),
                     indexing='ij')
  wave = 0.5 + 0.5 * tf.sin(2 * math.pi * (x * tf.cos(angle) + y * tf.sin(angle)) / period)
  colours = uniform(7, [2, 3])
  stripes = wave[..., None] * colours[0] + (1 - wave[..., None]) * colours[1]
  blend = uniform(4, [])
  return (blend * noise + (1 - blend) * stripes) * 255.0


def composite_background(image, mask, seed,
                         backgrounds: Callable | None = None) -> tf.Tensor:
  """``image`` with a new background behind the person and a texture on the chair.

  Args:
    image: (H, W, 3) pixels in [0, 255].
    mask: (H, W, 3) uint8 ``mask`` of the common format (person, chair channels).
    seed: stateless RNG seed (2,).
    backgrounds: None, or a function of a seed giving an (h, w, 3) image in [0, 255],
      which then provides the background of half the examples (textures the others).

  Returns:
    (H, W, 3) float32: the person's pixels as they were (blended at soft mask edges),
    the chair and the rest of the studio replaced.
  """
  image = tf.cast(image, tf.float32)
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  seeds = tf.random.experimental.stateless_split(seed, 4)
  person = tf.cast(mask[..., features_lib.PERSON:features_lib.PERSON + 1], tf.float32) / 255
  # Where a mask says both, the person is in front of the chair.
  chair = tf.cast(mask[..., features_lib.CHAIR:features_lib.CHAIR + 1], tf.float32) / 255
  chair *= 1.0 - person
  texture = lambda: background_texture(seeds[0], height, width)
  if backgrounds is None:
    back = texture()
  else:
    picture = lambda: tf.image.resize(
        tf.cast(backgrounds(seeds[1]), tf.float32), [height, width])
    back = tf.cond(tf.random.stateless_uniform([], seeds[2]) < 0.5, picture, texture)
  return (person * image + chair * background_texture(seeds[3], height, width) +
          (1.0 - person - chair) * back)


def train_example(example: dict, seed, input_size: int, augment, bone_table,
                  backgrounds: Callable | None = None) -> dict:
  """Background compositing (examples with masks), random similarity + colour jitter; a
  reference subject for the bone-length loss. ``backgrounds``: see
  ``composite_background``."""
  example = _flatten(example)
  seeds = tf.random.experimental.stateless_split(seed, 8)
  uniform = lambda i, lo, hi: tf.random.stateless_uniform([], seeds[i], lo, hi)
  if augment.background > 0:
    # Its own seeds, so that switching it on leaves the other draws as they were.
    bg_seeds = tf.random.experimental.stateless_split(
        tf.random.experimental.stateless_fold_in(seed, 1), 2)
    replace = tf.logical_and(
        example['has_mask'],
        tf.random.stateless_uniform([], bg_seeds[0]) < augment.background)
    image, mask = example['image'], example['mask']
    example['image'] = tf.cond(
        replace, lambda: composite_background(image, mask, bg_seeds[1], backgrounds),
        lambda: tf.cast(image, tf.float32))
  centre, box = _crop_geometry(example['image'])
  scale = uniform(0, 1.0 - augment.scale, 1.0 + augment.scale)
  rotation = uniform(1, -1.0, 1.0) * math.radians(augment.rotation_deg)
  flip = tf.logical_and(tf.constant(augment.flip), uniform(2, 0.0, 1.0) < 0.5)
  shift = tf.stack([uniform(3, -1.0, 1.0), uniform(4, -1.0, 1.0)]) * augment.translation
  matrix = _similarity(input_size / (box * scale), rotation, flip, centre,
                       (0.5 + shift) * input_size)
  out = transform_example(example, matrix, rotation, flip, input_size)
  if augment.color > 0:
    image = out['image'] / 255.0
    image = tf.image.stateless_random_brightness(image, augment.color, seeds[5])
    image = tf.image.stateless_random_contrast(image, 1 - augment.color, 1 + augment.color,
                                               seeds[6])
    image = tf.image.stateless_random_saturation(image, 1 - augment.color,
                                                 1 + augment.color, seeds[7])
    out['image'] = tf.clip_by_value(image, 0.0, 1.0) * 255.0
  num_subjects = bone_table.shape[0]
  if num_subjects:
    pick = tf.random.stateless_uniform([], seeds[0] + 1, 0, num_subjects, dtype=tf.int32)
    out['ref_bone_lengths'] = tf.gather(tf.constant(bone_table), pick)
  else:
    out['ref_bone_lengths'] = tf.zeros([skeleton.NUM_BONES])
  out['has_ref_bones'] = tf.constant(num_subjects > 0)
  return out


# --- Streams ------------------------------------------------------------------------------

class _EpochPermutations:
  """``perm(e)[p]``: the record read at position p of epoch e.

  tf.data's parallel map calls this from several threads at once, and near an epoch's end
  for two epochs at once: the permutations of the last few epochs are kept (each computed
  once) in a dict that is replaced whole, never changed in place, so a call reads its own
  epoch's permutation without a lock (taken only to add one), and calls that alternate
  between epochs do not recompute them.
  """

  KEEP = 4  # epochs; one further back is recomputed, the same, if a late call asks

  def __init__(self, size: int, seed: tuple[int, ...]):
    self.size, self.seed = size, seed
    self._perms: dict[int, np.ndarray] = {}
    self._lock = threading.Lock()

  def permutation(self, epoch: int) -> np.ndarray:
    perm = self._perms.get(epoch)
    if perm is None:
      with self._lock:
        perm = self._perms.get(epoch)
        if perm is None:
          perm = np.random.default_rng((*self.seed, epoch)).permutation(self.size)
          perms = {**self._perms, epoch: perm}
          while len(perms) > self.KEEP:
            del perms[min(perms)]
          self._perms = perms
    return perm

  def __call__(self, index: int) -> int:
    epoch, position = divmod(index, self.size)
    return int(self.permutation(epoch)[position])


# Records read per call into Python: each call takes the GIL and costs tf.data about 0.3 ms of
# CPU; reading 16 at a time cut the CPU per record from 374 to 150 µs here (synthetic crops).
READ_BATCH = 16


def _index_stream(source: Source, start: int, seed: tuple[int, ...], shuffle: bool,
                  fn: Callable = lambda index, example: (index, example),
                  num_parallel_calls: int = tf.data.AUTOTUNE,
                  decode_mask: bool = False) -> tf.data.Dataset:
  """``fn(index, parsed example)`` of the stream's positions from ``start`` on, forever if
  ``shuffle``; the parsing and ``fn`` run in one parallel map. The ``mask`` is decoded only
  if ``decode_mask`` (else left as PNG bytes)."""
  if len(source) == 0:
    raise ValueError(f'data source {source.name!r}: split {source.split!r} has no '
                     f'examples for process {jax.process_index()}')
  record_of = _EpochPermutations(len(source), seed) if shuffle else (lambda i: i)
  fetch = lambda indices: np.array([source.records[record_of(int(i))] for i in indices],
                                   dtype=object)
  stop = np.iinfo(np.int64).max if shuffle else len(source)
  features = source.builder.info.features
  decoders = None if decode_mask else {'mask': tfds.decode.SkipDecoding()}

  def read(indices):
    records = tf.numpy_function(fetch, [indices], tf.string, stateful=False)
    records.set_shape(indices.shape)
    return indices, records

  def parse(index, record):
    return fn(index, features.deserialize_example(record, decoders=decoders))

  records = tf.data.Dataset.range(start, stop).batch(READ_BATCH).map(
      read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
  return records.map(parse, num_parallel_calls=num_parallel_calls, deterministic=True)


class TrainStream:
  """Iterator of host-local training batches (numpy) mixing the configured sources.

  ``position`` maps each source to the number of its examples this process has consumed:
  saving it with a checkpoint and passing it back resumes the exact same stream.
  """

  def __init__(self, config: ml_collections.ConfigDict, position: dict[str, int] | None = None):
    data = config.data
    process_count = jax.process_count()
    shares = batch_shares(data.train, config.batch_size)
    for name, share in shares.items():
      if share % process_count:
        raise ValueError(f'data source {name!r} gets {share} examples per batch, not '
                         f'divisible by {process_count} processes; adjust its fraction or '
                         f'config.batch_size')
    self.local_shares = {n: s // process_count for n, s in shares.items()}
    self.sources = {n: open_source(n, data.train[n], data) for n in self.local_shares}
    self.position = {n: 0 for n in self.local_shares}
    self.position.update(position or {})
    self.bone_table, self.mean_pose = training_pose_statistics(
        list(self.sources.values()), data.pose_statistics_examples)
    backgrounds = self._background_images(data.augment)
    streams = []
    for source_id, (name, share) in enumerate(sorted(self.local_shares.items())):
      key = (config.seed, source_id, jax.process_index())
      # Augmentation of stream position i: a stateless RNG seeded by (key, i).
      key_int = int(np.random.SeedSequence(key).generate_state(1, np.uint32)[0])
      parse = lambda i, ex, k=key_int: train_example(
          ex, tf.stack([tf.constant(k, tf.int64), i]), data.input_size, data.augment,
          self.bone_table, backgrounds)
      ds = _index_stream(self.sources[name], self.position[name], key, shuffle=True,
                         fn=parse, num_parallel_calls=data.num_parallel_calls,
                         decode_mask=data.augment.background > 0)
      streams.append(ds.batch(share, drop_remainder=True))
    ds = tf.data.Dataset.zip(tuple(streams)).map(_concat)
    options = tf.data.Options()
    options.deterministic = True
    self._iterator = ds.with_options(options).prefetch(data.prefetch).as_numpy_iterator()

  def _background_images(self, augment) -> Callable | None:
    """A function of a seed giving the image of a random example of the training sources
    named in ``augment.background_sources`` (None if it names none)."""
    names = tuple(augment.background_sources)
    if not names:
      return None
    if augment.background <= 0:
      raise ValueError(f'config.data.augment.background_sources={names} but '
                       'config.data.augment.background is 0; set its probability > 0 or '
                       'leave background_sources empty')
    unknown = sorted(set(names) - set(self.sources))
    if unknown:
      raise ValueError(f'config.data.augment.background_sources names {unknown}, not '
                       f'training sources of this batch; expected some of '
                       f'{sorted(self.sources)}')
    sources = [self.sources[n] for n in names]
    ends = np.cumsum([len(s) for s in sources])

    def fetch(k):
      i = int(np.searchsorted(ends, k, side='right'))
      return sources[i].records[int(k) - int(ends[i] - len(sources[i]))]

    # Every source stores the common format: one FeaturesDict parses them all.
    features = sources[0].builder.info.features

    def read(seed):
      k = tf.random.stateless_uniform([], seed, 0, int(ends[-1]), dtype=tf.int64)
      record = tf.numpy_function(fetch, [k], tf.string, stateful=False)
      return features.deserialize_example(
          record, decoders={'mask': tfds.decode.SkipDecoding()})['image']

    return read

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    batch = next(self._iterator)
    for name, share in self.local_shares.items():
      self.position[name] += share
    return batch


def _concat(*parts: dict) -> dict:
  """One batch of the sources' parts, its image as uint8 (the step's input type; in [0, 255]
  already, truncated as numpy's astype would)."""
  batch = {k: tf.concat([p[k] for p in parts], 0) for k in parts[0]}
  batch['image'] = tf.cast(batch['image'], tf.uint8)
  return batch


def eval_batches(name: str, source_config, config: ml_collections.ConfigDict,
                 local_batch_size: int, padded_size: int | None = None
                 ) -> Iterator[tuple[dict, dict]]:
  """(arrays, metadata) host-local batches of an evaluation split, in order.

  Each batch holds up to ``local_batch_size`` examples padded to ``padded_size`` (default:
  the same; a multiple of the local device count lets any batch size be sharded) with
  copies of the first example and ``mask`` False. Every process yields the same number of
  batches, so each example counts exactly once whatever the batch size and the number of
  devices and processes.
  """
  padded_size = padded_size or local_batch_size
  source = open_source(name, source_config, config.data, source_config.max_examples)
  num_batches = math.ceil(math.ceil(source.num_global / jax.process_count())
                          / local_batch_size)
  ds = _index_stream(source, 0, (), shuffle=False,
                     fn=lambda _, ex: eval_example(ex, config.data.input_size),
                     num_parallel_calls=config.data.num_parallel_calls)
  ds = ds.batch(local_batch_size).prefetch(config.data.prefetch)
  batches = iter(ds.as_numpy_iterator())
  template = None
  for _ in range(num_batches):
    batch = next(batches, None)
    if template is None:
      if batch is None:
        raise ValueError(f'evaluation source {name!r} has no examples for process '
                         f'{jax.process_index()}')
      template = jax.tree.map(lambda x: x[:1], batch)
    if batch is None:
      batch = jax.tree.map(lambda x: x[:0], template)
    n = len(batch['has_3d'])
    pad = padded_size - n
    batch = jax.tree.map(lambda x, t: np.concatenate([x, np.repeat(t, pad, 0)]),
                         batch, template)
    batch['mask'] = np.arange(padded_size) < n
    meta = {k: batch.pop(k) for k in META_KEYS}
    meta = {k: np.char.decode(v.astype(bytes)) if v.dtype.kind in 'SO' else v
            for k, v in meta.items()}
    batch['image'] = batch['image'].astype(np.uint8)
    yield batch, meta
