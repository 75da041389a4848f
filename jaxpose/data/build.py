"""Builds a jaxpose dataset offline, as array_record (what the input pipeline reads).

``python -m jaxpose.data.build --dataset=h36m --builder_config=preprocessed
--manual_dir=PATH [--data_dir=DIR]``

The same as ``tfds build datasets/<name> --file_format=array_record``, without the extra
packages the ``tfds`` command imports at start-up (apache-beam, mlcroissant).
"""

from __future__ import annotations

import os

from absl import flags

from jaxpose import cli
from jaxpose.data import tfds_io


def main(argv):
  del argv
  fl = flags.FLAGS
  builder = tfds_io.get_builder(fl.dataset, fl.data_dir, fl.builder_config)
  manual_dir = os.path.expanduser(fl.manual_dir) if fl.manual_dir else None
  tfds_io.ensure_built(builder, manual_dir)
  print(f'{builder.info.full_name} in {builder.data_dir}:')
  for name, split in builder.info.splits.items():
    print(f'  {name}: {split.num_examples} examples')


def define_flags():
  flags.DEFINE_string('dataset', None, 'A folder name under datasets/.')
  flags.DEFINE_string('builder_config', None, "The builder's config (default: its first).")
  flags.DEFINE_string('manual_dir', None, 'Where the downloaded release lies.')
  flags.DEFINE_string('data_dir', '', "Where to write (default: TFDS's, $TFDS_DATA_DIR or "
                      'else ~/tensorflow_datasets).')


if __name__ == '__main__':
  cli.run(main, required=('dataset',), define_flags=define_flags)
