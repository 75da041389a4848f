"""Tests of the MPII builder on the fake manual directory in dummy_data/."""

import json
import pathlib
import shutil

from absl.testing import absltest
from etils import epath
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import crops
import builder_testing

from . import mpii_dataset_builder

DUMMY = pathlib.Path(__file__).parent / 'dummy_data'
MAT = DUMMY / 'mpii_human_pose_v1_u12_2' / 'mpii_human_pose_v1_u12_1.mat'
TRAIN_JSON = DUMMY / 'annotations' / 'mpii_train.json'


class MatConfigTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = mpii_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['mat']
  # mpii_a: 2 people, mpii_b: 1; mpii_c's people have < 2 points, mpii_corrupt is
  # truncated, the test image and the crowd have no single person.
  SPLITS = {'train': 3}


class JsonConfigTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = mpii_dataset_builder.Builder
  BUILDER_CONFIG_NAMES_TO_TEST = ['json']
  SPLITS = {'train': 3, 'validation': 1}  # The record of mpii_corrupt is skipped.


class ParseTest(absltest.TestCase):

  def test_mat_edge_cases(self):
    people = list(mpii_dataset_builder.read_mat(epath.Path(MAT)))
    self.assertEqual([p.key for p in people], ['0_0', '0_1', '1_0', '2_0', '2_1', '4_0'])
    self.assertEqual([int(p.labelled.sum()) for p in people], [16, 6, 10, 1, 0, 16])
    self.assertEqual([p.action for p in people],
                     ['curling', 'curling', '', 'curling', 'curling', 'playing guitar'])
    self.assertEqual([p.frame for p in people], [0, 0, 1, 2, 2, 4])
    # The single point of mpii_c (MATLAB (30.5, 8.25), head top).
    np.testing.assert_allclose(people[3].joints[9], [30.0, 7.75])

  def test_mat_and_json_agree(self):
    """The same people in both forms, and the JSON joints moved by the 1-based offset."""
    records = json.loads(TRAIN_JSON.read_text())
    from_json = list(mpii_dataset_builder.read_json(epath.Path(TRAIN_JSON)))
    from_mat = {p.key: p for p in mpii_dataset_builder.read_mat(epath.Path(MAT))}
    for record, person in zip(records, from_json):
      vis = np.array(record['joints_vis']) > 0
      np.testing.assert_array_equal(person.labelled, vis)
      np.testing.assert_allclose(person.joints[vis], np.array(record['joints'])[vis] - 0.5)
    for json_index, mat_key in [(0, '0_0'), (1, '0_1'), (3, '1_0')]:
      np.testing.assert_array_equal(from_json[json_index].labelled,
                                    from_mat[mat_key].labelled)
      labelled = from_mat[mat_key].labelled
      np.testing.assert_allclose(from_json[json_index].joints[labelled],
                                 from_mat[mat_key].joints[labelled])


class ExampleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.builder = builder_testing.build(cls, mpii_dataset_builder.Builder, 'mat', DUMMY)
    cls.examples = list(tfds.as_numpy(cls.builder.as_dataset(split='train')))

  def test_joints_sit_on_their_dots(self):
    """The fake images have a bright dot on every labelled joint."""
    for ex in self.examples:
      self.assertEqual(ex['image'].shape, (384, 384, 3))
      x, y = np.floor(ex['joints_2d'][ex['joints_2d_valid']]).astype(int).T
      self.assertTrue((ex['image'][y, x].mean(-1) > 128).all(), ex['sequence'])

  def test_stored_joints_are_the_crop_of_the_labels(self):
    (ex,) = [e for e in self.examples if e['sequence'] == b'mpii_b.jpg']
    people = {p.key: p for p in mpii_dataset_builder.read_mat(epath.Path(MAT))}
    joints, valid = skeleton.convert_joints(
        people['1_0'].joints, people['1_0'].labelled, skeleton.MPII_TO_H36M)
    centre, side = crops.tight_box(joints, valid)
    matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, 384)
    np.testing.assert_allclose(ex['joints_2d'][valid],
                               geometry.apply_affine(matrix, joints[valid]), atol=1e-3)
    np.testing.assert_array_equal(ex['joints_2d'][~valid], 0.0)
    np.testing.assert_array_equal(ex['joints_2d_valid'], valid)

  def test_labels_and_metadata(self):
    for ex in self.examples:
      valid = ex['joints_2d_valid']
      # MPII has no spine and its upper neck is not H36M's neck/nose.
      self.assertFalse(valid[skeleton.JOINT_INDEX['spine']])
      self.assertFalse(valid[skeleton.JOINT_INDEX['neck']])
      self.assertFalse(ex['has_3d'])
      self.assertFalse(ex['has_intrinsics'])
      np.testing.assert_array_equal(ex['joints_3d'], 0.0)
      np.testing.assert_array_equal(ex['intrinsics']['focal'], 0.0)
      self.assertEqual(ex['scene'], b'wild')
      self.assertEqual(ex['subject'], b'')
    actions = sorted((e['sequence'], e['action'], e['frame']) for e in self.examples)
    self.assertEqual(actions, [(b'mpii_a.jpg', b'curling', 0)] * 2 + [(b'mpii_b.jpg', b'', 1)])

  def test_image_size_is_configurable(self):
    config = mpii_dataset_builder.MpiiConfig(
        name='small', image_size=64, annotation_files={'train': 'annotations/mpii_val.json'})
    builder = builder_testing.build(self, mpii_dataset_builder.Builder, config, DUMMY)
    (ex,) = tfds.as_numpy(builder.as_dataset(split='train'))
    self.assertEqual(ex['image'].shape, (64, 64, 3))


class BadDataTest(builder_testing.BrokenReleaseTest):
  BUILDER, DUMMY, CONFIG = mpii_dataset_builder.Builder, DUMMY, 'json'

  def test_missing_images(self):
    shutil.rmtree(self.manual_dir / 'images')
    with self.assertRaisesRegex(FileNotFoundError, 'images.*mpii_human_pose_v1.tar.gz'):
      self.build()

  def test_missing_annotations(self):
    shutil.rmtree(self.manual_dir / 'mpii_human_pose_v1_u12_2')
    with self.assertRaisesRegex(FileNotFoundError, 'mpii_human_pose_v1_u12_1.mat'):
      self.build('mat')

  def test_missing_validation_file_leaves_the_split_out(self):
    (self.manual_dir / 'annotations' / 'mpii_val.json').unlink()
    self.assertEqual(set(self.build().info.splits), {'train'})

  def test_missing_image(self):
    (self.manual_dir / 'images' / 'mpii_b.jpg').unlink()
    with self.assertRaisesRegex(FileNotFoundError, 'mpii_b.jpg.*mpii_train.json'):
      self.build()

  def test_wrong_joint_shape(self):
    path = self.manual_dir / 'annotations' / 'mpii_train.json'
    records = json.loads(path.read_text())
    records[1]['joints'] = records[1]['joints'][:14]
    path.write_text(json.dumps(records))
    with self.assertRaisesRegex(ValueError, r'mpii_train.json: record 1 .*\(14, 2\).*\(16, 2\)'):
      self.build()

  def test_corrupt_joint_is_named(self):
    path = self.manual_dir / 'annotations' / 'mpii_train.json'
    for value, message in ((None, r'\(nan, .*\); expected finite pixels'),
                           (1e12, r'\(1e\+12, .*\), more than the image\'s size')):
      records = json.loads(TRAIN_JSON.read_text())
      records[1]['joints'][3][0] = value   # a labelled joint: JSON null or far away
      path.write_text(json.dumps(records))
      with self.assertRaisesRegex(ValueError, r'mpii_train.json: person 1 \(image mpii_a.jpg\): '
                                  r'joint \d+ \(\w+\) is labelled at ' + message):
        self.build()

  def test_truncated_mat_is_named(self):
    path = self.manual_dir / 'mpii_human_pose_v1_u12_2' / 'mpii_human_pose_v1_u12_1.mat'
    path.write_bytes(MAT.read_bytes()[:700])
    with self.assertRaisesRegex(ValueError, 'mpii_human_pose_v1_u12_1.mat: not a readable '
                                'MATLAB v5 file'):
      self.build('mat')

  def test_not_a_release(self):
    path = self.manual_dir / 'mpii_human_pose_v1_u12_2' / 'mpii_human_pose_v1_u12_1.mat'
    scipy.io.savemat(path, {'joints': np.zeros((3, 14, 2))})
    with self.assertRaisesRegex(ValueError, 'mpii_human_pose_v1_u12_1.mat: no RELEASE'):
      self.build('mat')


if __name__ == '__main__':
  tfds.testing.test_main()
