"""Readers for the raw files of the 3D pose datasets (Human3.6M, MPI-INF-3DHP), shared by
their TFDS builders; ``Video`` also reads the videos prediction runs on.

Files are read through ``etils.epath`` (the TFDS builder tests forbid ``open`` and
``os.path`` in builder modules); only OpenCV and cdflib, which need a path, get one. Every
error names the file and what was expected of it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Callable, Iterator

from absl import logging
import cdflib
import cv2
import h5py
from etils import epath
import numpy as np
from PIL import Image
import scipy.io

from jaxpose import skeleton
from jaxpose.data import crops
from jaxpose.data import features

# grab() fails once per frame it cannot decode and goes on with the next frame on the next
# call; this many failures in a row are taken as the end of the stream.
_MAX_FAILED_GRABS = 16


@dataclasses.dataclass(frozen=True)
class Intrinsics:
  """Pinhole intrinsics of a full frame, pixels."""
  focal: np.ndarray  # (2,) fx, fy.
  principal: np.ndarray  # (2,) cx, cy.


class Video:
  """A video decoded front to back (seeking in long H.264 streams is slow and can land
  on the wrong frame), for the dataset builders and for prediction.

  Use as a context manager. ``fps``, ``frame_count``, ``width`` and ``height`` are what the
  container says (``fps`` 0 where it gives none). While ``frames`` runs, ``time`` is the time
  stamp (s) of the frame it yielded last (NaN where the container gives none), ``length``
  one more than the index of the last frame seen (the number of frames the video is known
  to have), and ``skipped`` the frames left out as undecodable.
  """

  def __init__(self, path):
    path = epath.Path(path)
    self.path = path
    if not path.is_file():
      raise FileNotFoundError(f'video {path} does not exist')
    self._capture = cv2.VideoCapture(os.fspath(path))
    if not self._capture.isOpened():
      raise ValueError(f'cannot read video {path}: OpenCV finds no decodable video stream in '
                       'it; expected a video file that FFmpeg decodes')
    self.fps = float(self._capture.get(cv2.CAP_PROP_FPS))
    self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
    self.width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
    self.height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    self.length = self.skipped = 0
    self.time = float('nan')

  def __enter__(self) -> Video:
    return self

  def __exit__(self, *unused_exc_info) -> None:
    self.close()

  def close(self) -> None:
    self._capture.release()

  def frames(self, wanted: Callable[[int], bool] = lambda index: True,
             stop: int | None = None,
             undecodable: str = 'none') -> Iterator[tuple[int, np.ndarray | None]]:
    """Yields ``(index, frame)`` for each frame (before ``stop``) with ``wanted(index)``.

    ``frame`` is (H, W, 3) uint8 RGB. A frame that cannot be decoded makes ``grab`` fail
    and the next call go on with the frame after it, so the index of each frame comes from
    its timestamp: a lost frame leaves a gap instead of moving every later frame onto the
    labels of the one before it. ``undecodable`` says what becomes of such a frame: 'none'
    yields None in its place (labels by frame index stay aligned), 'skip' leaves it out and
    counts it in ``skipped``. Frames lost at the very end cannot be told from the end of the
    video.
    """
    if undecodable not in ('none', 'skip'):
      raise ValueError(f'undecodable={undecodable!r}: expected \'none\' or \'skip\'')

    def lost(index):
      if undecodable == 'none':
        yield index, None
      else:
        self.skipped += 1

    last, failed = -1, 0
    while failed < _MAX_FAILED_GRABS:
      if not self._capture.grab():
        failed += 1
        continue
      failed = 0
      index = self._index(last)
      for missing in range(last + 1, index if stop is None else min(index, stop)):
        if wanted(missing):
          yield from lost(missing)
      last = index
      self.length = index + 1
      if stop is not None and index >= stop:
        return
      if wanted(index):
        self.time = self._capture.get(cv2.CAP_PROP_POS_MSEC) / 1000
        ok, bgr = self._capture.retrieve()
        if ok and bgr is not None:
          yield index, np.ascontiguousarray(bgr[..., ::-1])
        else:
          yield from lost(index)

  def _index(self, last: int) -> int:
    if self.fps > 0:
      index = round(self._capture.get(cv2.CAP_PROP_POS_MSEC) * self.fps / 1000.0)
      if index > last:
        return index
    # No usable timestamp: count frames instead.
    return last + 1


def decode_image(data: bytes) -> np.ndarray | None:
  """(H, W, 3) uint8 RGB pixels of an encoded image, or None when it cannot be decoded."""
  try:
    with Image.open(io.BytesIO(data)) as image:
      return np.asarray(image.convert('RGB'))
  except OSError:  # Unknown format or truncated data.
    return None


def read_image(path: epath.Path, what: str) -> np.ndarray | None:
  """(H, W, 3) uint8 RGB pixels of the image file ``path``, or None (logged) when it cannot
  be decoded; a missing file raises ``require``'s error naming ``what`` it should be."""
  require(path, what)
  image = decode_image(path.read_bytes())
  if image is None:
    logging.warning('%s: cannot decode; skipped.', path)
  return image


def require(path: epath.Path, what: str) -> None:
  """Raises FileNotFoundError naming ``path`` and ``what`` it should have been."""
  if not path.exists():
    raise FileNotFoundError(f'{path} not found: expected {what}')


def check_shape(array: np.ndarray, expected: tuple, path: epath.Path, what: str) -> None:
  """``expected`` may hold None for a free axis."""
  if len(array.shape) != len(expected) or any(
      e is not None and s != e for s, e in zip(array.shape, expected)):
    shown = ', '.join('N' if e is None else str(e) for e in expected)
    shown += ',' if len(expected) == 1 else ''
    raise ValueError(f'{path}: {what} has shape {array.shape}, expected ({shown})')


# --- Human3.6M ------------------------------------------------------------------------

def read_h36m_poses(path: epath.Path) -> np.ndarray:
  """(N, 32, 3) camera-frame joints in mm from a ``D3_Positions_mono`` CDF file.

  ``Pose`` is stored as one record of (N, 96); cdflib returns it as (1, N, 96).
  """
  require(path, 'the D3_Positions_mono CDF file of the video of the same name')
  try:
    pose = np.asarray(cdflib.CDF(os.fspath(path))['Pose'], np.float64)
  except (OSError, ValueError) as e:  # Not a CDF file; no variable Pose.
    raise ValueError(f'{path}: cannot read variable Pose ({e!r}); expected a CDF file '
                     'with Pose of (1, N, 96)') from e
  if pose.ndim == 3 and pose.shape[0] == 1:
    pose = pose[0]
  check_shape(pose, (None, 96), path, 'Pose')
  return pose.reshape(-1, 32, 3)


def read_h36m_cameras(path: epath.Path) -> dict[str, Intrinsics]:
  """Intrinsics by ``<subject>_<camera id>`` from a ``cameras.json`` (``f`` and ``c``,
  each (2, 1) pixels; the other calibration entries are not needed)."""
  require(path, 'cameras.json with the Human3.6M camera calibration')
  try:
    table = json.loads(path.read_text())
    return {key: Intrinsics(focal=_vector(entry['f'], 2), principal=_vector(entry['c'], 2))
            for key, entry in table.items()}
  except (ValueError, KeyError, TypeError, AttributeError) as e:
    raise ValueError(f'{path}: {e!r}; expected a JSON object keyed <subject>_<camera id> '
                     '(e.g. S1_54138969) of entries with f and c, each (2, 1) pixels'
                     ) from e


def _vector(values, size: int) -> np.ndarray:
  vector = np.asarray(values, np.float64).reshape(-1)
  if vector.shape != (size,):
    raise ValueError(f'got {np.shape(values)} values where {size} were expected')
  return vector


# --- MPI-INF-3DHP ---------------------------------------------------------------------

def load_mat_v5(path: epath.Path, what: str, **options) -> dict:
  """The variables of a MATLAB v5 .mat file (cells come back as object arrays);
  ``options`` go to ``scipy.io.loadmat``."""
  require(path, what)
  with path.open('rb') as f:
    try:
      return scipy.io.loadmat(f, **options)
    # What a truncated or foreign file raises, depending on where it breaks off.
    except (ValueError, TypeError, OSError, IndexError, scipy.io.matlab.MatReadError) as e:
      raise ValueError(f'{path}: not a readable MATLAB v5 file ({e!r}); expected {what}'
                       ) from e


def load_mat_v73(path: epath.Path, names: tuple[str, ...], what: str) -> dict:
  """The named variables of a MATLAB v7.3 .mat file (HDF5), axes reversed as h5py reads
  them (a MATLAB 3×17×1×N array comes back as (N, 1, 17, 3))."""
  require(path, what)
  with path.open('rb') as f:
    try:
      h5 = h5py.File(f, 'r')
    except OSError as e:
      raise ValueError(f'{path}: not a readable MATLAB v7.3 (HDF5) file ({e}); '
                       f'expected {what}') from e
    with h5:
      missing = [n for n in names if n not in h5]
      if missing:
        raise ValueError(f'{path}: no variable {", ".join(missing)}; expected {what} '
                         f'with {", ".join(names)}')
      return {n: np.asarray(h5[n]) for n in names}


def read_3dhp_calibration(path: epath.Path) -> dict[int, Intrinsics]:
  """Intrinsics by camera number from a 3DHP training ``camera.calibration``.

  A header line, then per camera the lines ``name``, ``sensor``, ``size``, ``animated``,
  ``intrinsic`` (4×4 row-major: fx 0 cx 0 / 0 fy cy 0 / ...), ``extrinsic``, ``radial``.
  """
  require(path, 'the camera.calibration of the sequence')
  entries: dict[int, dict[str, list[str]]] = {}
  camera = None
  for number, line in enumerate(path.read_text().splitlines()[1:], start=2):
    fields = line.split()
    if not fields:
      continue
    if fields[0] == 'name':
      try:
        camera = int(fields[1])
      except (IndexError, ValueError) as e:
        raise ValueError(f'{path}:{number}: {line.strip()!r}; expected "name <camera '
                         'number>"') from e
      entries[camera] = {}
    elif camera is None:
      raise ValueError(f'{path}:{number}: {fields[0]!r} before the first "name" line; '
                       'expected a header line, then 7 lines per camera starting with name')
    else:
      entries[camera][fields[0]] = fields[1:]
  cameras = {}
  for camera, entry in entries.items():
    try:
      matrix = np.array(entry['intrinsic'], np.float64).reshape(4, 4)
    except (KeyError, ValueError) as e:
      raise ValueError(f'{path}: camera {camera} has no intrinsic line of 16 numbers '
                       f'({e!r}); expected "intrinsic fx 0 cx 0 0 fy cy 0 0 0 1 0 0 0 0 1"'
                       ) from e
    cameras[camera] = Intrinsics(focal=matrix[[0, 1], [0, 1]],
                                 principal=matrix[[0, 1], [2, 2]])
  if not cameras:
    raise ValueError(f'{path}: no camera; expected 7 lines per camera after the header')
  return cameras


@dataclasses.dataclass(frozen=True)
class TcCalibration:
  """A "tc camera calibration v0.3" file of the 3DHP test set (one camera, mm)."""
  sensor_mm: np.ndarray  # (2,) sensor width, height.
  focal_mm: float
  center_offset_mm: np.ndarray  # (2,) principal point offset, + moves right and down.

  def intrinsics(self, width: int, height: int) -> Intrinsics:
    """In pixels of a (width, height) image: the sensor spans the image.

    ``pixelAspect`` is not used: both cameras' sensors have the images' aspect ratio,
    and whether the factor is fy/fx or its inverse is not documented.
    """
    pixels_per_mm = np.array([width, height], np.float64) / self.sensor_mm
    return Intrinsics(
        focal=self.focal_mm * pixels_per_mm,
        principal=np.array([width, height]) / 2.0 + self.center_offset_mm * pixels_per_mm)


def read_tc_calibration(path: epath.Path) -> TcCalibration:
  """Parses the first camera of a test-set ``.calib`` file (each holds one)."""
  require(path, 'the test set camera calibration (test_util/camera_calibration)')
  values: dict[str, list[float]] = {}
  for line in path.read_text().splitlines():
    fields = line.split('#', 1)[0].split()
    if fields and fields[0] in ('sensorSize', 'focalLength', 'centerOffset'):
      try:
        values.setdefault(fields[0], [float(v) for v in fields[1:]])
      except ValueError as e:
        raise ValueError(f'{path}: {line.strip()!r} is not numeric') from e
  expected = {'sensorSize': 2, 'focalLength': 1, 'centerOffset': 2}
  for key, size in expected.items():
    if len(values.get(key, ())) != size:
      raise ValueError(f'{path}: {key} has {values.get(key)}; expected {size} number(s) '
                       '(a "tc camera calibration v0.3" file)')
  return TcCalibration(sensor_mm=np.array(values['sensorSize']),
                       focal_mm=values['focalLength'][0],
                       center_offset_mm=np.array(values['centerOffset']))


# --- Examples --------------------------------------------------------------------------

def example_3d(image: np.ndarray, joints_2d: np.ndarray, valid: np.ndarray,
               joints_3d: np.ndarray, intrinsics: Intrinsics, image_size: int,
               mask: np.ndarray | None = None, **metadata) -> dict:
  """The example of one person with 3D labels (camera frame, mm) and known intrinsics,
  from the (H, W, 3) uint8 frame ``image``, its (17, 2) pixel labels and optionally its
  (H, W, 3) uint8 masks (channels as ``features.example_features`` describes)."""
  crop = crops.person_crop(image, joints_2d, valid, image_size,
                           intrinsics.focal, intrinsics.principal, mask)
  masks = (features.no_mask() if mask is None else
           dict(mask=crops.encode_png(crop['mask']), has_mask=True))
  return dict(
      features.empty_metadata(),
      **masks,
      image=crops.encode_jpeg(crop['image']),
      joints_2d=crop['joints_2d'],
      joints_2d_valid=np.asarray(valid, bool),
      joints_3d=np.asarray(joints_3d, np.float32).reshape(skeleton.NUM_JOINTS, 3),
      has_3d=True,
      intrinsics=dict(focal=crop['focal'], principal=crop['principal']),
      has_intrinsics=True,
      **metadata,
  )


def example_2d(image: np.ndarray, joints_2d: np.ndarray, valid: np.ndarray, image_size: int,
               **metadata) -> dict:
  """The example of one person of an in-the-wild dataset with 2D labels only."""
  crop = crops.person_crop(image, joints_2d, valid, image_size)
  return dict(
      features.empty_metadata(),
      **features.no_mask(),
      image=crops.encode_jpeg(crop['image']),
      joints_2d=crop['joints_2d'],
      joints_2d_valid=np.asarray(valid, bool),
      joints_3d=np.zeros((skeleton.NUM_JOINTS, 3), np.float32),
      has_3d=False,
      intrinsics=dict(focal=crop['focal'], principal=crop['principal']),
      has_intrinsics=False,
      scene='wild',
      **metadata,
  )
