"""MPII Human Pose as person crops in jaxpose's common example format.

MPII labels 2D joints only: every example has ``has_3d`` false and no intrinsics, and
trains the 3D output through the projection loss. See README.md for the conventions
(coordinate offset, which joints count as valid) and the build commands.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Iterator

from absl import logging
from etils import epath
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from jaxpose import skeleton
from jaxpose.data import crops
from jaxpose.data import readers
from jaxpose.data import features

NUM_MPII_JOINTS = 16
# Both annotation forms keep MPII's MATLAB image coordinates, where the centre of the
# top-left pixel is (1, 1); jaxpose puts it at (0.5, 0.5).
MATLAB_TO_JAXPOSE = -0.5


@dataclasses.dataclass
class MpiiConfig(tfds.core.BuilderConfig):
  """Which annotation files to read.

  Attributes:
    annotation_files: split name -> annotation file relative to the manual directory. The
      suffix selects the parser: ``.mat`` the official release, ``.json`` the Stacked
      Hourglass / MMPose lists. A split whose file is absent is left out (logged).
    image_size: side of the stored person crop in pixels (the tight box is 1/1.5 of it).
  """
  annotation_files: dict[str, str] = dataclasses.field(default_factory=dict)
  image_size: int = 384


@dataclasses.dataclass
class _Person:
  key: str
  image: str
  frame: int
  action: str
  joints: np.ndarray  # (16, 2) jaxpose pixels of the full image.
  labelled: np.ndarray  # (16,) bool.


class Builder(tfds.core.GeneratorBasedBuilder):
  """MPII Human Pose, one example per annotated person."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'The common format gains mask and has_mask.'}
  BUILDER_CONFIGS = [
      MpiiConfig(
          name='mat',
          description=('Official mpii_human_pose_v1_u12_1.mat: the single-person '
                       'training annotations.'),
          annotation_files={
              'train': 'mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat'},
      ),
      MpiiConfig(
          name='json',
          description='MMPose JSON lists: every annotated person of its train/val split.',
          annotation_files={'train': 'annotations/mpii_train.json',
                            'validation': 'annotations/mpii_val.json'},
      ),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Register at http://human-pose.mpi-inf.mpg.de/#download and put into the manual
  directory (default <data_dir>/downloads/manual/, or pass --manual_dir):

  * images, for every config: mpii_human_pose_v1.tar.gz (12.9 GB)
      tar xzf mpii_human_pose_v1.tar.gz -C <manual_dir>      # -> <manual_dir>/images/*.jpg
  * config `mat`: mpii_human_pose_v1_u12_2.zip (the annotations)
      unzip mpii_human_pose_v1_u12_2.zip -d <manual_dir>
      # -> <manual_dir>/mpii_human_pose_v1_u12_2/mpii_human_pose_v1_u12_1.mat
  * config `json`: MMPose's https://download.openmmlab.com/mmpose/datasets/mpii_annotations.tar
      tar xf mpii_annotations.tar -C <manual_dir>
      # -> <manual_dir>/annotations/mpii_train.json (train), mpii_val.json (validation)
    Other JSON files of the same form (e.g. the Simple Baselines / HRNet annot/train.json,
    annot/valid.json) are read by a custom config, see README.md.
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features.example_features(),
        homepage='http://human-pose.mpi-inf.mpg.de/',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = epath.Path(dl_manager.manual_dir)
    images_dir = manual_dir / 'images'
    if not images_dir.is_dir():
      raise FileNotFoundError(
          f'{images_dir} not found: expected the images of mpii_human_pose_v1.tar.gz '
          f'there.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    splits = {}
    for split, name in self.builder_config.annotation_files.items():
      path = manual_dir / name
      if path.exists():
        splits[split] = self._generate_examples(path, images_dir)
      else:
        logging.warning('%s not found: no %r split.', path, split)
    if not splits:
      expected = ', '.join(str(manual_dir / n)
                           for n in self.builder_config.annotation_files.values())
      raise FileNotFoundError(
          f'no annotation file of config {self.builder_config.name!r} found; expected '
          f'{expected}.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    return splits

  def _generate_examples(self, path: epath.Path, images_dir: epath.Path):
    people = read_mat(path) if path.suffix == '.mat' else read_json(path)
    by_image = collections.defaultdict(list)
    for person in people:
      by_image[person.image].append(person)
    skipped = collections.Counter()
    for image_name, persons in by_image.items():
      image = readers.read_image(
          images_dir / image_name,
          f'the image listed in {path}, as every image of mpii_human_pose_v1.tar.gz')
      if image is None:
        skipped['undecodable images'] += 1
        continue
      for person in persons:
        joints, valid = skeleton.convert_joints(
            person.joints, person.labelled, skeleton.MPII_TO_H36M)
        if valid.sum() < 2:
          # A person box needs two joints; MPII has rects with no or one point.
          skipped['people with fewer than 2 valid joints'] += 1
          continue
        try:
          example = readers.example_2d(
              image, joints, valid, self.builder_config.image_size,
              sequence=person.image, action=person.action, frame=person.frame)
        except crops.BadJointsError as e:
          raise ValueError(f'{path}: person {person.key} (image {person.image}): {e}'
                           ) from e
        yield person.key, example
    if skipped:
      logging.warning('%s: skipped %s.', path,
                      ', '.join(f'{what}: {n}' for what, n in skipped.items()))


def read_mat(path: epath.Path) -> Iterator[_Person]:
  """The single-person training annotations of the official .mat release.

  Loaded with ``squeeze_me``, a struct array of one element comes back as the bare
  struct and an empty field as an empty array; ``_elements`` undoes both. ``is_visible``
  (0/1, '0'/'1' or empty) only marks occlusion and is not read: a joint is valid when it
  has a point.
  """
  mat = readers.load_mat_v5(path, 'mpii_human_pose_v1_u12_1.mat of '
                            'mpii_human_pose_v1_u12_2.zip', struct_as_record=False,
                            squeeze_me=True)
  if 'RELEASE' not in mat:
    raise ValueError(f'{path}: no RELEASE struct; expected mpii_human_pose_v1_u12_1.mat '
                     'of mpii_human_pose_v1_u12_2.zip')
  release = mat['RELEASE']
  annolist = _elements(release.annolist)
  img_train = np.atleast_1d(release.img_train)
  single_person = _elements(release.single_person)
  acts = _elements(release.act)
  if not len(annolist) == len(img_train) == len(single_person) == len(acts):
    raise ValueError(
        f'{path}: RELEASE has {len(annolist)} annolist entries, {len(img_train)} '
        f'img_train, {len(single_person)} single_person and {len(acts)} act; expected '
        'one of each per image')
  for i, entry in enumerate(annolist):
    if img_train[i] != 1:
      continue
    rects = _elements(entry.annorect)
    action = _text(acts[i].act_name)
    for r in np.atleast_1d(single_person[i]).astype(int) - 1:
      if not 0 <= r < len(rects):
        raise ValueError(f'{path}: single_person({i + 1}) names annorect {r + 1}, but '
                         f'annolist({i + 1}) has {len(rects)} annorect')
      joints = np.zeros((NUM_MPII_JOINTS, 2))
      labelled = np.zeros(NUM_MPII_JOINTS, bool)
      annopoints = getattr(rects[r], 'annopoints', None)
      points = (_elements(annopoints.point)
                if isinstance(annopoints, scipy.io.matlab.mat_struct) else [])
      for point in points:
        where = f'{path}: annolist({i + 1}).annorect({r + 1})'
        try:
          j, x, y = int(point.id), float(point.x), float(point.y)
        except (AttributeError, TypeError, ValueError) as e:
          raise ValueError(f'{where} has a point without a numeric id, x and y ({e})') from e
        if not 0 <= j < NUM_MPII_JOINTS:
          raise ValueError(f'{where} has a point with id {j}; expected 0..'
                           f'{NUM_MPII_JOINTS - 1}')
        joints[j] = x, y
        labelled[j] = True
      yield _Person(key=f'{i}_{r}', image=str(entry.image.name), frame=i, action=action,
                    joints=joints + MATLAB_TO_JAXPOSE, labelled=labelled)


def read_json(path: epath.Path) -> Iterator[_Person]:
  """Records ``image``, ``joints`` (16, 2), ``joints_vis`` (16,) of the JSON lists.

  ``joints_vis`` marks the labelled joints (unlabelled ones sit at (-1, -1)); ``center``
  and ``scale`` are not needed since the crop is cut around the joints.
  """
  try:
    records = json.loads(path.read_text())
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}: not valid JSON ({e})') from e
  if not isinstance(records, list):
    raise ValueError(f'{path}: expected a JSON list of records, got {type(records).__name__}')
  for k, record in enumerate(records):
    try:
      image = str(record['image'])
      joints = np.asarray(record['joints'], np.float64)
      vis = np.asarray(record['joints_vis'], np.float64)
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(f'{path}: record {k}: {e!r}; expected keys image, joints (16, 2), '
                       'joints_vis (16,)') from e
    if joints.shape != (NUM_MPII_JOINTS, 2) or vis.shape != (NUM_MPII_JOINTS,):
      raise ValueError(f'{path}: record {k} ({image}) has joints {joints.shape} and '
                       f'joints_vis {vis.shape}; expected (16, 2) and (16,)')
    yield _Person(key=str(k), image=image, frame=k, action='',
                  joints=joints + MATLAB_TO_JAXPOSE, labelled=vis > 0)


def _elements(value) -> list:
  """The elements of a loaded MATLAB array, which ``squeeze_me`` may have turned into a
  bare element (one) or an empty array (none)."""
  if isinstance(value, np.ndarray):
    return list(value.ravel())
  return [value]


def _text(value) -> str:
  """A MATLAB char field, which is an empty array where it was left empty."""
  return value if isinstance(value, str) else ''
