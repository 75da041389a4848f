"""The h36m builder's `preprocessed` config on real Human3.6M frames and labels: the
sample in <repo>/../shared/fixtures/real/h36m (4 training frames of S1, S5, S7, S8)."""

import json
import pathlib

import numpy as np
import pytest

from jaxpose import geometry
from jaxpose.data import crops
from jaxpose.data import tfds_io

REAL = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'fixtures' / 'real' / 'h36m'
IMAGE_SIZE = 384

pytestmark = pytest.mark.skipif(
    not REAL.is_dir(), reason=f'{REAL} absent: the real Human3.6M sample is not available')


@pytest.fixture(scope='module')
def built(tmp_path_factory):
  """(the built train examples by image name, the fixture's annotations, its cameras)."""
  builder = tfds_io.get_builder('h36m', str(tmp_path_factory.mktemp('data')),
                                'preprocessed')
  tfds_io.ensure_built(builder, manual_dir=str(REAL))
  assert list(builder.info.splits) == ['train']  # The sample has no test subject.
  with np.load(REAL / 'annotations.npz') as npz:
    annotations = {k: npz[k] for k in ('imgname', 'part', 'S')}
  names = [str(n) for n in annotations['imgname']]
  examples = {}
  for ex in builder.as_data_source('train'):
    subject = ex['subject'].decode()
    stem = f'{subject}_{ex["sequence"].decode().replace(" ", "_")}.{ex["camera"].decode()}'
    examples[f'{subject}/{stem}/{stem}_{ex["frame"] + 1:06d}.jpg'] = ex
  assert sorted(examples) == sorted(names)
  cameras = json.loads((REAL / 'cameras.json').read_text())
  return examples, annotations, cameras


def _records(built):
  examples, annotations, cameras = built
  for i, name in enumerate(annotations['imgname']):
    yield examples[str(name)], annotations['part'][i], annotations['S'][i], cameras


def test_3d_is_s_in_mm(built):
  for ex, _, s, _ in _records(built):
    np.testing.assert_allclose(ex['joints_3d'], s[:, :3] * 1000.0, atol=1e-3)
    assert ex['has_3d']


def test_2d_is_part_moved_into_the_crop(built):
  for ex, part, _, _ in _records(built):
    valid = part[:, 2] > 0
    centre, side = crops.tight_box(part[:, :2], valid)
    matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, IMAGE_SIZE)
    expected = geometry.apply_affine(matrix, part[:, :2])
    assert np.abs(ex['joints_2d'] - expected).max() < 0.5
    np.testing.assert_array_equal(ex['joints_2d_valid'], valid)
    assert ex['image'].shape == (IMAGE_SIZE, IMAGE_SIZE, 3)


def test_intrinsics_are_the_camera_moved_into_the_crop(built):
  for ex, part, _, cameras in _records(built):
    camera = cameras[f'{ex["subject"].decode()}_{ex["camera"].decode()}']
    centre, side = crops.tight_box(part[:, :2], part[:, 2] > 0)
    scale = IMAGE_SIZE / (side * crops.STORE_MARGIN)
    np.testing.assert_allclose(ex['intrinsics']['focal'], np.ravel(camera['f']) * scale,
                               rtol=1e-5)
    np.testing.assert_allclose(
        ex['intrinsics']['principal'],
        (np.ravel(camera['c']) - centre) * scale + IMAGE_SIZE / 2, atol=1e-3)
    assert ex['has_intrinsics']


def test_projection_lands_on_the_2d_labels(built):
  for ex, _, _, _ in _records(built):
    projected = geometry.project(ex['joints_3d'], ex['intrinsics']['focal'],
                                 ex['intrinsics']['principal'])
    assert np.linalg.norm(projected - ex['joints_2d'], axis=-1).max() < 3.0


def test_metadata(built):
  examples, _, _ = built
  ex = examples['S8/S8_WalkDog_1.55011271/S8_WalkDog_1.55011271_000026.jpg']
  assert ex['subject'] == b'S8'
  assert ex['action'] == b'WalkDog'
  assert ex['sequence'] == b'WalkDog 1'
  assert ex['camera'] == b'55011271'
  assert ex['frame'] == 25
  assert ex['scene'] == b'studio'
  assert examples['S5/S5_SittingDown.54138969/S5_SittingDown.54138969_002061.jpg'][
      'action'] == b'SittingDown'
