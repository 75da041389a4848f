"""The MPII builder on real MPII images and labels (the JSON form, from MMPose's tests).

The sample lives outside the repository, in ``<repo>/../shared/fixtures/real/mpii``
(``annotations.json`` + ``images/``); the test skips where it is absent.
"""

import json
import pathlib
import sys

import numpy as np
from PIL import Image
import pytest
from scipy import ndimage
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import crops

REPO = pathlib.Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / 'shared' / 'fixtures' / 'real' / 'mpii'
IMAGE_SIZE = 384

# MPII-16 order, written out here rather than taken from skeleton.MPII_TO_H36M so that
# the test checks the map instead of repeating it.
MPII_NAMES = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis',
              'thorax', 'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder',
              'l_shoulder', 'l_elbow', 'l_wrist')
# H36M-17 joint of each MPII joint; upper_neck has none.
MPII_NAME_TO_H36M = dict(
    {n: n for n in MPII_NAMES if n in skeleton.JOINT_INDEX}, head_top='head')


def _builder_class():
  # Imported the way `tfds build datasets/mpii` imports it, so that the builder test
  # in the same session and this one share one module (and one registration).
  with tfds.core.utils.add_sys_path(REPO / 'datasets'):
    return tfds.core.community.builder_cls_from_module('mpii.mpii_dataset_builder')


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  if not (SAMPLE / 'annotations.json').exists():
    pytest.skip(f'real MPII sample not found at {SAMPLE} (the shared fixtures are not '
                'next to this checkout)')
  builder_cls = _builder_class()
  config = sys.modules[builder_cls.__module__].MpiiConfig(
      name='real_sample', annotation_files={'train': 'annotations.json'},
      image_size=IMAGE_SIZE)
  builder = builder_cls(data_dir=str(tmp_path_factory.mktemp('data')), config=config)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(SAMPLE)))
  records = json.loads((SAMPLE / 'annotations.json').read_text())
  examples = {ex['sequence'].decode(): ex
              for ex in tfds.as_numpy(builder.as_dataset(split='train'))}
  return records, examples


def _expected(record):
  """H36M-17 joints (MATLAB 1-based coordinates moved to jaxpose's) and validity."""
  joints = np.zeros((skeleton.NUM_JOINTS, 2))
  valid = np.zeros(skeleton.NUM_JOINTS, bool)
  for name, xy, vis in zip(MPII_NAMES, record['joints'], record['joints_vis']):
    if name in MPII_NAME_TO_H36M and vis:
      j = skeleton.JOINT_INDEX[MPII_NAME_TO_H36M[name]]
      joints[j] = np.array(xy) - 0.5
      valid[j] = True
  return joints, valid


def _crop_matrix(joints, valid):
  centre, side = crops.tight_box(joints, valid)
  return geometry.crop_matrix(centre, side * crops.STORE_MARGIN, IMAGE_SIZE)


def test_every_record_is_an_example(built):
  records, examples = built
  assert sorted(examples) == sorted(r['image'] for r in records)


def test_joints_round_trip(built):
  records, examples = built
  for record in records:
    ex = examples[record['image']]
    joints, valid = _expected(record)
    np.testing.assert_array_equal(ex['joints_2d_valid'], valid, err_msg=record['image'])
    expected = geometry.apply_affine(_crop_matrix(joints, valid), joints)
    # Float32 storage is the only error left; 0.5 px would hide an offset mistake.
    np.testing.assert_allclose(ex['joints_2d'][valid], expected[valid], atol=0.01,
                               err_msg=record['image'])
    np.testing.assert_array_equal(ex['joints_2d'][~valid], 0.0)


def test_joints_missing_from_mpii_are_invalid(built):
  records, examples = built
  for record in records:
    ex = examples[record['image']]
    for name in ('spine', 'neck'):
      assert not ex['joints_2d_valid'][skeleton.JOINT_INDEX[name]]
    # The records with unlabelled ankles (joints_vis 0, at (-1, -1)).
    for mpii, name in ((0, 'r_ankle'), (5, 'l_ankle')):
      assert ex['joints_2d_valid'][skeleton.JOINT_INDEX[name]] == bool(
          record['joints_vis'][mpii])


def test_named_joints_land_on_their_slots(built):
  records, examples = built
  record = records[0]  # 005808361.jpg: all 16 joints labelled.
  ex = examples[record['image']]
  matrix = _crop_matrix(*_expected(record))
  for mpii, name in ((0, 'r_ankle'), (9, 'head'), (10, 'r_wrist'), (13, 'l_shoulder'),
                     (6, 'pelvis'), (7, 'thorax')):
    label = np.array(record['joints'][mpii]) - 0.5
    np.testing.assert_allclose(ex['joints_2d'][skeleton.JOINT_INDEX[name]],
                               geometry.apply_affine(matrix, label[None])[0], atol=0.01,
                               err_msg=name)


def test_crop_pixels(built):
  """The stored crop is the real image resampled through the crop matrix."""
  records, examples = built
  for record in records:
    ex = examples[record['image']]
    image = np.asarray(Image.open(SAMPLE / 'images' / record['image']).convert('RGB'),
                       np.float64)
    inverse = np.linalg.inv(_crop_matrix(*_expected(record)))
    # Crop pixel centres (j + 0.5, i + 0.5) in the frame, then as array indices there.
    i, j = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE] + 0.5
    x, y = (geometry.apply_affine(inverse, np.stack([j, i], -1)) - 0.5).transpose(2, 0, 1)
    crop = np.stack([ndimage.map_coordinates(image[..., c], [y, x], order=1, cval=0.0)
                     for c in range(3)], -1)
    assert ex['image'].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    difference = np.abs(ex['image'] - crop).mean()
    assert difference < 2.5, (record['image'], difference)


def test_metadata(built):
  _, examples = built
  for name, ex in examples.items():
    assert not ex['has_3d'] and not ex['has_intrinsics']
    np.testing.assert_array_equal(ex['joints_3d'], 0.0)
    assert (ex['scene'], ex['subject'], ex['action']) == (b'wild', b'', b'')
