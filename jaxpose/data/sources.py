"""Training and evaluation data sources: TFDS splits read by index, this process's share
of each, the batch shares of the training sources, and the statistics of the training poses.

Every source is read by index from its array_record files (TFDS data sources, which decode
with numpy: no TensorFlow); example ``i`` of a source's stream is record ``perm_e[i mod N]``
with ``e = i div N`` and ``perm_e`` a permutation seeded by (seed, source, e)
(``EpochPermutations``).
"""

from __future__ import annotations

import dataclasses

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tensorflow_datasets as tfds
from absl import logging

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import tfds_io

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


class EpochPermutations:
  """``perm(e)[p]``: the record read at position p of epoch e, for arrays of positions.
  The permutations of the last few epochs are kept, so that a batch across an epoch's end
  computes each once."""

  KEEP = 2  # epochs

  def __init__(self, size: int, seed: tuple[int, ...]):
    self.size, self.seed = size, seed
    self._perms: dict[int, np.ndarray] = {}

  def permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._perms:
      self._perms[epoch] = np.random.default_rng((*self.seed, epoch)).permutation(self.size)
      while len(self._perms) > self.KEEP:
        del self._perms[min(self._perms)]
    return self._perms[epoch]

  def __call__(self, indices: np.ndarray) -> np.ndarray:
    epochs, positions = np.divmod(np.asarray(indices, np.int64), self.size)
    records = np.empty(len(positions), np.int64)
    for epoch in np.unique(epochs):
      at = epochs == epoch
      records[at] = self.permutation(int(epoch))[positions[at]]
    return records
