"""Tests of the LSP builder on the fake manual directory in dummy_data/."""

import pathlib

from absl.testing import absltest
from etils import epath
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import crops
import builder_testing

from . import lsp_dataset_builder

DUMMY = pathlib.Path(__file__).parent / 'dummy_data'
J = skeleton.JOINT_INDEX
# H36M joints that LSP has no counterpart for.
NOT_IN_LSP = {J['pelvis'], J['spine'], J['neck']}


class LspConfigTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = lsp_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['lsp']
  SPLITS = {'train': 2, 'test': 1}  # im0003 (test) cannot be decoded.


class LspExtendedConfigTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = lsp_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['lsp_extended']
  SPLITS = {'train': 2}  # im00003 has a single valid joint.


def _invalid(example):
  return set(np.flatnonzero(~example['joints_2d_valid']))


class ExampleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.examples = {}
    for config, splits in (('lsp', ('train', 'test')), ('lsp_extended', ('train',))):
      builder = builder_testing.build(cls, lsp_dataset_builder.Builder, config, DUMMY)
      for split in splits:
        for ex in tfds.as_numpy(builder.as_dataset(split=split)):
          cls.examples[config, split, ex['sequence'].decode()] = ex

  def test_examples(self):
    self.assertEqual(sorted(self.examples), [
        ('lsp', 'test', 'im0004.jpg'), ('lsp', 'train', 'im0001.jpg'),
        ('lsp', 'train', 'im0002.jpg'), ('lsp_extended', 'train', 'im00001.jpg'),
        ('lsp_extended', 'train', 'im00002.jpg')])

  def test_joints_sit_on_their_dots(self):
    """The fake images have a bright dot on every joint that must be valid."""
    for key, ex in self.examples.items():
      self.assertEqual(ex['image'].shape, (384, 384, 3))
      x, y = np.floor(ex['joints_2d'][ex['joints_2d_valid']]).astype(int).T
      self.assertTrue((ex['image'][y, x].mean(-1) > 128).all(), key)

  def test_lsp_occluded_joints_are_valid(self):
    # Both fake LSP images mix flags 0 and 1 on in-image joints: all of them count.
    self.assertEqual(_invalid(self.examples['lsp', 'train', 'im0001.jpg']), NOT_IN_LSP)
    self.assertEqual(_invalid(self.examples['lsp', 'test', 'im0004.jpg']), NOT_IN_LSP)

  def test_joints_off_the_image_are_invalid(self):
    self.assertEqual(_invalid(self.examples['lsp', 'train', 'im0002.jpg']),
                     NOT_IN_LSP | {J['l_ankle'], J['l_wrist']})

  def test_lspet_flag_zero_joints_are_invalid(self):
    self.assertEqual(_invalid(self.examples['lsp_extended', 'train', 'im00001.jpg']),
                     NOT_IN_LSP)
    # r_ankle, r_wrist, head_top flagged 0; neck (H36M thorax) flagged 1 but off-image.
    self.assertEqual(_invalid(self.examples['lsp_extended', 'train', 'im00002.jpg']),
                     NOT_IN_LSP | {J['r_ankle'], J['r_wrist'], J['head'], J['thorax']})

  def test_stored_joints_are_the_crop_of_the_labels(self):
    raw = scipy.io.loadmat(DUMMY / 'lspet_dataset' / 'joints.mat')['joints']  # 14×3×N
    joints = np.zeros((skeleton.NUM_JOINTS, 2))
    lsp_names = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'r_wrist',
                 'r_elbow', 'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist', 'thorax',
                 'head')
    for k, name in enumerate(lsp_names):
      joints[J[name]] = raw[k, :2, 0] - 0.5
    ex = self.examples['lsp_extended', 'train', 'im00001.jpg']
    valid = ex['joints_2d_valid']
    centre, side = crops.tight_box(joints, valid)
    matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, 384)
    np.testing.assert_allclose(ex['joints_2d'][valid],
                               geometry.apply_affine(matrix, joints[valid]), atol=1e-3)
    np.testing.assert_array_equal(ex['joints_2d'][~valid], 0.0)

  def test_metadata(self):
    for (_, _, name), ex in self.examples.items():
      self.assertEqual(ex['frame'], int(name[2:-4]) - 1)
      self.assertEqual((ex['scene'], ex['action'], ex['subject']), (b'wild', b'', b''))
      self.assertFalse(ex['has_3d'])
      self.assertFalse(ex['has_intrinsics'])
      np.testing.assert_array_equal(ex['joints_3d'], 0.0)


class ReadJointsTest(absltest.TestCase):

  def test_both_layouts(self):
    for folder, layout in (('lsp_dataset', (1, 0, 2)), ('lspet_dataset', (0, 1, 2))):
      path = DUMMY / folder / 'joints.mat'
      raw = scipy.io.loadmat(path)['joints'].transpose(layout)  # 14×3×N
      joints = lsp_dataset_builder.read_joints(epath.Path(path))
      np.testing.assert_array_equal(joints, raw.transpose(2, 0, 1))


class BadDataTest(builder_testing.BrokenReleaseTest):
  BUILDER, DUMMY, CONFIG = lsp_dataset_builder.Builder, DUMMY, 'lsp'

  def test_missing_annotations(self):
    (self.manual_dir / 'lspet_dataset' / 'joints.mat').unlink()
    with self.assertRaisesRegex(FileNotFoundError, 'lspet_dataset/joints.mat not found'):
      self.build('lsp_extended')

  def test_wrong_shape(self):
    path = self.manual_dir / 'lsp_dataset' / 'joints.mat'
    scipy.io.savemat(path, {'joints': np.zeros((2, 14, 4))})
    with self.assertRaisesRegex(ValueError, r'joints.mat: joints has shape \(2, 14, 4\)'):
      self.build()

  def test_odd_image_count(self):
    path = self.manual_dir / 'lsp_dataset' / 'joints.mat'
    scipy.io.savemat(path, {'joints': scipy.io.loadmat(path)['joints'][..., :3]})
    with self.assertRaisesRegex(ValueError, 'joints.mat: 3 images; expected an even'):
      self.build()

  def test_missing_image(self):
    (self.manual_dir / 'lsp_dataset' / 'images' / 'im0002.jpg').unlink()
    with self.assertRaisesRegex(FileNotFoundError, 'im0002.jpg not found: expected the image of .*joints.mat'):
      self.build()


if __name__ == '__main__':
  tfds.testing.test_main()
