"""The host side of the input: read and decode, nothing else (numpy, no TensorFlow).

Training sources are mixed inside every batch in the proportions of their ``fraction``s;
example ``i`` of a source's stream is a pure function of (seed, source, i): its record
(``sources.EpochPermutations``) and its key, from which the device draws its augmentation
(``jaxpose.data.augment``). Resuming at step k means starting every source at ``k × its
share of the batch``, with nothing to replay. Each process reads its own part of every
split. A pool of threads decodes (OpenCV releases the GIL) a few batches ahead.

The batches hold the stored crops (uint8, padded with black to the largest stored size
of the batch's sources; ``size`` is each one's side) and their labels; the device cuts and
augments them (``augment.train_batch``, ``augment.eval_batch``).
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import weakref
from typing import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from jaxpose import skeleton
from jaxpose.data import features
from jaxpose.data import sources as sources_lib

META_KEYS = sources_lib.META_KEYS
_LABELS = ('joints_2d', 'joints_2d_valid', 'joints_3d', 'has_3d', 'has_intrinsics')
# Salts of the host's own draws from an example's key.
_REPLACE, _PICTURE, _PICTURE_RECORD, _REFERENCE = 1, 2, 3, 4


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64's finaliser: a bijection of uint64 that scrambles every bit."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


def _hash(stream_key: int, indices, salt: int = 0) -> np.ndarray:
  with np.errstate(over='ignore'):
    x = _mix(np.asarray(indices, np.uint64) + _mix(np.uint64(stream_key) * np.uint64(8)
                                                   + np.uint64(salt)))
    return _mix(x)


def example_keys(stream_key: int, indices) -> np.ndarray:
  """(n, 2) uint32: the keys of stream positions ``indices`` of the stream ``stream_key``
  (raw threefry key data for ``augment.draw``)."""
  return _hash(stream_key, indices).view(np.uint32).reshape(-1, 2)


def _unit(stream_key: int, indices, salt: int) -> np.ndarray:
  """Uniform [0, 1) draws of the host's own, one per index."""
  return (_hash(stream_key, indices, salt) >> np.uint64(11)).astype(np.float64) / 2.0**53


class _Decoder:
  """Decodes records of one source's split with numpy (TFDS's ``deserialize_example_np``,
  images through OpenCV); the ``mask`` only if ``masks``, as (H, W, 2) person and chair."""

  def __init__(self, source: sources_lib.Source, masks: bool, meta: bool = False):
    self.features = source.builder.info.features
    skip = tfds.decode.SkipDecoding()
    self.decoders = {} if masks else {'mask': skip}
    if not meta:
      self.decoders.update({k: skip for k in META_KEYS})
    self.masks = masks

  def __call__(self, record: bytes) -> dict:
    example = self.features.deserialize_example_np(record, decoders=self.decoders)
    intrinsics = example.pop('intrinsics')
    example['focal'], example['principal'] = intrinsics['focal'], intrinsics['principal']
    example['size'] = np.float32(example['image'].shape[0])
    if self.masks:
      example['mask'] = example['mask'][..., [features.PERSON, features.CHAIR]]
    return example


def _stack(examples: list[dict], keys, canvas: int) -> dict:
  """The batch of ``examples``' ``keys``, images and masks padded to ``canvas`` pixels."""
  out = {}
  for key in keys:
    values = [e[key] for e in examples]
    if key in ('image', 'mask', 'picture'):
      batch = np.zeros((len(values), canvas, canvas, values[0].shape[-1]), np.uint8)
      for row, value in zip(batch, values):
        if value.shape[0] > canvas or value.shape[1] > canvas:
          raise ValueError(f'a stored crop of {value.shape[:2]} pixels is larger than the '
                           f'{canvas} pixels of its source\'s first one; stored crops of a '
                           'source must share their size (the builder\'s image_size)')
        row[:value.shape[0], :value.shape[1]] = value
      out[key] = batch
    else:
      out[key] = np.stack(values)
  return out


def _first_size(source: sources_lib.Source) -> int:
  decoder = _Decoder(source, masks=False)
  return int(decoder(source.records[0])['size'])


class TrainStream:
  """Iterator of host-local training batches (numpy) mixing the configured sources, for
  ``augment.train_batch``.

  ``position`` maps each source to the number of its examples this process has consumed:
  saving it with a checkpoint and passing it back resumes the exact same stream.
  """

  def __init__(self, config: ml_collections.ConfigDict, position: dict[str, int] | None = None):
    data = config.data
    process_count = jax.process_count()
    shares = sources_lib.batch_shares(data.train, config.batch_size)
    for name, share in shares.items():
      if share % process_count:
        raise ValueError(f'data source {name!r} gets {share} examples per batch, not '
                         f'divisible by {process_count} processes; adjust its fraction or '
                         f'config.batch_size')
    self.local_shares = {n: s // process_count for n, s in shares.items()}
    self.sources = {n: sources_lib.open_source(n, data.train[n], data)
                    for n in self.local_shares}
    for name, source in self.sources.items():
      if len(source) == 0:
        raise ValueError(f'data source {name!r}: split {source.split!r} has no examples for '
                         f'process {jax.process_index()}')
    self.position = {n: 0 for n in self.local_shares}
    self.position.update(position or {})
    self.bone_table, self.mean_pose = sources_lib.training_pose_statistics(
        list(self.sources.values()), data.pose_statistics_examples)
    self.augment = data.augment
    self._pictures = self._background_sources(data.augment)
    masks = data.augment.background > 0
    self._streams = []
    for source_id, name in enumerate(sorted(self.local_shares)):
      key = (config.seed, source_id, jax.process_index())
      stream_key = int(np.random.SeedSequence(key).generate_state(1, np.uint64)[0])
      source = self.sources[name]
      self._streams.append((name, source, _Decoder(source, masks), stream_key,
                            sources_lib.EpochPermutations(len(source), key)))
    self.canvas = max(_first_size(s) for s in self.sources.values())
    if self._pictures:
      self.picture_canvas = max(_first_size(s) for s, _ in self._pictures)
    self._pool = concurrent.futures.ThreadPoolExecutor(max(1, data.num_parallel_calls))
    weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
    self._ahead = max(1, data.prefetch)
    self._pending = collections.deque()
    self._next_position = dict(self.position)

  def _background_sources(self, augment) -> list:
    """(source, decoder) of the training sources named in ``augment.background_sources``,
    whose crops give the background of half the composited examples."""
    names = tuple(augment.background_sources)
    if not names:
      return []
    if augment.background <= 0:
      raise ValueError(f'config.data.augment.background_sources={names} but '
                       'config.data.augment.background is 0; set its probability > 0 or '
                       'leave background_sources empty')
    unknown = sorted(set(names) - set(self.sources))
    if unknown:
      raise ValueError(f'config.data.augment.background_sources names {unknown}, not '
                       f'training sources of this batch; expected some of '
                       f'{sorted(self.sources)}')
    return [(self.sources[n], _Decoder(self.sources[n], masks=False)) for n in names]

  def _picture(self, k: int) -> np.ndarray:
    for source, decoder in self._pictures:
      if k < len(source):
        return decoder(source.records[int(k)])['image']
      k -= len(source)
    raise IndexError(k)

  def _read(self, decoder, source, record: int, background: bool, picture: int) -> dict:
    example = decoder(source.records[int(record)])
    if self.augment.background > 0:
      if not example['has_mask']:
        example['mask'] = np.zeros((1, 1, 2), np.uint8)
      example['background'] = np.bool_(background and example['has_mask'])
      if self._pictures:
        use = example['background'] and picture >= 0
        example['use_picture'] = np.bool_(use)
        example['picture'] = self._picture(picture) if use else np.zeros((1, 1, 3), np.uint8)
        example['picture_size'] = np.float32(example['picture'].shape[0])
    return example

  def _submit(self) -> None:
    """Starts decoding the batch at ``_next_position``."""
    parts = []
    total_pictures = sum(len(s) for s, _ in self._pictures)
    for name, source, decoder, stream_key, record_of in self._streams:
      start, share = self._next_position[name], self.local_shares[name]
      indices = np.arange(start, start + share, dtype=np.int64)
      background = _unit(stream_key, indices, _REPLACE) < self.augment.background
      picture = np.where(_unit(stream_key, indices, _PICTURE) < 0.5,
                         (_unit(stream_key, indices, _PICTURE_RECORD) * max(total_pictures, 1)
                          ).astype(np.int64), -1)
      futures = [self._pool.submit(self._read, decoder, source, r, b, p)
                 for r, b, p in zip(record_of(indices), background, picture)]
      parts.append((stream_key, indices, futures))
      self._next_position[name] = start + share
    self._pending.append(parts)

  def __iter__(self):
    return self

  def __next__(self) -> dict:
    while len(self._pending) < self._ahead:
      self._submit()
    parts = self._pending.popleft()
    self._submit()
    examples, keys, picks = [], [], []
    for stream_key, indices, futures in parts:
      examples += [f.result() for f in futures]
      keys.append(example_keys(stream_key, indices))
      picks.append(_unit(stream_key, indices, _REFERENCE))
    fields = ('image', 'size', 'focal', 'principal') + _LABELS
    batch = _stack(examples, fields, self.canvas)
    if self.augment.background > 0:
      batch.update(_stack(examples, ('mask', 'background'), self.canvas))
      if self._pictures:
        batch.update(_stack(examples, ('picture', 'picture_size', 'use_picture'),
                            self.picture_canvas))
    batch['key'] = np.concatenate(keys)
    num_subjects = len(self.bone_table)
    if num_subjects:
      pick = (np.concatenate(picks) * num_subjects).astype(np.int64)
      batch['ref_bone_lengths'] = self.bone_table[pick]
    else:
      batch['ref_bone_lengths'] = np.zeros((len(examples), skeleton.NUM_BONES), np.float32)
    batch['has_ref_bones'] = np.full(len(examples), num_subjects > 0)
    for name, share in self.local_shares.items():
      self.position[name] += share
    return batch


def eval_batches(name: str, source_config, config: ml_collections.ConfigDict,
                 local_batch_size: int, padded_size: int | None = None
                 ) -> Iterator[tuple[dict, dict]]:
  """(arrays, metadata) host-local batches of an evaluation split, in order, for
  ``augment.eval_batch``.

  Each batch holds up to ``local_batch_size`` examples padded to ``padded_size`` (default:
  the same; a multiple of the local device count lets any batch size be sharded) with
  copies of the first example and ``mask`` False. Every process yields the same number of
  batches, so each example counts exactly once whatever the batch size and the number of
  devices and processes.
  """
  padded_size = padded_size or local_batch_size
  source = sources_lib.open_source(name, source_config, config.data, source_config.max_examples)
  if len(source) == 0:
    raise ValueError(f'evaluation source {name!r} has no examples for process '
                     f'{jax.process_index()}')
  num_batches = math.ceil(math.ceil(source.num_global / jax.process_count())
                          / local_batch_size)
  decoder = _Decoder(source, masks=False, meta=True)
  canvas = _first_size(source)
  fields = ('image', 'size', 'focal', 'principal') + _LABELS + META_KEYS
  with concurrent.futures.ThreadPoolExecutor(max(1, config.data.num_parallel_calls)) as pool:
    read = lambda i: decoder(source.records[i])
    # The batches being decoded, a few ahead of the one yielded (not the whole split).
    pending = collections.deque()
    starts = iter(range(0, num_batches * local_batch_size, local_batch_size))
    template = None
    for _ in range(num_batches):
      while len(pending) < max(2, config.data.prefetch):
        start = next(starts, None)
        if start is None:
          break
        pending.append([pool.submit(read, i)
                        for i in range(start, min(start + local_batch_size, len(source)))])
      chunk = [f.result() for f in pending.popleft()]
      if template is None:
        template = chunk[0]
      n = len(chunk)
      batch = _stack(chunk + [template] * (padded_size - n), fields, canvas)
      batch['mask'] = np.arange(padded_size) < n
      meta = {k: batch.pop(k) for k in META_KEYS}
      meta = {k: np.char.decode(v.astype(bytes)) if v.dtype.kind in 'SO' else v
              for k, v in meta.items()}
      yield batch, meta
