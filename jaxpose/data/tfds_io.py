"""Finding, building and loading jaxpose's TFDS datasets, offline.

The builders live in the repository's top-level ``datasets/<name>/`` folders (the standard
TFDS layout, so ``tfds build datasets/<name>`` works). A wheel installs that folder as
``jaxpose/builders/`` (pyproject.toml); this module imports the builders from there, or from
the repository's ``datasets/`` where jaxpose runs from a checkout (an editable install).
"""

from __future__ import annotations

import pathlib

from array_record.python import array_record_module
from etils import epath
from google.protobuf import json_format
import tensorflow_datasets as tfds

_PACKAGE = pathlib.Path(__file__).resolve().parents[1]
# Where a wheel installs them, else (a source checkout, an editable install) the repository's.
DATASETS_DIR = next(d for d in (_PACKAGE / 'builders', _PACKAGE.parent / 'datasets')
                    if d.is_dir())


def builder_class(name: str) -> type[tfds.core.DatasetBuilder]:
  """Imports ``datasets/<name>/<name>_dataset_builder.py`` the way ``tfds build`` does
  (as the module ``<name>.<name>_dataset_builder`` with ``datasets/`` on the path), so the
  builder gets its folder's name, README and citation, and registers only once."""
  path = DATASETS_DIR / name / f'{name}_dataset_builder.py'
  if not path.exists():
    known = sorted(p.parent.name for p in DATASETS_DIR.glob('*/*_dataset_builder.py'))
    raise FileNotFoundError(f'no dataset builder {name!r}: expected {path}; known: {known}')
  with tfds.core.utils.add_sys_path(DATASETS_DIR):
    return tfds.core.community.builder_cls_from_module(f'{name}.{name}_dataset_builder')


def resolve_data_dir(data_dir: str) -> str:
  """``data_dir`` with a leading ``~`` expanded, any other path (relative, or on a
  bucket: ``gs://...``) as given; '' means TFDS's own default: ``$TFDS_DATA_DIR``, else
  ``~/tensorflow_datasets`` (read now, so that the variable set after import counts)."""
  if not data_dir:
    return tfds.core.constants.get_default_data_dir()
  return str(epath.Path(data_dir).expanduser())


def get_builder(name: str, data_dir: str,
                config: str | None = None) -> tfds.core.DatasetBuilder:
  """The builder of dataset ``name`` (optionally ``config``) storing under ``data_dir``
  (see ``resolve_data_dir``).

  jaxpose reads examples by index (a resumable, deterministic input stream), so datasets
  are stored as array_record; build them with ``tfds build --file_format=array_record``.
  """
  kwargs = dict(data_dir=resolve_data_dir(data_dir), file_format='array_record')
  if config:
    kwargs['config'] = config
  try:
    return builder_class(name)(**kwargs)
  except json_format.ParseError as e:
    # TFDS reads an existing build's dataset_info.json here and names no file if it is
    # damaged.
    where = epath.Path(kwargs['data_dir']) / name / (config or '')
    raise ValueError(f'dataset {name!r}: the dataset_info.json of its build under {where} is '
                     f'damaged ({e}); delete that build and build it again') from e


def ensure_built(builder: tfds.core.DatasetBuilder, manual_dir: str | None = None) -> None:
  """Builds the dataset if it is not prepared yet; an existing build must be readable
  (``check_readable``). TFDS writes into an ``incomplete.*`` folder beside the build's and
  renames it at the end: a build killed midway leaves only that folder, which no open and
  no later build reads (it can be deleted once no build runs)."""
  if builder.is_prepared():
    for split in builder.info.splits:
      check_readable(builder, split)
    return
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual_dir, try_download_gcs=False))
  except AssertionError as e:
    # TFDS asserts that the manual download is there: a user error, not a bug.
    if 'Manual directory' not in str(e):
      raise
    raise FileNotFoundError(f'dataset {builder.name!r}: {e}') from e


def check_readable(builder: tfds.core.DatasetBuilder, split: str) -> None:
  """Opens every array_record shard of ``split`` (a split name or slice) and reads its
  first record used, which reads the index at the shard's end: a truncated or overwritten
  shard fails here, named, instead of at some later read inside the input pipeline.

  Raises:
    ValueError: naming the shard, the dataset, the split, and how to rebuild it.
  """
  for shard in builder.info.splits[split].file_instructions:
    if not shard.take:
      continue
    try:
      reader = array_record_module.ArrayRecordReader(shard.filename)
      try:
        found = reader.num_records()
        if found != shard.examples_in_shard:
          raise ValueError(f'{found} records, expected {shard.examples_in_shard}')
        reader.read([shard.skip])
      finally:
        reader.close()
    except (RuntimeError, ValueError, OSError) as e:
      raise ValueError(
          f'{shard.filename}: unreadable shard of {builder.info.full_name}, split '
          f'{split!r} ({e}); the build in {builder.data_dir} is damaged (a truncated copy or '
          'disk?): delete that folder and build it again') from e
