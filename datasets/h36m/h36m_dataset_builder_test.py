"""Tests of the Human3.6M builder on dummy_data/: fake data in the release's own formats
(mp4 videos, CDF pose files, cameras.json, the preprocessed npz with JPEG frames)."""

import pathlib

import cdflib
import numpy as np
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import skeleton
import builder_testing

from . import h36m_dataset_builder as h36m

DUMMY = pathlib.Path(__file__).parent / 'dummy_data'


class VideosTest(tfds.testing.DatasetBuilderTestCase):
  """Every 5th training frame, every 64th test frame of 12-frame videos."""
  DATASET_CLASS = h36m.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['videos']
  # train: S1 S7 S8 frames 0 5 10; S5 0 5 (8 poses); S6 0 5 10 (video ends first).
  # test: frame 0 of S9 and of S11 Greeting (S11 Directions.54138969 is left out).
  SPLITS = {'train': 14, 'test': 2}


class H80kTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = h36m.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['h80k']
  SPLITS = {'train': 5, 'test': 2}


class Fps5Test(tfds.testing.DatasetBuilderTestCase):
  """Every 10th training frame: 0 and 10 of S1 S6 S7 S8, 0 of S5 (8 poses)."""
  DATASET_CLASS = h36m.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['fps5']
  SPLITS = {'train': 9, 'test': 2}


class PreprocessedTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = h36m.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['preprocessed']
  # The S11 frame is a truncated JPEG: skipped.
  SPLITS = {'train': 2, 'test': 1}


class LabelsTest(tfds.testing.TestCase):
  """What the examples hold, against the fake release read independently."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    builder = builder_testing.build(cls, h36m.Builder, 'videos', DUMMY)
    cls.examples = {
        split: {(ex['subject'].decode(), ex['frame']): ex
                for ex in tfds.as_numpy(builder.as_dataset(split=split))}
        for split in ('train', 'test')}

  def test_frames_actions_and_left_out_video(self):
    self.assertEqual(sorted(self.examples['train']), [
        ('S1', 0), ('S1', 5), ('S1', 10), ('S5', 0), ('S5', 5), ('S6', 0), ('S6', 5),
        ('S6', 10), ('S7', 0), ('S7', 5), ('S7', 10), ('S8', 0), ('S8', 5), ('S8', 10)])
    actions = {k[0]: ex['action'].decode() for k, ex in self.examples['train'].items()}
    self.assertEqual(actions, {'S1': 'Directions', 'S5': 'SittingDown', 'S6': 'Photo',
                               'S7': 'WalkDog', 'S8': 'WalkTogether'})
    test = self.examples['test']
    self.assertEqual(sorted(test), [('S11', 0), ('S9', 0)])
    self.assertEqual(test[('S11', 0)]['sequence'], b'Greeting 2')
    self.assertEqual(test[('S9', 0)]['camera'], b'55011271')
    self.assertEqual(test[('S9', 0)]['scene'], b'studio')

  def test_3d_is_the_cdf_pose(self):
    path = DUMMY / 'S6/MyPoseFeatures/D3_Positions_mono/TakingPhoto 1.58860488.cdf'
    pose = np.asarray(cdflib.CDF(str(path))['Pose']).reshape(-1, 32, 3)
    ex = self.examples['train'][('S6', 10)]
    np.testing.assert_allclose(ex['joints_3d'], pose[10, skeleton.H36M_32_TO_17],
                               atol=1e-3)
    self.assertTrue(ex['has_3d'] and ex['has_intrinsics'])
    self.assertTrue(ex['joints_2d_valid'].all())

  def test_2d_is_the_projection_with_the_crop_intrinsics(self):
    for ex in self.examples['train'].values():
      projected = geometry.project(ex['joints_3d'], ex['intrinsics']['focal'],
                                   ex['intrinsics']['principal'])
      np.testing.assert_allclose(projected, ex['joints_2d'], atol=1e-2)
      self.assertEqual(ex['image'].shape, (384, 384, 3))


class BadDataTest(builder_testing.BrokenReleaseTest):
  """Errors name the file and what was expected."""
  BUILDER, DUMMY, CONFIG = h36m.Builder, DUMMY, 'videos'

  def test_missing_pose_file(self):
    (self.manual_dir / 'S7/MyPoseFeatures/D3_Positions_mono/WalkingDog.60457274.cdf'
     ).unlink()
    with self.assertRaisesRegex(FileNotFoundError, 'WalkingDog.60457274.cdf not found'):
      self.build()

  def test_missing_cameras(self):
    (self.manual_dir / 'cameras.json').unlink()
    with self.assertRaisesRegex(FileNotFoundError, 'cameras.json not found'):
      self.build('preprocessed')

  def test_pose_of_wrong_shape(self):
    path = self.manual_dir / 'S1/MyPoseFeatures/D3_Positions_mono/Directions 1.54138969.cdf'
    path.unlink()
    cdf = cdflib.cdfwrite.CDF(str(path))
    cdf.write_var({'Variable': 'Pose', 'Data_Type': cdf.CDF_FLOAT, 'Num_Elements': 1,
                   'Rec_Vary': True, 'Dim_Sizes': [4, 51]},
                  var_data=np.zeros((1, 4, 51), np.float32))
    cdf.close()
    with self.assertRaisesRegex(ValueError, r'Directions 1.54138969.cdf: Pose has shape '
                                r'\(4, 51\), expected \(N, 96\)'):
      self.build()

  def test_preprocessed_of_wrong_shape(self):
    path = self.manual_dir / 'annotations.npz'
    with np.load(path) as npz:
      arrays = dict(npz)
    arrays['S'] = arrays['S'][:, :, :3]
    with path.open('wb') as f:
      np.savez(f, **arrays)
    with self.assertRaisesRegex(ValueError, r'annotations.npz: S has shape \(4, 17, 3\), '
                                r'expected \(4, 17, 4\)'):
      self.build('preprocessed')


if __name__ == '__main__':
  tfds.testing.test_main()
