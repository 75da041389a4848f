"""The one path layer of every file jaxpose writes or reads in a workdir or output folder:
local paths, and URLs such as ``gs://bucket/run`` on a pod.

It is ``tf.io.gfile``, not ``etils.epath``: both reach gs:// (epath itself goes through
tf.io.gfile when TensorFlow is installed, as it is here, and CLU's metric writers use it
too), but only gfile also has TensorFlow's ``ram://`` file system, on which the tests run
the non-local code paths on any machine; epath rejects the scheme.

Orbax writes the checkpoints itself (through epath and TensorStore), which supports local
paths and gs:// only (``check_checkpoint_directory``).
"""

from __future__ import annotations

import io
import os


def _gfile():
  # Imported on first use: TensorFlow takes seconds to import, and a notebook that only
  # predicts in memory never needs it.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def __getattr__(name: str):
  """``fileio.gfile``: ``tf.io.gfile``, imported on first use."""
  if name == 'gfile':
    return _gfile()
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def is_local(path: str) -> bool:
  """Whether ``path`` is on this machine's file system (no ``scheme://``)."""
  return '://' not in str(path)


def absolute(path: str) -> str:
  """A local path made absolute (it is recorded and reopened from elsewhere); a URL as is."""
  return os.path.abspath(path) if is_local(path) else str(path)


def write_atomically(path: str, write, binary: bool = False) -> None:
  """Writes the whole of ``write(file)`` (a file object in memory) beside ``path``, then
  renames it onto ``path``: an interrupted call leaves the old file or the new one, never
  part of one. On an object store (gs://) the rename is a copy of the complete object,
  which appears at once (a single-object write is atomic there)."""
  buffer = io.BytesIO() if binary else io.StringIO()
  write(buffer)
  directory, name = os.path.split(path)
  temporary = os.path.join(directory, f'.tmp-{os.getpid()}-{name}')
  gfile = _gfile()
  try:
    with gfile.GFile(temporary, 'wb' if binary else 'w') as f:
      f.write(buffer.getvalue())
    gfile.rename(temporary, path, overwrite=True)
  finally:
    if gfile.exists(temporary):
      gfile.remove(temporary)


def read_text(path: str) -> str:
  with _gfile().GFile(path, 'r') as f:
    return f.read()


def check_checkpoint_directory(workdir: str, flag: str = '--workdir') -> None:
  """Raises, naming ``flag``, for a workdir where Orbax cannot keep checkpoints: its arrays
  go through TensorStore, which Orbax points at a local folder or at gs:// only."""
  if not is_local(workdir) and not str(workdir).startswith('gs://'):
    raise ValueError(f'{flag}={workdir}: checkpoints need a local folder or a gs:// URL '
                     '(Orbax writes them through TensorStore, which has no driver for '
                     f'{str(workdir).split("://")[0]}://)')
