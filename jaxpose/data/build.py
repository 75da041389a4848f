"""Builds a jaxpose dataset offline, as array_record (what the input pipeline reads).

``python -m jaxpose.data.build --dataset=h36m --builder_config=preprocessed
--manual_dir=PATH [--data_dir=DIR]``

The same as ``tfds build datasets/<name> --file_format=array_record``, without the extra
packages the ``tfds`` command imports at start-up (apache-beam, mlcroissant).
"""

from __future__ import annotations

import os

from absl import app
from absl import flags

from jaxpose.data import tfds_io

_DATASET = flags.DEFINE_string('dataset', None, 'A folder name under datasets/.')
_CONFIG = flags.DEFINE_string('builder_config', None, "The builder's config (default: its first).")
_MANUAL_DIR = flags.DEFINE_string('manual_dir', None, 'Where the downloaded release lies.')
_DATA_DIR = flags.DEFINE_string('data_dir', '', "Where to write (default: TFDS's, "
                                 '$TFDS_DATA_DIR or else ~/tensorflow_datasets).')


def main(argv):
  del argv
  builder = tfds_io.get_builder(_DATASET.value, _DATA_DIR.value, _CONFIG.value)
  manual_dir = os.path.expanduser(_MANUAL_DIR.value) if _MANUAL_DIR.value else None
  tfds_io.ensure_built(builder, manual_dir)
  print(f'{builder.info.full_name} in {builder.data_dir}:')
  for name, split in builder.info.splits.items():
    print(f'  {name}: {split.num_examples} examples')


if __name__ == '__main__':
  flags.mark_flag_as_required('dataset')
  app.run(main)
