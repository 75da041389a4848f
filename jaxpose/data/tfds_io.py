"""Finding, building and loading jaxpose's TFDS datasets, offline.

The builders live in the repository's top-level ``datasets/<name>/`` folders (the standard
TFDS layout, so ``tfds build datasets/<name>`` works); this module imports them by path so
that ``jaxpose`` code can build and load them without ``datasets`` on ``sys.path`` (and
without clashing with other packages of that name).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import tensorflow_datasets as tfds

DATASETS_DIR = pathlib.Path(__file__).resolve().parents[2] / 'datasets'


def builder_module(name: str):
  """Imports ``datasets/<name>/<name>_dataset_builder.py`` (registering its builder)."""
  module_name = f'jaxpose_datasets.{name}'
  if module_name in sys.modules:
    return sys.modules[module_name]
  path = DATASETS_DIR / name / f'{name}_dataset_builder.py'
  if not path.exists():
    known = sorted(p.name for p in DATASETS_DIR.iterdir() if p.is_dir()) if DATASETS_DIR.exists() else []
    raise FileNotFoundError(f'no dataset builder {name!r}: expected {path}; known: {known}')
  spec = importlib.util.spec_from_file_location(module_name, path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[module_name] = module
  spec.loader.exec_module(module)
  return module


def get_builder(name: str, data_dir: str,
                config: str | None = None) -> tfds.core.DatasetBuilder:
  """The builder of dataset ``name`` (optionally ``config``) storing under ``data_dir``.

  jaxpose reads examples by index (a resumable, deterministic input stream), so datasets
  are stored as array_record; build them with ``tfds build --file_format=array_record``.
  """
  module = builder_module(name)
  kwargs = dict(data_dir=data_dir, file_format='array_record')
  if config:
    kwargs['config'] = config
  return module.Builder(**kwargs)


def ensure_built(builder: tfds.core.DatasetBuilder, manual_dir: str | None = None) -> None:
  """Builds the dataset if it is not prepared yet (TFDS writes into a temporary folder and
  renames it at the end, so an interrupted build leaves nothing half-written behind)."""
  if builder.is_prepared():
    return
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False))
