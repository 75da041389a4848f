"""Prediction on photos: the library, the command line, and their errors.

A smoke checkpoint is trained once per test process (conftest's ``trained_smoke_workdir``,
which the other inference tests share); the photos are the real MPII and Human3.6M samples
of ``../shared/fixtures/real`` (``real_photos``, skipped where absent).
"""

import io
import json
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from jaxpose import checkpoint
from jaxpose import fileio
from jaxpose import geometry
from jaxpose import parallel
from jaxpose import predict
from jaxpose import skeleton
from jaxpose import train
from jaxpose.data import crops
from jaxpose.data import synthetic
from jaxpose.inference import boxes as box_lib
from jaxpose.inference import crop
from jaxpose.inference import intrinsics
from jaxpose.inference import output
from jaxpose.inference import predictor as predictor_lib
from conftest import load_config
from conftest import run_main

J = skeleton.NUM_JOINTS


def _check(prediction, width, height):
  """Shapes, finiteness and the geometry that ties the outputs together."""
  assert prediction['joint_names'] == skeleton.JOINT_NAMES
  assert prediction['image_size'] == (width, height)
  pose_3d, pose_2d, root = prediction['pose_3d'], prediction['pose_2d'], prediction['root']
  assert pose_3d.shape == (J, 3) and pose_2d.shape == (J, 2) and root.shape == (3,)
  assert prediction['confidence'].shape == (J,)
  for value in (pose_3d, pose_2d, root, prediction['confidence'], prediction['crop_box'],
                prediction['crop_matrix'], *prediction['camera'].values(),
                prediction['intrinsics']['focal'], prediction['intrinsics']['principal']):
    assert np.all(np.isfinite(value))
  np.testing.assert_allclose(pose_3d[skeleton.ROOT], 0.0, atol=1e-3)
  # Near the image: an untrained network's 2D stays inside its crop, which overlaps it.
  assert np.all(pose_2d > -0.5 * np.array([width, height]))
  assert np.all(pose_2d < 1.5 * np.array([width, height]))
  camera, intrinsics = prediction['camera'], prediction['intrinsics']
  assert root[2] > 0 and camera['scale'] > 0
  # The root projects where the weak-perspective camera puts it, …
  focal = np.full(2, intrinsics['focal'])
  np.testing.assert_allclose(geometry.project(root[None], focal, intrinsics['principal'])[0],
                             camera['principal'], atol=1e-6)
  # … the crop's camera is the image's moved through the crop matrix, …
  matrix = prediction['crop_matrix']
  np.testing.assert_allclose(camera['crop_scale'], camera['scale'] * matrix[0, 0], rtol=1e-9)
  np.testing.assert_allclose(geometry.apply_affine(matrix, camera['principal'][None])[0],
                             camera['crop_principal'], atol=1e-6)
  # … and the crop box is what the matrix maps onto the network's input.
  x, y, side, side_y = prediction['crop_box']
  assert side == side_y
  corners = np.array([[x, y], [x + side, y + side]])
  np.testing.assert_allclose(geometry.apply_affine(matrix, corners),
                             [[0, 0], [camera['crop_size']] * 2], atol=1e-6)


@pytest.mark.parametrize('virtual_camera', [True, False])
def test_exact_network_outputs_give_back_the_camera_frame_pose(virtual_camera):
  """What a perfect network outputs for a synthetic person, turned back into the camera
  frame, is the person's own pose and position."""
  sample = synthetic.render_sample('wild_test', 3, image_size=256)
  lo, hi = sample.joints_2d.min(0), sample.joints_2d.max(0)
  centre, side = crop.person_region((*lo, *(hi - lo)), (256, 256), 'sample')
  size = 64
  matrix = geometry.crop_matrix(centre, side, size)
  focal, principal = geometry.transform_intrinsics(matrix, sample.focal, sample.principal)
  rotation = (geometry.virtual_camera_rotation(focal[None], principal[None], np.ones(1, bool),
                                               size)[0] if virtual_camera else np.eye(3))
  root = sample.joints_3d[skeleton.ROOT]
  crop_scale = focal[0] / (rotation @ root)[2]
  crop_principal = geometry.project(root[None], focal, principal)[0]
  pose, got_root, root_pixel = geometry.to_camera(
      geometry.to_crop_frame(geometry.root_centre(sample.joints_3d), rotation), crop_scale,
      crop_principal, matrix, sample.focal[0], sample.principal, size, virtual_camera)
  np.testing.assert_allclose(pose, geometry.root_centre(sample.joints_3d), atol=1e-6)
  np.testing.assert_allclose(got_root, root, rtol=1e-9)
  np.testing.assert_allclose(root_pixel, sample.joints_2d[skeleton.ROOT], atol=1e-6)


def test_real_photos_with_and_without_a_box(predictor, real_photos):
  photos = real_photos
  paths, boxes, focals = zip(*photos)
  with_box = predictor.predict_many(paths, boxes, focals)
  # Finding the person runs the network twice; a few photos of both datasets suffice.
  without = predictor.predict_many(paths[::3], focal=focals[::3])
  for (path, box, focal), prediction in zip(photos, with_box):
    width, height = Image.open(path).size
    _check(prediction, width, height)
    np.testing.assert_array_equal(prediction['box'], box)
    x, y, w, h = box
    side = crops.BOX_PADDING * max(w, h)
    np.testing.assert_allclose(prediction['crop_box'],
                               [x + w / 2 - side / 2, y + h / 2 - side / 2, side, side])
    assert prediction['intrinsics']['focal_assumed'] == (focal is None)
    assert prediction['intrinsics']['focal_source'] == ('default' if focal is None else 'focal')
    if focal is not None:
      assert prediction['intrinsics']['focal'] == focal
  for path, prediction in zip(paths[::3], without):
    width, height = Image.open(path).size
    _check(prediction, width, height)
    assert prediction['box'] is None
  mpii = without[0]
  assert mpii['intrinsics']['focal'] == pytest.approx(intrinsics.default_focal(1280))


def test_batched_equals_one_by_one(predictor, real_photos):
  photos = real_photos[2:5]
  images = [np.asarray(Image.open(path).convert('RGB')) for path, _, _ in photos]
  boxes = [photos[0][1], None, photos[2][1]]
  batched = predictor.predict_many(images, boxes)
  for image, box, together in zip(images, boxes, batched):
    alone = predictor.predict(image, box)
    for key in ('pose_3d', 'pose_2d', 'root', 'crop_box'):
      np.testing.assert_allclose(together[key], alone[key], rtol=1e-4, atol=1e-3)


def test_command_line_writes_json_and_picture(trained_smoke_workdir, real_photos, tmp_path):
  (first, box, _), (second, _, _) = real_photos[:2]
  argv = [f'--workdir={trained_smoke_workdir}', f'--image={first}',
          f'--image={second}', f'--bbox={",".join(map(str, box))}', '--bbox=10,20,300,400',
          '--focal=1000', f'--out={tmp_path}']
  run_main(predict, argv)
  for path in (first, second):
    width, height = Image.open(path).size
    data = json.loads((tmp_path / f'{path.stem}.json').read_text())
    assert set(data) == {'joint_names', 'pose_3d', 'pose_2d', 'confidence', 'root', 'box',
                         'crop_box', 'crop_matrix', 'camera', 'intrinsics', 'image_size',
                         'units', 'image', 'checkpoint'}
    assert data['image'] == str(path) and data['checkpoint']['step'] == 2
    assert data['intrinsics'] == {'focal': 1000.0, 'principal': [width / 2, height / 2],
                                  'focal_source': 'focal', 'focal_assumed': False}
    assert np.all(np.isfinite(data['pose_3d'])) and np.shape(data['pose_3d']) == (J, 3)
    picture = Image.open(tmp_path / f'{path.stem}.png')
    h = output.PICTURE_HEIGHT
    assert picture.size == (round(width * h / height) + 2 * h, h)
  assert data['box'] == [10, 20, 300, 400]


def test_bad_inputs_are_named(trained_smoke_workdir, predictor, tmp_path):
  with pytest.raises(FileNotFoundError, match=f'no checkpoint in {tmp_path}'):
    predictor_lib.Predictor(str(tmp_path))
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(FileNotFoundError, match=f'no checkpoint in {tmp_path}'):
    predictor_lib.Predictor(str(tmp_path))
  with pytest.raises(FileNotFoundError, match='no checkpoint for step 5 in .*steps there: '
                                              r'\[2\]'):
    predictor_lib.Predictor(trained_smoke_workdir, step=5)

  diverged = tmp_path / 'diverged'
  shutil.copytree(trained_smoke_workdir, diverged)
  ckpt = checkpoint.Checkpointer(str(diverged))
  fresh = train.setup(load_config('synthetic'), parallel.make_mesh(jax.devices()[:1])).state
  state, meta = ckpt.restore(fresh)
  ckpt.save(3, state.replace(params=jax.tree.map(lambda x: x * np.nan, state.params)), meta)
  ckpt.close()
  with pytest.raises(ValueError, match=f'checkpoint of step 3 in {diverged}/checkpoints holds '
                                       r'non-finite parameters .*steps there: \[2, 3\]'):
    predictor_lib.Predictor(str(diverged))

  corrupt = tmp_path / 'corrupt.jpg'
  corrupt.write_bytes(b'\xff\xd8 not really a JPEG')
  with pytest.raises(ValueError, match='cannot read image .*corrupt.jpg'):
    predictor.predict(corrupt)
  with pytest.raises(FileNotFoundError, match='image .*missing.png does not exist'):
    predictor.predict(tmp_path / 'missing.png')
  with pytest.raises(ValueError, match=r'\(H, W, 3\) uint8 array, got an array of shape '
                                       r'\(8, 8\)'):
    predictor.predict(np.zeros((8, 8), np.uint8))

  photo = tmp_path / 'photo.png'
  Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(photo)
  with pytest.raises(ValueError, match=r'box \(x, y, w, h\) = \(50.0, 0.0, 10.0, 10.0\) of '
                                       r'.*photo.png lies outside the image of size 40x30'):
    predictor.predict(photo, box=(50, 0, 10, 10))
  with pytest.raises(ValueError, match=r'\(0.0, 0.0, 1000000000.0, 1000000000.0\) of .*photo.png '
                                       r'is larger than 4 times the image of size 40x30 .*'
                                       r'expected w, h <= 160 pixels'):
    predictor.predict(photo, box=(0, 0, 1e9, 1e9))
  with pytest.raises(ValueError, match='w, h > 0'):
    predictor.predict(photo, box=(0, 0, 0, 10))
  with pytest.raises(ValueError, match='focal of .*photo.png must be a positive number'):
    predictor.predict(photo, focal=-1.0)
  with pytest.raises(ValueError, match="--bbox must be four numbers x,y,w,h, got '1,2,3'"):
    box_lib.parse_box('1,2,3')


def test_boxes_must_overlap_the_image_and_be_at_most_4_times_its_size():
  size = (40, 30)
  # Past the border (a person cut off by it) and up to 4 times the longer side: accepted.
  np.testing.assert_array_equal(box_lib.check_box((-100, -5, 160, 10), size, 'b'),
                                [-100, -5, 160, 10])
  for box, problem in [((0, 0, 160.5, 10), 'is larger than 4 times'),
                       ((0, 0, 10, 1e9), 'is larger than 4 times'),
                       ((40, 0, 10, 10), 'lies outside'), ((-10, 5, 10, 10), 'lies outside'),
                       ((0, 0, np.inf, 10), 'four finite numbers')]:
    with pytest.raises(ValueError, match=problem):
      box_lib.check_box(box, size, 'b')


def test_command_line_rejects_a_huge_box_before_restoring(tmp_path):
  """The box is checked before the checkpoint is read: ``tmp_path`` has none, and the error
  names the flag rather than the missing checkpoint."""
  photo = tmp_path / 'photo.png'
  Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(photo)
  with pytest.raises(ValueError, match=r'of --bbox=0,0,1e9,1e9 \(image .*photo.png\) is larger '
                                       r'than 4 times the image of size 40x30'):
    run_main(predict, [f'--workdir={tmp_path}', f'--image={photo}', '--bbox=0,0,1e9,1e9',
                       f'--out={tmp_path / "out"}'])
  boxes = tmp_path / 'boxes.json'
  boxes.write_text(json.dumps({'photo.png': [[0, 0, 10, 10], [50, 0, 10, 10]]}))
  with pytest.raises(ValueError, match=r'of --boxes=.*boxes.json, box 1 of image .*photo.png '
                                       r'lies outside the image'):
    run_main(predict, [f'--workdir={tmp_path}', f'--image={photo}', f'--boxes={boxes}',
                       f'--out={tmp_path / "out"}'])
  assert not (tmp_path / 'out').exists()


def test_outputs_in_a_non_local_folder(predictor, tmp_path):
  """TensorFlow's ram:// stands in for gs:// (both go through tf.io.gfile)."""
  image = np.zeros((48, 64, 3), np.uint8)
  prediction = predictor.predict(image, box=(10, 5, 30, 40))
  out = f'ram://{tmp_path}/out'
  json_path, png_path = output.write(prediction, image, out, 'photo', {'image': 'photo.png'})
  assert (json_path, png_path) == (f'{out}/photo.json', f'{out}/photo.png')
  saved = json.loads(fileio.read_text(json_path))
  np.testing.assert_allclose(saved['pose_3d'], prediction['pose_3d'], rtol=1e-6)
  assert saved['image'] == 'photo.png'
  with fileio.gfile.GFile(png_path, 'rb') as f:
    picture = Image.open(io.BytesIO(f.read()))
  h = output.PICTURE_HEIGHT
  assert picture.size == (round(64 * h / 48) + 2 * h, h)
  with pytest.raises(ValueError, match=r"--out=ram://x: a video's outputs are written by "
                                       'OpenCV, which needs a local folder'):
    run_main(predict, ['--workdir=unused', '--video=v.mp4', '--out=ram://x'])
