"""The one path layer of every file jaxpose writes or reads in a workdir or output folder:
local paths, and URLs such as ``gs://bucket/run`` on a pod.

It is fsspec (gs:// through gcsfs), not ``tf.io.gfile``: a run on built data never imports
TensorFlow, which the accelerator images JAX users run do not carry. ``fileio.gfile`` keeps
gfile's names for what jaxpose uses of it. ``ram://`` is fsspec's in-memory file system
under TensorFlow's name for it: the tests run the non-local code paths on it.

Orbax writes the checkpoints itself (through epath and TensorStore), which supports local
paths and gs:// only (``check_checkpoint_directory``).
"""

from __future__ import annotations

import io
import os
import posixpath
import types

import fsspec
from fsspec.implementations import memory


class _RamFileSystem(memory.MemoryFileSystem):
  protocol = ('ram',)

  @classmethod
  def _strip_protocol(cls, path):
    return super()._strip_protocol(str(path).removeprefix('ram://'))


fsspec.register_implementation('ram', _RamFileSystem, clobber=True)


def _fs(path: str):
  """The file system of ``path`` and ``path`` as that file system names it."""
  return fsspec.core.url_to_fs(str(path))


def _exists(path: str) -> bool:
  fs, p = _fs(path)
  return fs.exists(p)


def _isdir(path: str) -> bool:
  fs, p = _fs(path)
  return fs.isdir(p)


def _makedirs(path: str) -> None:
  fs, p = _fs(path)
  fs.makedirs(p, exist_ok=True)


def _listdir(path: str) -> list[str]:
  """Names of the entries of the folder ``path`` (as ``gfile.listdir``)."""
  fs, p = _fs(path)
  if not fs.isdir(p):
    raise FileNotFoundError(f'{path}: no such folder')
  return sorted(posixpath.basename(e.rstrip('/')) for e in fs.ls(p, detail=False))


def _glob(pattern: str) -> list[str]:
  """Paths matching ``pattern``, with its scheme (as ``gfile.glob``)."""
  fs, p = _fs(pattern)
  scheme = '' if is_local(pattern) else str(pattern).split('://')[0] + '://'
  return sorted(scheme + m for m in fs.glob(p))


def _remove(path: str) -> None:
  fs, p = _fs(path)
  fs.rm_file(p)


def _rename(source: str, target: str, overwrite: bool = False) -> None:
  if not overwrite and _exists(target):
    raise FileExistsError(f'{target} exists')
  if is_local(source):
    os.replace(source, target)  # atomic on one file system
    return
  fs, p = _fs(source)
  fs.mv(p, _fs(target)[1])


def _open(path: str, mode: str = 'r'):
  """A file object of ``path`` (as ``gfile.GFile``)."""
  return fsspec.open(str(path), mode).open()


gfile = types.SimpleNamespace(GFile=_open, exists=_exists, isdir=_isdir, makedirs=_makedirs,
                              listdir=_listdir, glob=_glob, remove=_remove, rename=_rename)


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
  try:
    with gfile.GFile(temporary, 'wb' if binary else 'w') as f:
      f.write(buffer.getvalue())
    gfile.rename(temporary, path, overwrite=True)
  finally:
    if gfile.exists(temporary):
      gfile.remove(temporary)


def read_text(path: str) -> str:
  with gfile.GFile(path, 'r') as f:
    return f.read()


def check_checkpoint_directory(workdir: str, flag: str = '--workdir') -> None:
  """Raises, naming ``flag``, for a workdir where Orbax cannot keep checkpoints: its arrays
  go through TensorStore, which Orbax points at a local folder or at gs:// only."""
  if not is_local(workdir) and not str(workdir).startswith('gs://'):
    raise ValueError(f'{flag}={workdir}: checkpoints need a local folder or a gs:// URL '
                     '(Orbax writes them through TensorStore, which has no driver for '
                     f'{str(workdir).split("://")[0]}://)')
