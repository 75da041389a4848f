"""synthetic_humans: rendered people with exact 2D and 3D labels, built with no download.

The examples come from ``jaxpose.data.synthetic`` (which documents the poses, cameras and
domains); this builder only stores them in the common example format
(``jaxpose.data.features``).
"""

from __future__ import annotations

from concurrent import futures
import dataclasses
import functools
import multiprocessing

import tensorflow_datasets as tfds

from jaxpose.data import crops
from jaxpose.data import features
from jaxpose.data import synthetic


@dataclasses.dataclass
class SyntheticHumansConfig(tfds.core.BuilderConfig):
  """How many examples each split gets, and their side in pixels."""
  train_size: int = 0       # studio_train and wild_train each
  validation_size: int = 0  # studio_val and wild_val each
  test_size: int = 0        # studio_test and wild_test each
  image_size: int = 192


class Builder(tfds.core.GeneratorBasedBuilder):
  """Synthetic people in a studio and in the wild."""

  VERSION = tfds.core.Version('1.2.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'The common format gains mask and has_mask.',
                   '1.2.0': 'Validation splits (the former test subjects); fresh test '
                            'subjects; a wild domain with its own activities, viewpoints, '
                            'truncation, occlusion and MPII/LSP-style labels.'}
  BUILDER_CONFIGS = [
      # Builds in about 1.5 minutes on one CPU core, 1 on two.
      SyntheticHumansConfig(name='default', description='The quickstart training set.',
                            train_size=6000, validation_size=600, test_size=600),
      SyntheticHumansConfig(name='smoke', description='A few examples for tests and CI.',
                            train_size=64, validation_size=32, test_size=32),
  ]

  def download_and_prepare(self, **kwargs) -> None:
    # Rendering holds the GIL, so examples are drawn in worker processes. They are spawned
    # (forking a process that has started JAX is unsafe) and each re-imports the entry
    # point's modules, seconds of work, so one pool serves all the splits. This process
    # encodes and writes an example in about a sixth of the time a worker takes to render
    # one: four workers leave it headroom and bound the memory they take.
    workers = min(multiprocessing.cpu_count(), 4)
    self._pool = futures.ProcessPoolExecutor(workers, multiprocessing.get_context('spawn'),
                                             initializer=synthetic.exit_with_parent)
    try:
      super().download_and_prepare(**kwargs)
    finally:
      # After an error or an interrupt, renders still queued are dropped, not awaited.
      self._pool.shutdown(cancel_futures=True)
      del self._pool

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(features=features.example_features())

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # nothing to download
    return {split: self._generate_examples(split) for split in synthetic.SPLITS}

  def _generate_examples(self, split: str):
    config = self.builder_config
    size = {'train': config.train_size, 'validation': config.validation_size,
            'test': config.test_size}[synthetic.SPLITS[split].role]
    render = functools.partial(synthetic.make_example, split, image_size=config.image_size)
    for index, example in enumerate(self._pool.map(render, range(size), chunksize=16)):
      # PIL's JPEG encoder is faster than the TensorFlow op TFDS would run per example.
      example['image'] = crops.encode_jpeg(example['image'])
      yield index, dict(example, **features.no_mask())
