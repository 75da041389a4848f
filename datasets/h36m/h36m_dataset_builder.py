"""Human3.6M as person crops in jaxpose's common example format.

Every example has 3D labels (camera frame, mm) and the intrinsics of its crop. Two source
forms, chosen by the BuilderConfig: the official release (videos and CDF pose files) or
the SPIN / MMPose preprocessed release (an .npz with extracted frames). See README.md for
the conventions and the build commands.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import protocols
from jaxpose import skeleton
from jaxpose.data import features
from jaxpose.data import readers

TRAIN_SUBJECTS = ('S1', 'S5', 'S6', 'S7', 'S8')
TEST_SUBJECTS = ('S9', 'S11')
# The action names are those the evaluation protocol groups by.
ACTIONS = protocols.H36M_ACTIONS
# Some subjects' sequences carry another name for the same action.
_ACTION_ALIASES = {'TakingPhoto': 'Photo', 'WalkingDog': 'WalkDog'}
# (subject, sequence, camera) -> why the video is left out.
KNOWN_BAD_VIDEOS = {
    ('S11', 'Directions', '54138969'): 'the video is corrupt in the release',
}
PREPROCESSED_FILE = 'annotations.npz'
CAMERAS_FILE = 'cameras.json'


@dataclasses.dataclass
class H36mConfig(tfds.core.BuilderConfig):
  """Which release to read and which frames to keep.

  Attributes:
    source: 'videos' (the official release) or 'preprocessed' (SPIN / MMPose npz).
    train_every: keep the training frames whose index in the video is a multiple of it.
    test_every: the same for the test subjects.
    image_size: side of the stored person crop in pixels (the tight box is 1/1.5 of it).
  """
  source: str = 'videos'
  train_every: int = 5
  test_every: int = 64
  image_size: int = 384


@dataclasses.dataclass(frozen=True)
class _Video:
  subject: str
  sequence: str
  action: str
  camera: str
  video: epath.Path
  poses: epath.Path
  intrinsics: readers.Intrinsics


@dataclasses.dataclass(frozen=True)
class _Frame:
  """One record of the preprocessed annotations."""
  imgname: str
  subject: str
  sequence: str
  action: str
  camera: str
  intrinsics: readers.Intrinsics
  frame: int
  joints_2d: np.ndarray  # (17, 2) pixels.
  valid: np.ndarray  # (17,) bool.
  joints_3d: np.ndarray  # (17, 3) camera frame, mm.


class Builder(tfds.core.GeneratorBasedBuilder):
  """Human3.6M, one example per kept frame of each camera's video."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'The common format gains mask and has_mask.'}
  BUILDER_CONFIGS = [
      H36mConfig(
          name='videos',
          description=('Official videos and D3_Positions_mono poses; every 5th training '
                       'frame (10 fps), every 64th test frame.'),
          train_every=5, test_every=64),
      H36mConfig(
          name='h80k',
          description=(
              'Official videos, every 38th training frame (about 41k crops), every 64th '
              'test frame. Human80K (Ionescu et al., CVPR 2014) is 55k training and 25k '
              'test frames of all 4 cameras and 15 actions, sampled uniformly after '
              'dropping poses within 100 mm of another in the same video; its frame list '
              'is not part of the release read here. Habibie et al. train on "around 41K" '
              'of them, which is what its training part holds of S1 S5 S6 S7 S8 if it '
              'spans the 7 labelled subjects (55k × 74 %); the same count from every 38th '
              'frame keeps the frames spread the same way. See README.md.'),
          train_every=38, test_every=64),
      H36mConfig(
          name='fps5',
          description=('Official videos, every 10th training frame (5 fps, Habibie et '
                       'al.\'s Table 2 "5 fps" row; about 156k crops), every 64th test '
                       'frame.'),
          train_every=10, test_every=64),
      H36mConfig(
          name='preprocessed',
          description=('SPIN / MMPose annotations.npz with its extracted frames, every '
                       'frame it lists.'),
          source='preprocessed', train_every=1, test_every=1),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Register at http://vision.imar.ro/human3.6m and put into the manual directory (default
  <data_dir>/downloads/manual/, or pass --manual_dir):

  * every config: cameras.json, the calibration of the Human3.6M cameras keyed
    <subject>_<camera id> (e.g. "S1_54138969"), each with "f" and "c" as [[x], [y]] in
    pixels (other entries such as k, p, R, T, w, h may be there and are not read): the
    camera table that the preprocessed releases ship (e.g. MMPose's cameras.pkl) as JSON,
    see README.md for the conversion.

  * configs `videos`, `h80k` and `fps5` (the official release), for each of S1 S5 S6 S7
    S8 S9 S11 the subject-specific archives of "Videos" and of "Poses > D3 Positions
    mono" (their names number the subjects rather than name them; what matters is the
    layout after extraction), extracted into the manual directory:
      tar xzf <archive>.tgz -C <manual_dir>
    giving
      <manual_dir>/S1/Videos/Directions 1.54138969.mp4                (names with spaces)
      <manual_dir>/S1/MyPoseFeatures/D3_Positions_mono/Directions 1.54138969.cdf
    Every video except the _ALL ones needs its .cdf of the same name.

  * config `preprocessed` (the SPIN / MMPose release): its annotation file, saved as
    <manual_dir>/annotations.npz (imgname, part (N, 17, 3) pixels + visibility,
    S (N, 17, 4) camera frame in metres + confidence), and its extracted frames under
    <manual_dir>/images/ at the paths that imgname gives, e.g.
      <manual_dir>/images/S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features.example_features(),
        homepage='http://vision.imar.ro/human3.6m',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    cameras = readers.read_h36m_cameras(manual_dir / CAMERAS_FILE)
    config = self.builder_config
    split_subjects = {'train': (TRAIN_SUBJECTS, config.train_every),
                      'test': (TEST_SUBJECTS, config.test_every)}
    if config.source == 'videos':
      # Listing every file first fails fast on an incomplete download.
      return {split: self._generate_examples(
                  split, _list_videos(manual_dir, subjects, cameras), every, manual_dir)
              for split, (subjects, every) in split_subjects.items()}
    if config.source != 'preprocessed':
      raise ValueError(f'unknown source {config.source!r}; expected videos or preprocessed')
    frames = _read_preprocessed(manual_dir, cameras)
    splits = {}
    for split, (subjects, every) in split_subjects.items():
      kept = [f for f in frames if f.subject in subjects]
      if kept:
        splits[split] = self._generate_examples(split, kept, every, manual_dir)
      else:
        logging.warning('%s has no frame of %s: no %r split.',
                        manual_dir / PREPROCESSED_FILE, ' '.join(subjects), split)
    others = sorted({f.subject for f in frames} - set(TRAIN_SUBJECTS + TEST_SUBJECTS))
    if others:
      logging.warning('%s: frames of %s belong to no split and are left out.',
                      manual_dir / PREPROCESSED_FILE, ' '.join(others))
    if not splits:
      raise ValueError(f'{manual_dir / PREPROCESSED_FILE}: no frame of the train subjects '
                       f'{" ".join(TRAIN_SUBJECTS)} or the test subjects '
                       f'{" ".join(TEST_SUBJECTS)}')
    return splits

  def _generate_examples(self, split: str, items: list[_Video] | list[_Frame], every: int,
                         manual_dir: epath.Path):
    counts = collections.Counter()
    if self.builder_config.source == 'videos':
      yield from self._from_videos(items, every, counts)
    else:
      yield from self._from_frames(items, every, manual_dir / 'images', counts)
    logging.info('h36m %s split: %s.', split,
                 ', '.join(f'{n} {what}' for what, n in sorted(counts.items())))

  def _from_videos(self, videos: list[_Video], every: int, counts: collections.Counter):
    for v in videos:
      joints_3d = readers.read_h36m_poses(v.poses)[:, skeleton.H36M_32_TO_17]
      # The crop's 2D labels are the 3D ones projected with the camera's pinhole model,
      # which keeps labels, 3D and intrinsics exactly consistent; the lens distortion it
      # ignores moves the joints of the real sample by under 2.5 px in 1000 px frames.
      joints_2d = geometry.project(joints_3d, v.intrinsics.focal, v.intrinsics.principal)
      valid = np.ones(skeleton.NUM_JOINTS, bool)
      with readers.Video(v.video) as video:
        for index, frame in video.frames(lambda i: i % every == 0, len(joints_3d)):
          if frame is None:
            logging.warning('%s: frame %d cannot be decoded; skipped.', v.video, index)
            counts['undecodable frames skipped'] += 1
            continue
          counts['examples'] += 1
          yield f'{v.subject}/{v.sequence}.{v.camera}/{index}', readers.example_3d(
              frame, joints_2d[index], valid, joints_3d[index], v.intrinsics,
              self.builder_config.image_size, subject=v.subject, sequence=v.sequence,
              action=v.action, scene='studio', camera=v.camera, frame=index)
      if video.length < len(joints_3d):
        logging.info('%s: the video ends after %d frames, before its %d poses; used %d.',
                     v.video, video.length, len(joints_3d), video.length)
        counts['videos that end before their poses'] += 1
      elif video.length > len(joints_3d):
        logging.info('%s: %s ends after %d poses, before the video; used %d.',
                     v.video, v.poses.name, len(joints_3d), len(joints_3d))
        counts['pose files that end before their video'] += 1

  def _from_frames(self, frames: list[_Frame], every: int, images_dir: epath.Path,
                   counts: collections.Counter):
    for f in frames:
      if f.frame % every:
        continue
      path = images_dir / f.imgname
      readers.require(path, f'the frame {f.imgname} listed in {PREPROCESSED_FILE}')
      image = readers.decode_image(path.read_bytes())
      if image is None:
        logging.warning('%s: cannot be decoded; skipped.', path)
        counts['undecodable frames skipped'] += 1
        continue
      counts['examples'] += 1
      yield f.imgname, readers.example_3d(
          image, f.joints_2d, f.valid, f.joints_3d, f.intrinsics,
          self.builder_config.image_size, subject=f.subject, sequence=f.sequence,
          action=f.action, scene='studio', camera=f.camera, frame=f.frame)


def canonical_action(sequence: str, source: epath.Path) -> str:
  """The benchmark's action name of a sequence name ('TakingPhoto 1' -> 'Photo')."""
  base = sequence.split(' ')[0]
  action = _ACTION_ALIASES.get(base, base)
  if action not in ACTIONS:
    raise ValueError(f'{source}: sequence {sequence!r} names no Human3.6M action; '
                     f'expected one of {", ".join(ACTIONS + tuple(_ACTION_ALIASES))} '
                     'with an optional " <n>"')
  return action


def _camera(cameras: dict[str, readers.Intrinsics], subject: str, camera: str,
            path: epath.Path) -> readers.Intrinsics:
  key = f'{subject}_{camera}'
  if key not in cameras:
    raise ValueError(f'{path}: no entry {key!r}; expected one per subject and camera')
  return cameras[key]


def _list_videos(manual_dir: epath.Path, subjects: tuple[str, ...],
                 cameras: dict[str, readers.Intrinsics]) -> list[_Video]:
  """Every video of ``subjects`` with its pose file, checked to exist."""
  videos = []
  for subject in subjects:
    folder = manual_dir / subject / 'Videos'
    paths = sorted(folder.glob('*.mp4')) if folder.is_dir() else []
    if not paths:
      raise FileNotFoundError(
          f'{folder}: no video found; expected {subject}/Videos/<Sequence>.<camera>.mp4 '
          f'from the "Videos" archive of {subject}')
    for path in paths:
      sequence, _, camera = path.name[:-len('.mp4')].rpartition('.')
      if not sequence:
        raise ValueError(f'{path}: expected a video named <Sequence>.<camera id>.mp4')
      if sequence.startswith('_ALL'):  # All actions in one video, not a benchmark sequence.
        continue
      reason = KNOWN_BAD_VIDEOS.get((subject, sequence, camera))
      if reason:
        logging.warning('%s: left out, %s.', path, reason)
        continue
      poses = (manual_dir / subject / 'MyPoseFeatures' / 'D3_Positions_mono' /
               f'{sequence}.{camera}.cdf')
      readers.require(poses, f'the D3_Positions_mono poses of {path.name} (from the '
                      f'"D3 Positions mono" archive of {subject})')
      videos.append(_Video(
          subject, sequence, canonical_action(sequence, path), camera, path, poses,
          _camera(cameras, subject, camera, manual_dir / CAMERAS_FILE)))
  return videos


# imgname: S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg
_IMGNAME = re.compile(r'(?:.*/)?(S\d+)_(.+)\.(\d+)_(\d+)\.jpg')


def _read_preprocessed(manual_dir: epath.Path,
                       cameras: dict[str, readers.Intrinsics]) -> list[_Frame]:
  """The records of the SPIN / MMPose annotation file.

  Its frames are numbered from 1 (the first frame of a video is _000001.jpg) and its
  sequence names have spaces replaced by underscores; both are undone here.
  """
  path = manual_dir / PREPROCESSED_FILE
  readers.require(path, 'the SPIN / MMPose Human3.6M annotations (imgname, part, S)')
  with path.open('rb') as f, np.load(f) as npz:
    missing = {'imgname', 'part', 'S'} - set(npz.files)
    if missing:
      raise ValueError(f'{path}: no {", ".join(sorted(missing))}; expected imgname, part '
                       'and S')
    try:
      imgname, part, joints_3d = npz['imgname'], npz['part'], npz['S']
    except ValueError as e:  # E.g. an object array, which would need unpickling.
      raise ValueError(f'{path}: {e}; expected imgname as strings, part and S as numbers'
                       ) from e
  n = len(imgname)
  readers.check_shape(imgname, (n,), path, 'imgname')
  readers.check_shape(part, (n, skeleton.NUM_JOINTS, 3), path, 'part')
  readers.check_shape(joints_3d, (n, skeleton.NUM_JOINTS, 4), path, 'S')
  frames = []
  for i, name in enumerate(imgname):
    match = _IMGNAME.fullmatch(str(name))
    if not match:
      raise ValueError(f'{path}: imgname[{i}] is {name!r}; expected '
                       'S<k>/S<k>_<Sequence>.<camera>/S<k>_<Sequence>.<camera>_<frame>.jpg')
    subject, sequence, camera, number = match.groups()
    sequence = sequence.replace('_', ' ')
    frames.append(_Frame(
        imgname=str(name), subject=subject, sequence=sequence,
        action=canonical_action(sequence, path), camera=camera,
        intrinsics=_camera(cameras, subject, camera, manual_dir / CAMERAS_FILE),
        frame=int(number) - 1, joints_2d=part[i, :, :2],
        valid=part[i, :, 2] > 0, joints_3d=joints_3d[i, :, :3] * 1000.0))
  return frames

