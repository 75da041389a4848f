"""Tests of the MPI-INF-3DHP builder on dummy_data/: fake data in the release's own
formats (annot.mat v5, camera.calibration, MJPEG .avi, annot_data.mat v7.3, JPEG frames,
.calib files), and of the calibration reader on the real test-set calibration files."""

import pathlib

from etils import epath
import h5py
import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import crops
from jaxpose.data import features
from jaxpose.data import readers
import builder_testing

from . import mpi_inf_3dhp_dataset_builder as mpi_inf_3dhp

DUMMY = pathlib.Path(__file__).parent / 'dummy_data'
REAL = pathlib.Path(__file__).resolve().parents[3] / 'shared' / 'fixtures' / 'real'
TO_H36M = skeleton.MPI_INF_3DHP_28_TO_17[skeleton.MPI_INF_3DHP_17_TO_H36M]


class DefaultTest(tfds.testing.DatasetBuilderTestCase):
  DATASET_CLASS = mpi_inf_3dhp.Builder
  # train: frame 0 of 16 sequences × 8 cameras (S1/Seq1 camera 0: frame 10 is corrupt).
  # test: 3 valid frames of each of TS1-TS6, less TS3's truncated JPEG.
  SPLITS = {'train': 128, 'test': 17}


class LabelsTest(tfds.testing.TestCase):
  """What the examples hold, against the fake release read independently."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    config = mpi_inf_3dhp.MpiInf3dhpConfig(name='camera_0', cameras=(0,), train_every=5)
    builder = builder_testing.build(cls, mpi_inf_3dhp.Builder, config, DUMMY)
    cls.train = {(ex['subject'].decode(), ex['sequence'].decode(), ex['frame']): ex
                 for ex in tfds.as_numpy(builder.as_dataset(split='train'))}
    cls.test = {(ex['sequence'].decode(), ex['frame']): ex
                for ex in tfds.as_numpy(builder.as_dataset(split='test'))}

  def test_train_frames(self):
    # Every 5th frame: S1/Seq1 camera 0 has 12 frames, 10 is corrupt; the others 2.
    expected = {(f'S{s}', f'Seq{q}', 0) for s in range(1, 9) for q in (1, 2)}
    expected |= {('S1', 'Seq1', 5)}
    self.assertEqual(set(self.train), expected)
    self.assertEqual({ex['camera'] for ex in self.train.values()}, {b'0'})

  def test_train_3d_is_annot3(self):
    annot = scipy.io.loadmat(DUMMY / 'S1/Seq1/annot.mat')
    annot3 = annot['annot3'][0, 0].reshape(-1, 28, 3)
    annot2 = annot['annot2'][0, 0].reshape(-1, 28, 2)
    ex = self.train[('S1', 'Seq1', 5)]
    np.testing.assert_allclose(ex['joints_3d'], annot3[5, TO_H36M], atol=1e-3)
    self._assert_2d_in_crop(ex, annot2[5, TO_H36M])
    self.assertEqual(ex['scene'], b'GS')

  def test_train_masks_are_cut_like_the_image(self):
    ex = self.train[('S1', 'Seq1', 5)]
    self.assertTrue(ex['has_mask'])
    annot2 = scipy.io.loadmat(DUMMY / 'S1/Seq1/annot.mat')['annot2'][0, 0]
    centre, side = crops.tight_box(annot2.reshape(-1, 28, 2)[5, TO_H36M], np.ones(17, bool))
    for channel, folder, in_mask in ((features.PERSON, 'FGmasks', lambda red: red >= 100),
                                     (features.CHAIR, 'ChairMasks', lambda red: red < 32)):
      with readers.Video(epath.Path(DUMMY / 'S1/Seq1' / folder / 'video_0.avi')) as video:
        frame = dict(video.frames(lambda i: i == 5, stop=6))[5]
      full = np.where(in_mask(frame[..., :1]), 255, 0).repeat(3, -1).astype(np.uint8)
      expected = crops.cut(full, centre, side * crops.STORE_MARGIN, 384)[0][..., 0]
      np.testing.assert_array_equal(ex['mask'][..., channel], expected)
      self.assertGreater((expected > 127).sum(), 100)  # the fake person and chair are there
    # The fake person stands where its skeleton is drawn: the pelvis is inside the mask.
    u, v = ex['joints_2d'][0].astype(int)
    self.assertEqual(ex['mask'][v, u, features.PERSON], 255)
    self.assertFalse(ex['mask'][..., 2].any())

  def test_test_split_has_no_masks(self):
    for ex in self.test.values():
      self.assertFalse(ex['has_mask'])
      self.assertEqual(ex['mask'].shape, (1, 1, 3))

  def test_test_frames_activities_and_scenes(self):
    expected = {(f'TS{i}', t) for i in range(1, 7) for t in (0, 1, 3)} - {('TS3', 1)}
    self.assertEqual(set(self.test), expected)
    for (sequence, frame), ex in self.test.items():
      with h5py.File(DUMMY / 'mpi_inf_3dhp_test_set' / sequence / 'annot_data.mat') as h5:
        activity = int(h5['activity_annotation'][frame, 0])
        univ = h5['univ_annot3'][frame, 0][skeleton.MPI_INF_3DHP_17_TO_H36M]
        annot2 = h5['annot2'][frame, 0][skeleton.MPI_INF_3DHP_17_TO_H36M]
      self.assertEqual(ex['action'].decode(), mpi_inf_3dhp.ACTIVITIES[activity - 1])
      self.assertEqual(ex['scene'].decode(), mpi_inf_3dhp.TEST_SCENES[sequence])
      self.assertEqual(ex['subject'].decode(), sequence)
      np.testing.assert_allclose(ex['joints_3d'], univ, atol=1e-3)
      self._assert_2d_in_crop(ex, annot2)

  def test_test_intrinsics_from_calib(self):
    ex = self.test[('TS5', 0)]
    calibration = readers.read_tc_calibration(epath.Path(
        DUMMY / mpi_inf_3dhp.CALIBRATION_DIR / 'ts5-6cameras.calib'))
    frame = calibration.intrinsics(64, 36)
    with h5py.File(DUMMY / 'mpi_inf_3dhp_test_set/TS5/annot_data.mat') as h5:
      annot2 = h5['annot2'][0, 0][skeleton.MPI_INF_3DHP_17_TO_H36M]
    centre, side = crops.tight_box(annot2, np.ones(17, bool))
    matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, 384)
    focal, principal = geometry.transform_intrinsics(matrix, frame.focal, frame.principal)
    np.testing.assert_allclose(ex['intrinsics']['focal'], focal, rtol=1e-5)
    np.testing.assert_allclose(ex['intrinsics']['principal'], principal, rtol=1e-5)

  def _assert_2d_in_crop(self, ex, frame_2d):
    centre, side = crops.tight_box(frame_2d, np.ones(17, bool))
    matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, 384)
    np.testing.assert_allclose(ex['joints_2d'], geometry.apply_affine(matrix, frame_2d),
                               atol=1e-3)
    self.assertTrue(ex['joints_2d_valid'].all() and ex['has_3d'] and ex['has_intrinsics'])


class ReadersTest(tfds.testing.TestCase):

  def test_video_reports_a_lost_frame_and_keeps_the_indices(self):
    path = epath.Path(DUMMY / 'S1/Seq1/imageSequence/video_0.avi')
    with readers.Video(path) as video:
      frames = dict(video.frames(lambda i: True, stop=100))
    self.assertEqual(sorted(frames), list(range(12)))
    self.assertIsNone(frames[10])
    self.assertEqual(frames[11].shape, (48, 48, 3))
    # The blue channel of the fake frames encodes their index (30 per frame, mod 256).
    self.assertAlmostEqual(frames[11][..., 2].mean(), 30 * 11 % 256, delta=8)
    self.assertEqual(video.length, 12)

  def test_video_stops_before_stop(self):
    path = epath.Path(DUMMY / 'S1/Seq1/imageSequence/video_0.avi')
    with readers.Video(path) as video:
      self.assertEqual([i for i, _ in video.frames(lambda i: i % 2 == 0, stop=5)],
                       [0, 2, 4])

  def test_training_calibration(self):
    cameras = readers.read_3dhp_calibration(
        epath.Path(DUMMY / 'S2/Seq1/camera.calibration'))
    self.assertEqual(sorted(cameras), list(range(14)))
    self.assertEqual(cameras[3].focal.shape, (2,))

  def test_real_test_set_calibration(self):
    if not (REAL / 'mpi_inf_3dhp').is_dir():
      self.skipTest(f'{REAL / "mpi_inf_3dhp"} absent: the real calibration files are not '
                    'available here')
    # The focal lengths of the official perspective-correction snippet.
    for name, (width, height), focal in (
        ('ts1-4cameras.calib', (2048, 2048), 2048 / 10 * 7.320339203),
        ('ts5-6cameras.calib', (1920, 1080), 1920 / 10 * 8.770747185)):
      calibration = readers.read_tc_calibration(epath.Path(REAL / 'mpi_inf_3dhp' / name))
      intrinsics = calibration.intrinsics(width, height)
      np.testing.assert_allclose(intrinsics.focal, focal, rtol=0.01)
      np.testing.assert_allclose(intrinsics.principal, (width / 2, height / 2), atol=30)


class BadDataTest(builder_testing.BrokenReleaseTest):
  """Errors name the file and what was expected."""
  BUILDER, DUMMY = mpi_inf_3dhp.Builder, DUMMY
  # One camera keeps the builds that fail in the test split short.
  CONFIG = mpi_inf_3dhp.MpiInf3dhpConfig(name='camera_4', cameras=(4,))

  def _assert_build_fails(self, error, regex):
    with self.assertRaisesRegex(error, regex):
      self.build()

  def test_missing_video(self):
    (self.manual_dir / 'S5/Seq2/imageSequence/video_4.avi').unlink()
    self._assert_build_fails(FileNotFoundError,
                             'S5/Seq2/imageSequence/video_4.avi not found: expected the '
                             'video of camera 4')

  def test_missing_mask_video(self):
    (self.manual_dir / 'S3/Seq1/ChairMasks/video_4.avi').unlink()
    self._assert_build_fails(FileNotFoundError,
                             'S3/Seq1/ChairMasks/video_4.avi not found: expected the '
                             'ChairMasks video of camera 4 .*download_masks=1')

  def test_missing_calib(self):
    (self.manual_dir / mpi_inf_3dhp.CALIBRATION_DIR / 'ts5-6cameras.calib').unlink()
    self._assert_build_fails(FileNotFoundError, 'ts5-6cameras.calib not found')

  def test_annotation_cell_of_wrong_shape(self):
    path = self.manual_dir / 'S1/Seq1/annot.mat'
    annot = scipy.io.loadmat(path)
    annot['annot3'][4, 0] = annot['annot3'][4, 0][:, :60]
    scipy.io.savemat(path, {k: v for k, v in annot.items() if not k.startswith('__')})
    self._assert_build_fails(ValueError, r'S1/Seq1/annot.mat: annot3\{5\} has shape '
                             r'\(13, 60\), expected \(N, 84\)')

  def test_test_annotation_of_wrong_shape(self):
    path = self.manual_dir / 'mpi_inf_3dhp_test_set/TS1/annot_data.mat'
    with h5py.File(path, 'r+') as h5:
      univ = h5['univ_annot3'][:, :, :14]
      del h5['univ_annot3']
      h5['univ_annot3'] = univ
    self._assert_build_fails(ValueError, r'TS1/annot_data.mat: univ_annot3 has shape '
                             r'\(4, 1, 14, 3\), expected \(4, 1, 17, 3\)')


if __name__ == '__main__':
  tfds.testing.test_main()
