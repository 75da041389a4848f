"""Cameras, crops and perspective correction, on real Human3.6M frames where it matters."""

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import crops

REAL = Path(__file__).resolve().parents[1].parent / 'shared' / 'fixtures' / 'real'
H36M = REAL / 'h36m'


def _h36m_samples():
  """The real Human3.6M frames: 3D in mm, 2D labels and the frame's camera intrinsics."""
  if not (H36M / 'annotations.npz').exists():
    pytest.skip(f'real Human3.6M fixtures not found at {H36M} (see the project notes)')
  annotations = np.load(H36M / 'annotations.npz')
  cameras = json.loads((H36M / 'cameras.json').read_text())
  samples = []
  for i, name in enumerate(annotations['imgname']):
    folder = name.split('/')[1]  # '<subject>_<action>.<camera id>'
    camera = cameras[f'{folder.split("_")[0]}_{folder.rsplit(".", 1)[1]}']
    samples.append(dict(
        image_path=H36M / 'images' / name,
        joints_3d=annotations['S'][i, :, :3] * 1000.0,
        joints_2d=annotations['part'][i, :, :2], visible=annotations['part'][i, :, 2] > 0,
        focal=np.ravel(camera['f']), principal=np.ravel(camera['c'])))
  return samples


@pytest.fixture(scope='module', name='samples')
def _samples():
  return _h36m_samples()


def test_projection_of_real_poses_lands_on_their_2d_labels(samples):
  for s in samples:
    projected = geometry.project(s['joints_3d'], s['focal'], s['principal'])
    # The README's bound is 2.5 px: what is left is the lens distortion the pinhole ignores.
    assert np.abs(projected - s['joints_2d']).max() < 3.0, s['image_path'].name


def test_projection_broadcasts_over_a_batch(samples):
  poses = np.stack([s['joints_3d'] for s in samples])
  focal, principal = (np.stack([s[k] for s in samples]) for k in ('focal', 'principal'))
  batched = geometry.project(poses, focal, principal)
  for s, projected in zip(samples, batched):
    np.testing.assert_allclose(projected, geometry.project(s['joints_3d'], s['focal'],
                                                           s['principal']))


def test_person_crop_intrinsics_project_the_3d_onto_the_crop_labels(samples):
  for s in samples:
    image = np.asarray(Image.open(s['image_path']).convert('RGB'))
    crop = crops.person_crop(image, s['joints_2d'], s['visible'], 256, s['focal'],
                             s['principal'])
    assert crop['image'].shape == (256, 256, 3)
    projected = geometry.project(s['joints_3d'], crop['focal'].astype(np.float64),
                                 crop['principal'].astype(np.float64))
    assert np.abs(projected - crop['joints_2d']).max() < 3.0, s['image_path'].name
    # The tight box is the central 1 / STORE_MARGIN of the crop.
    inner = 256 / crops.STORE_MARGIN
    assert np.all(np.abs(crop['joints_2d'] - 128.0) <= inner / 2 + 1e-3)


def test_cut_samples_the_frame_at_pixel_centres(samples):
  """Each crop pixel is the bilinear sample of the frame at its centre's preimage."""
  s = samples[0]
  image = np.asarray(Image.open(s['image_path']).convert('RGB'))
  crop, matrix = crops.cut(image, centre=(480.3, 470.8), side=333.0, out_size=128)
  rows, cols = np.mgrid[:128, :128]
  source = geometry.apply_affine(np.linalg.inv(matrix),
                                 np.stack([cols + 0.5, rows + 0.5], -1).reshape(-1, 2))
  # Pixel (i, j) of the frame is centred on (j + 0.5, i + 0.5): index = coordinate - 0.5.
  expected = np.stack([ndimage.map_coordinates(image[..., c].astype(np.float64),
                                               [source[:, 1] - 0.5, source[:, 0] - 0.5],
                                               order=1) for c in range(3)], -1)
  np.testing.assert_allclose(crop.reshape(-1, 3), expected, atol=1.0 + 1e-6)


def test_cut_moves_a_single_pixel_where_the_matrix_says():
  image = np.zeros((64, 64, 3), np.uint8)
  image[20, 30] = 255
  crop, matrix = crops.cut(image, centre=(32.0, 24.0), side=32.0, out_size=32)
  np.testing.assert_allclose(geometry.apply_affine(matrix, np.array([[30.5, 20.5]])),
                             [[14.5, 12.5]])
  assert crop[12, 14, 0] == 255 and crop.sum() == 3 * 255


def test_crop_rotation_looks_through_the_crop_centre(samples):
  for s in samples:
    centre, _ = crops.tight_box(s['joints_2d'], s['visible'])
    rotation = geometry.crop_rotation(s['focal'], s['principal'], centre)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rotation) == pytest.approx(1.0)
    ray = np.append((centre - s['principal']) / s['focal'], 1.0)
    np.testing.assert_allclose(rotation @ ray / np.linalg.norm(ray), [0.0, 0.0, 1.0],
                               atol=1e-12)


def test_crop_frame_round_trip_on_real_poses(samples):
  for s in samples:
    pose = geometry.root_centre(s['joints_3d'])
    centre, _ = crops.tight_box(s['joints_2d'], s['visible'])
    rotation = geometry.crop_rotation(s['focal'], s['principal'], centre)
    in_crop = geometry.to_crop_frame(pose, rotation)
    assert np.abs(in_crop - pose).max() > 1.0  # Off axis, so the rotation does something.
    np.testing.assert_allclose(geometry.correct_perspective(in_crop, rotation), pose,
                               atol=1e-6)


def test_crop_through_the_root_puts_the_root_on_the_virtual_axis(samples):
  s = samples[1]
  root_pixel = geometry.project(s['joints_3d'], s['focal'], s['principal'])[skeleton.ROOT]
  rotation = geometry.crop_rotation(s['focal'], s['principal'], root_pixel)
  root = geometry.to_crop_frame(s['joints_3d'], rotation)[skeleton.ROOT]
  np.testing.assert_allclose(root[:2], 0.0, atol=1e-9)
  assert root[2] == pytest.approx(np.linalg.norm(s['joints_3d'][skeleton.ROOT]))


def test_on_axis_crop_is_the_identity_and_horizontal_offsets_do_not_roll():
  focal, principal = np.array([1145.0, 1143.8]), np.array([512.5, 515.4])
  np.testing.assert_allclose(geometry.crop_rotation(focal, principal, principal), np.eye(3),
                             atol=1e-15)
  rotation = geometry.crop_rotation(focal, principal, principal + [300.0, 0.0])
  np.testing.assert_allclose(rotation[1], [0.0, 1.0, 0.0], atol=1e-15)  # About y only.


def test_crop_rotation_broadcasts_over_a_batch():
  rng = np.random.default_rng(0)
  focal = rng.uniform(900, 1200, (4, 2))
  principal = rng.uniform(400, 600, (4, 2))
  centres = rng.uniform(0, 1000, (4, 2))
  batched = geometry.crop_rotation(focal, principal, centres)
  for i in range(4):
    np.testing.assert_allclose(batched[i],
                               geometry.crop_rotation(focal[i], principal[i], centres[i]))
  poses = rng.normal(scale=300.0, size=(4, 17, 3))
  np.testing.assert_allclose(geometry.correct_perspective(
      geometry.to_crop_frame(poses, batched), batched), poses, atol=1e-9)


def test_affine_round_trip():
  rng = np.random.default_rng(1)
  points = rng.uniform(0, 500, (17, 2))
  for _ in range(5):
    matrix = geometry.affine_matrix(scale=rng.uniform(0.3, 3.0), rotation=rng.uniform(-3, 3),
                                    flip=bool(rng.integers(2)), centre=rng.uniform(0, 500, 2),
                                    target=rng.uniform(0, 256, 2))
    there = geometry.apply_affine(matrix, points)
    np.testing.assert_allclose(geometry.apply_affine(np.linalg.inv(matrix), there), points,
                               atol=1e-9)


def test_affine_matrix_maps_centre_to_target_and_rotates_clockwise_on_screen():
  matrix = geometry.affine_matrix(scale=2.0, rotation=np.pi / 2, centre=(10.0, 20.0),
                                  target=(100.5, 50.5))
  # +x turns into +y (down on screen): clockwise, as the docstring says.
  np.testing.assert_allclose(geometry.apply_affine(matrix, np.array([[10.0, 20.0], [11.0, 20.0]])),
                             [[100.5, 50.5], [100.5, 52.5]], atol=1e-12)


def test_flip_mirrors_about_the_centre():
  centre = np.array([120.0, 80.0])
  matrix = geometry.affine_matrix(flip=True, centre=centre, target=centre)
  points = centre + np.array([[7.0, -3.0], [-20.0, 5.0], [0.0, 9.0]])
  expected = centre + np.array([[-7.0, -3.0], [20.0, 5.0], [0.0, 9.0]])
  np.testing.assert_allclose(geometry.apply_affine(matrix, points), expected)
  np.testing.assert_allclose(matrix @ matrix, np.eye(3))


def test_affine_matrix_with_an_integer_scale_keeps_a_fractional_target():
  matrix = geometry.affine_matrix(scale=2, target=(10.5, 20.5))
  np.testing.assert_allclose(geometry.apply_affine(matrix, np.zeros((1, 2))), [[10.5, 20.5]])


def test_apply_affine_broadcasts_over_a_batch():
  rng = np.random.default_rng(2)
  matrices = np.stack([geometry.affine_matrix(scale=s, rotation=r, centre=(5.0, 7.0))
                       for s, r in rng.uniform(0.5, 2.0, (3, 2))])
  points = rng.uniform(0, 100, (3, 17, 2))
  batched = geometry.apply_affine(matrices, points)
  for i in range(3):
    np.testing.assert_allclose(batched[i], geometry.apply_affine(matrices[i], points[i]))


def test_crop_intrinsics_follow_the_crop_matrix():
  rng = np.random.default_rng(3)
  points = rng.normal(scale=400.0, size=(17, 3)) + [0.0, 0.0, 5000.0]
  focal, principal = np.array([1100.0, 1090.0]), np.array([500.0, 510.0])
  matrix = geometry.crop_matrix(centre=(430.0, 380.0), size=700.0, out_size=256)
  crop_focal, crop_principal = geometry.transform_intrinsics(matrix, focal, principal)
  np.testing.assert_allclose(
      geometry.project(points, crop_focal, crop_principal),
      geometry.apply_affine(matrix, geometry.project(points, focal, principal)), atol=1e-9)


def test_weak_perspective_is_perspective_of_a_flat_pose(samples):
  s = samples[2]
  depth = s['joints_3d'][skeleton.ROOT, 2]
  flat = s['joints_3d'].copy()
  flat[:, 2] = depth  # Every joint at the root's depth.
  focal = np.full(2, s['focal'][0])
  root_pixel = geometry.project(flat, focal, s['principal'])[skeleton.ROOT]
  weak = geometry.weak_perspective(geometry.root_centre(flat), np.asarray(focal[0] / depth),
                                   root_pixel)
  np.testing.assert_allclose(weak, geometry.project(flat, focal, s['principal']), atol=1e-9)
  assert geometry.unproject_depth(focal[0] / depth, focal[0]) == pytest.approx(depth)


def test_root_centre(samples):
  poses = np.stack([s['joints_3d'] for s in samples])
  centred = geometry.root_centre(poses)
  np.testing.assert_array_equal(centred[:, skeleton.ROOT], 0.0)
  np.testing.assert_allclose(skeleton.bone_vectors(centred), skeleton.bone_vectors(poses),
                             atol=1e-9)


def test_shared_functions_accept_jax_arrays():
  rng = np.random.default_rng(4)
  points = rng.normal(scale=300.0, size=(2, 17, 3)) + [0.0, 0.0, 4000.0]
  focal, principal = rng.uniform(900, 1100, (2, 2)), rng.uniform(400, 600, (2, 2))
  scale = rng.uniform(0.1, 0.3, 2)
  matrix = geometry.affine_matrix(scale=1.5, rotation=0.3, centre=(5.0, 5.0))
  cases = [
      (geometry.root_centre, (points,)),
      (geometry.project, (points, focal, principal)),
      (geometry.weak_perspective, (points, scale, principal)),
      (geometry.apply_affine, (matrix, points[..., :2])),
  ]
  for function, args in cases:
    np.testing.assert_allclose(np.asarray(function(*map(jnp.asarray, args))), function(*args),
                               rtol=1e-5, atol=1e-3)


def test_batched_crop_matrices_are_crop_matrix_and_from_crop_inverts_them():
  centres = np.array([[430.0, 380.0], [-12.5, 40.0], [1000.0, 2.0]])
  sides = np.array([700.0, 33.0, 1.5])
  matrices = geometry.crop_matrices(centres, sides, 256)
  for centre, side, matrix in zip(centres, sides, matrices):
    np.testing.assert_allclose(matrix, geometry.crop_matrix(centre, side, 256), rtol=1e-12,
                               atol=1e-9)
  np.testing.assert_allclose(geometry.crop_matrices(jnp.asarray(centres), jnp.asarray(sides),
                                                    256), matrices, rtol=1e-5)
  points = np.random.default_rng(0).uniform(-50, 300, (3, 17, 2))
  np.testing.assert_allclose(geometry.from_crop(matrices, geometry.apply_affine(matrices, points)),
                             points, atol=1e-9)
