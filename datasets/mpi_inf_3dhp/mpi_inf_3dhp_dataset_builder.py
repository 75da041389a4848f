"""MPI-INF-3DHP as person crops in jaxpose's common example format.

Training split: the 8 subjects' studio sequences (videos of up to 14 cameras); test split:
the official test set TS1-TS6, valid frames only, with the protocol's ground truth. Every
example has 3D labels (camera frame, mm) and the intrinsics of its crop. See README.md for
the conventions and the build commands.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from typing import Iterator

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import protocols
from jaxpose import skeleton
from jaxpose.data import features
from jaxpose.data import readers

TRAIN_SEQUENCES = tuple((f'S{s}', f'Seq{q}') for s in range(1, 9) for q in (1, 2))
TEST_SEQUENCES = ('TS1', 'TS2', 'TS3', 'TS4', 'TS5', 'TS6')
NUM_CAMERAS = 14
# The cameras most works train on: `vnect_cameras` of the release's mpii_get_config.m.
VNECT_CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
# Names as the evaluation protocol groups by them; activity_annotation 1..7 in this order.
ACTIVITIES = protocols.MPI_INF_3DHP_ACTIVITIES
TEST_SCENES = protocols.MPI_INF_3DHP_SEQUENCE_SCENE
TEST_CALIBRATIONS = {'TS1': 'ts1-4cameras.calib', 'TS2': 'ts1-4cameras.calib',
                     'TS3': 'ts1-4cameras.calib', 'TS4': 'ts1-4cameras.calib',
                     'TS5': 'ts5-6cameras.calib', 'TS6': 'ts5-6cameras.calib'}
TEST_DIR = 'mpi_inf_3dhp_test_set'
CALIBRATION_DIR = f'{TEST_DIR}/test_util/camera_calibration'
# 3DHP's 17 joints are H36M-17's, in another order: every one is labelled.
ALL_VALID = np.ones(skeleton.NUM_JOINTS, bool)
_TEST_VARIABLES = ('annot2', 'annot3', 'univ_annot3', 'valid_frame', 'activity_annotation')
# Mask videos beside imageSequence/, one per camera. Their red channel (the release's
# README): FGmasks the green-screen key, bright on the person; ChairMasks the chair, dark
# on it. The thresholds are those of PosePile's MuCo-3DHP preparation, which reads the
# same videos (video compression leaves neither value exactly 0 or 255).
MASK_FOLDERS = ('FGmasks', 'ChairMasks')
_PERSON_MIN_RED = 100
_CHAIR_MAX_RED = 32


@dataclasses.dataclass
class MpiInf3dhpConfig(tfds.core.BuilderConfig):
  """Which training cameras and frames to keep (the test split is fixed by the protocol).

  Attributes:
    cameras: training camera numbers (0..13) whose videos are read.
    train_every: keep the training frames whose index is a multiple of it.
    image_size: side of the stored person crop in pixels (the tight box is 1/1.5 of it).
    masks: store the person and chair masks of the training frames (for background
      augmentation; needs the FGmasks and ChairMasks videos).
  """
  cameras: tuple[int, ...] = VNECT_CAMERAS
  train_every: int = 10
  image_size: int = 384
  masks: bool = True


@dataclasses.dataclass(frozen=True)
class _TrainSequence:
  subject: str
  sequence: str
  folder: epath.Path
  calibration: dict[int, readers.Intrinsics]


@dataclasses.dataclass(frozen=True)
class _TestSequence:
  """The valid frames of a test sequence, joints in H36M-17 order."""
  name: str
  folder: epath.Path
  calibration: readers.TcCalibration
  frames: np.ndarray  # (V,) 0-based indices of the valid frames.
  activities: np.ndarray  # (V,) 1..7.
  joints_2d: np.ndarray  # (V, 17, 2) annot2, pixels.
  annot3: np.ndarray  # (V, 17, 3) camera frame, mm.
  univ_annot3: np.ndarray  # (V, 17, 3) the protocol's ground truth, mm.


class Builder(tfds.core.GeneratorBasedBuilder):
  """MPI-INF-3DHP, one example per kept frame of each camera."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'The common format gains mask and has_mask.'}
  BUILDER_CONFIGS = [
      MpiInf3dhpConfig(
          name='default',
          description=('Training cameras 0 1 2 4 5 6 7 8 (VNect\'s set), every 10th '
                       'training frame with its person and chair masks; every valid test '
                       'frame.')),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Request the dataset at https://vcai.mpi-inf.mpg.de/3dhp-dataset/ and put into the manual
  directory (default <data_dir>/downloads/manual/, or pass --manual_dir):

  * train split: the training set as the release's get_dataset.sh fetches it (set
    destination to the manual directory and download_masks=1 in its conf.ig; the default
    config needs the videos and masks of cameras 0 1 2 4 5 6 7 8), giving for S1..S8,
    Seq1 and Seq2:
      <manual_dir>/S1/Seq1/annot.mat
      <manual_dir>/S1/Seq1/camera.calibration
      <manual_dir>/S1/Seq1/imageSequence/video_0.avi   (one per camera used)
      <manual_dir>/S1/Seq1/FGmasks/video_0.avi         (the same cameras)
      <manual_dir>/S1/Seq1/ChairMasks/video_0.avi

  * test split: the test set (mpi_inf_3dhp_test_set.zip, fetched by get_testset.sh),
    unzipped into the manual directory, giving
      <manual_dir>/mpi_inf_3dhp_test_set/TS1/annot_data.mat
      <manual_dir>/mpi_inf_3dhp_test_set/TS1/imageSequence/img_000001.jpg ...
      <manual_dir>/mpi_inf_3dhp_test_set/test_util/camera_calibration/ts1-4cameras.calib
      <manual_dir>/mpi_inf_3dhp_test_set/test_util/camera_calibration/ts5-6cameras.calib
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features.example_features(),
        homepage='https://vcai.mpi-inf.mpg.de/3dhp-dataset/',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    cameras = self.builder_config.cameras
    if not cameras or any(not 0 <= c < NUM_CAMERAS for c in cameras):
      raise ValueError(f'config {self.builder_config.name!r}: cameras {cameras}; expected '
                       f'camera numbers in 0..{NUM_CAMERAS - 1}')
    # Every file is checked, and every small one read, before the first frame is decoded,
    # so that an incomplete download fails at once rather than hours into the build.
    train = []
    for subject, sequence in TRAIN_SEQUENCES:
      folder = manual_dir / subject / sequence
      what = f'from the {subject} {sequence} training data (get_dataset.sh)'
      readers.require(folder / 'annot.mat', f'the annotations {what}')
      calibration = readers.read_3dhp_calibration(folder / 'camera.calibration')
      for camera in cameras:
        if camera not in calibration:
          raise ValueError(f'{folder / "camera.calibration"}: no camera {camera}; expected '
                           f'one entry per camera 0..{NUM_CAMERAS - 1}')
        readers.require(folder / 'imageSequence' / f'video_{camera}.avi',
                        f'the video of camera {camera} {what}')
        for masks in MASK_FOLDERS if self.builder_config.masks else ():
          readers.require(folder / masks / f'video_{camera}.avi',
                          f'the {masks} video of camera {camera} {what} (download_masks=1 '
                          'in its conf.ig)')
      train.append(_TrainSequence(subject, sequence, folder, calibration))
    test = [_read_test_sequence(manual_dir, name) for name in TEST_SEQUENCES]
    return {
        'train': self._generate_examples('train', train),
        'test': self._generate_examples('test', test),
    }

  def _generate_examples(self, split: str,
                         sequences: list[_TrainSequence] | list[_TestSequence]):
    counts = collections.Counter()
    for sequence in sequences:
      if split == 'train':
        yield from self._train_examples(sequence, counts)
      else:
        yield from self._test_examples(sequence, counts)
    logging.info('mpi_inf_3dhp %s split: %s.', split,
                 ', '.join(f'{n} {what}' for what, n in sorted(counts.items())))

  def _train_examples(self, seq: _TrainSequence, counts: collections.Counter):
    annot_path = seq.folder / 'annot.mat'
    annot = readers.load_mat_v5(annot_path, 'the annotations of a training sequence '
                                '(cells annot2, annot3 of 14 cameras)')
    every = self.builder_config.train_every
    for camera in self.builder_config.cameras:
      joints_2d = _to_h36m(_cell(annot, 'annot2', camera, 2, annot_path))
      joints_3d = _to_h36m(_cell(annot, 'annot3', camera, 3, annot_path))
      path = seq.folder / 'imageSequence' / f'video_{camera}.avi'
      wanted = lambda i: i % every == 0
      with contextlib.ExitStack() as stack:
        video = stack.enter_context(readers.Video(path))
        masks = [_FrameAt(stack.enter_context(readers.Video(seq.folder / m / path.name)),
                          wanted, len(joints_3d))
                 for m in (MASK_FOLDERS if self.builder_config.masks else ())]
        for index, frame in video.frames(wanted, len(joints_3d)):
          if frame is None:
            logging.warning('%s: frame %d cannot be decoded; skipped.', path, index)
            counts['undecodable frames skipped'] += 1
            continue
          mask = _mask(*[m.at(index, frame.shape) for m in masks]) if masks else None
          if masks and mask is None:
            logging.warning('%s: no mask for frame %d; stored without.', path, index)
            counts['frames without masks'] += 1
          counts['examples'] += 1
          yield f'{seq.subject}/{seq.sequence}/{camera}/{index}', readers.example_3d(
              frame, joints_2d[index], ALL_VALID, joints_3d[index], seq.calibration[camera],
              self.builder_config.image_size, mask=mask, subject=seq.subject,
              sequence=seq.sequence, scene='GS', camera=str(camera), frame=index)
      # The annotations usually run past the end of the video: only the first F rows,
      # F = the number of video frames, belong to frames.
      if video.length < len(joints_3d):
        counts['videos shorter than their annotations'] += 1
      elif video.length > len(joints_3d):
        logging.info('%s: annot.mat has %d rows, the video goes on; used %d.', path,
                     len(joints_3d), len(joints_3d))
        counts['videos longer than their annotations'] += 1

  def _test_examples(self, seq: _TestSequence, counts: collections.Counter):
    checked = False
    for k, index in enumerate(seq.frames):
      path = seq.folder / 'imageSequence' / f'img_{index + 1:06d}.jpg'  # Numbered from 1.
      image = readers.decode_image(path.read_bytes())
      if image is None:
        logging.warning('%s: cannot be decoded; skipped.', path)
        counts['undecodable frames skipped'] += 1
        continue
      intrinsics = seq.calibration.intrinsics(image.shape[1], image.shape[0])
      if not checked:
        # A check of how the calibration is read that only the real data can make.
        residual = np.linalg.norm(
            geometry.project(seq.annot3, intrinsics.focal, intrinsics.principal)
            - seq.joints_2d, axis=-1)
        logging.info('%s: the calibration projects annot3 onto annot2 within %.1f px '
                     '(median over the valid frames).', seq.name, np.median(residual))
        checked = True
      counts['examples'] += 1
      yield f'{seq.name}/{index}', readers.example_3d(
          image, seq.joints_2d[k], ALL_VALID, seq.univ_annot3[k], intrinsics,
          self.builder_config.image_size, subject=seq.name, sequence=seq.name,
          action=ACTIVITIES[int(seq.activities[k]) - 1], scene=TEST_SCENES[seq.name],
          frame=int(index))


def _read_test_sequence(manual_dir: epath.Path, name: str) -> _TestSequence:
  """The annotations and calibration of test sequence ``name``, checked."""
  folder = manual_dir / TEST_DIR / name
  path = folder / 'annot_data.mat'
  arrays = readers.load_mat_v73(
      path, _TEST_VARIABLES, f'the {name} annotations of the test set '
      '(mpi_inf_3dhp_test_set.zip)')
  n = len(arrays['annot2'])
  for variable, dims in (('annot2', 2), ('annot3', 3), ('univ_annot3', 3)):
    readers.check_shape(arrays[variable], (n, 1, 17, dims), path, variable)
  valid_frame, activity = (arrays[k].reshape(-1)
                           for k in ('valid_frame', 'activity_annotation'))
  for variable, values in (('valid_frame', valid_frame), ('activity_annotation', activity)):
    if values.shape != (n,):
      raise ValueError(f'{path}: {variable} has {values.size} values, expected one per '
                       f'frame ({n}, like annot2)')
  frames = np.flatnonzero(valid_frame)
  bad = sorted(set(activity[frames].astype(int)) - set(range(1, len(ACTIVITIES) + 1)))
  if bad:
    raise ValueError(f'{path}: activity_annotation has {bad} on valid frames; expected '
                     f'1..{len(ACTIVITIES)}')
  for index in frames:
    readers.require(folder / 'imageSequence' / f'img_{index + 1:06d}.jpg',
                    f'the valid frame {index} of {name} (mpi_inf_3dhp_test_set.zip)')
  return _TestSequence(
      name=name, folder=folder,
      calibration=readers.read_tc_calibration(
          manual_dir / CALIBRATION_DIR / TEST_CALIBRATIONS[name]),
      frames=frames, activities=activity[frames],
      joints_2d=_to_h36m(arrays['annot2'][frames, 0]),
      annot3=_to_h36m(arrays['annot3'][frames, 0]),
      # The protocol scores against univ_annot3 (the skeleton rescaled to the universal
      # Human3.6M height), so that is the 3D label; the 2D label is annot2, onto which
      # the real skeleton (annot3) projects.
      univ_annot3=_to_h36m(arrays['univ_annot3'][frames, 0]))


def _cell(annot: dict, name: str, camera: int, dims: int, path: epath.Path) -> np.ndarray:
  """Camera ``camera``'s (F, 28, dims) joints from the cell array ``annot[name]``."""
  if name not in annot:
    raise ValueError(f'{path}: no variable {name}; expected a cell of {NUM_CAMERAS} '
                     'cameras')
  cells = np.asarray(annot[name]).reshape(-1)
  if len(cells) != NUM_CAMERAS:
    raise ValueError(f'{path}: {name} has {len(cells)} cells, expected {NUM_CAMERAS} '
                     '(one per camera)')
  joints = np.asarray(cells[camera], np.float64)
  readers.check_shape(joints, (None, 28 * dims), path, f'{name}{{{camera + 1}}}')
  return joints.reshape(len(joints), 28, dims)


class _FrameAt:
  """The frames of a mask video read alongside the image video, by index."""

  def __init__(self, video: readers.Video, wanted, stop: int):
    self.video = video
    self._frames: Iterator = video.frames(wanted, stop)
    self._index, self._frame = -1, None

  def at(self, index: int, shape: tuple[int, ...]) -> np.ndarray | None:
    """Frame ``index``, of ``shape`` (None when it cannot be decoded or the video ends
    before it)."""
    while self._index < index:
      self._index, self._frame = next(self._frames, (np.inf, None))
    if self._index != index or self._frame is None:
      return None
    if self._frame.shape != shape:
      raise ValueError(f'{self.video.path}: frames of {self._frame.shape[1]}×'
                       f'{self._frame.shape[0]} px, expected those of its imageSequence '
                       f'video, {shape[1]}×{shape[0]} px')
    return self._frame


def _mask(person: np.ndarray | None, chair: np.ndarray | None) -> np.ndarray | None:
  """(H, W, 3) uint8 masks in ``features.example_features`` order from a frame's
  FGmasks and ChairMasks frames, or None when either is missing."""
  if person is None or chair is None:
    return None
  mask = np.zeros(person.shape, np.uint8)
  mask[..., features.PERSON] = np.where(person[..., 0] >= _PERSON_MIN_RED, 255, 0)
  mask[..., features.CHAIR] = np.where(chair[..., 0] < _CHAIR_MAX_RED, 255, 0)
  return mask


def _to_h36m(joints: np.ndarray) -> np.ndarray:
  """(..., 28 or 17, D) 3DHP joints → (..., 17, D) H36M-17 joints."""
  if joints.shape[-2] == 28:
    joints, _ = skeleton.convert_joints(joints, None, skeleton.MPI_INF_3DHP_28_TO_17)
  return skeleton.convert_joints(joints, None, skeleton.MPI_INF_3DHP_17_TO_H36M)[0]
