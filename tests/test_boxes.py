"""Several people per photo (--boxes files in both layouts) and the camera's focal length
from --fov and EXIF, on the real MPII photos of ../shared/fixtures/real."""

import json
import math

import numpy as np
import pytest
from PIL import ExifTags, Image

from jaxpose import predict
from jaxpose.inference import boxes
from jaxpose.inference import intrinsics as intrinsics_lib
from conftest import run_main


def _write(path, data):
  path.write_text(json.dumps(data))
  return path


def test_layouts_and_their_errors(tmp_path):
  own = _write(tmp_path / 'own.json', {'a.jpg': [[1, 2, 3, 4], [5, 6, 7, 8]], '12': []})
  assert boxes.load(own) == {'a.jpg': [(1, 2, 3, 4), (5, 6, 7, 8)], '12': []}
  detections = [dict(image_id=397133, bbox=[1, 2, 3, 4], score=0.9, category_id=1),
                dict(image_id=397133, bbox=[5, 6, 7, 8], score=0.3, category_id=1),
                dict(image_id=397133, bbox=[9, 9, 9, 9], score=0.99, category_id=3),
                dict(image_id=5, bbox=[0, 0, 1, 1], score=0.1)]
  coco = _write(tmp_path / 'coco.json', detections)
  assert boxes.load(coco) == {'397133': [(1, 2, 3, 4)], '5': []}
  assert boxes.load(coco, min_score=0.2) == {'397133': [(1, 2, 3, 4), (5, 6, 7, 8)], '5': []}
  # COCO's naming: image 397133 is 000000397133.jpg.
  assert boxes.for_images(boxes.load(coco), ['x/000000397133.jpg', 'y.jpg'], 'coco') == [
      [(1, 2, 3, 4)], []]
  dataset = _write(tmp_path / 'dataset.json', dict(
      images=[dict(id=7, file_name='b.jpg')],
      annotations=[dict(image_id=7, bbox=[1, 2, 3, 4], category_id=1)]))
  assert boxes.for_images(boxes.load(dataset), ['/photos/b.jpg'], 'd') == [[(1, 2, 3, 4)]]
  with pytest.raises(ValueError, match="frame indices 0, 1, ..., got 'a.jpg'"):
    boxes.for_frames(boxes.load(own), 'own.json')
  assert boxes.for_frames({'0': [], '3': [(1, 2, 3, 4)]}, 'f') == {0: [], 3: [(1, 2, 3, 4)]}

  with pytest.raises(ValueError, match=r'boxes file .*own.json names none of the images '
                                       r"\['c.jpg'\]"):
    boxes.for_images(boxes.load(own), ['c.jpg'], str(own))
  with pytest.raises(FileNotFoundError, match='boxes file .*missing.json does not exist'):
    boxes.load(tmp_path / 'missing.json')
  (tmp_path / 'bad.json').write_text('{not json')
  with pytest.raises(ValueError, match='boxes file .*bad.json is not JSON'):
    boxes.load(tmp_path / 'bad.json')
  with pytest.raises(ValueError, match=r"key 'a.jpg', box 0: expected \[x, y, w, h\] with "
                                       r'w, h > 0, got \[1, 2, 0, 4\]'):
    boxes.load(_write(tmp_path / 'b.json', {'a.jpg': [[1, 2, 0, 4]]}))
  with pytest.raises(ValueError, match='detection 0: expected an object with "image_id" and '
                                       '"bbox"'):
    boxes.load(_write(tmp_path / 'c.json', [{'bbox': [1, 2, 3, 4]}]))


def test_fov_and_exif_focal(tmp_path):
  assert intrinsics_lib.fov_focal(90, 1000) == pytest.approx(500)
  with pytest.raises(ValueError, match='--fov must be .* between 0 and 180, got 180'):
    intrinsics_lib.fov_focal(180, 1000)
  photo = tmp_path / 'phone.jpg'
  exif = Image.Exif()
  exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = 26
  Image.new('RGB', (400, 300)).save(photo, exif=exif)
  # 26 mm on a 36 × 24 mm frame (43.27 mm across) over the photo's 500 px diagonal.
  expected = 26 / math.hypot(36, 24) * 500
  intrinsics = intrinsics_lib.camera_intrinsics((400, 300), path=photo)
  assert intrinsics['focal'] == pytest.approx(expected)
  assert intrinsics['focal_source'] == 'exif' and not intrinsics['focal_assumed']
  assert intrinsics_lib.camera_intrinsics((400, 300), fov=90, path=photo)['focal_source'] == 'fov'
  assert intrinsics_lib.camera_intrinsics((400, 300), focal=7.0, path=photo)['focal'] == 7.0
  plain = tmp_path / 'plain.jpg'
  Image.new('RGB', (400, 300)).save(plain)
  assert intrinsics_lib.camera_intrinsics((400, 300), path=plain)['focal_source'] == 'default'
  with pytest.raises(ValueError, match='a focal length or a field of view for x, not both'):
    intrinsics_lib.camera_intrinsics((400, 300), focal=7.0, fov=60, name='x')


def test_two_boxes_give_two_people(trained_smoke_workdir, predictor, real_fixtures, tmp_path):
  mpii = real_fixtures / 'mpii' / 'images'
  first, second = mpii / '005808361.jpg', mpii / '052475643.jpg'
  # A phone's EXIF on a copy of the first photo.
  exif = Image.Exif()
  exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.FocalLengthIn35mmFilm] = 28
  phone = tmp_path / 'phone.jpg'
  Image.open(first).save(phone, exif=exif)
  people = [[500, 100, 300, 500], [850, 80, 250, 560]]
  own = _write(tmp_path / 'own.json', {'phone.jpg': people})
  coco = _write(tmp_path / 'coco.json', [
      dict(image_id=52475643, bbox=[200, 60, 220, 400], score=0.8, category_id=1),
      dict(image_id=52475643, bbox=[0, 0, 50, 50], score=0.05, category_id=1)])
  for boxes_file, image, count in ((own, phone, 2), (coco, second, 1)):
    out = tmp_path / boxes_file.stem
    run_main(predict, [f'--workdir={trained_smoke_workdir}', f'--image={image}',
                       f'--boxes={boxes_file}', f'--out={out}'])
    data = json.loads((out / f'{image.stem}.json').read_text())
    assert len(data['people']) == count and data['checkpoint']['step'] == 2
    assert (out / f'{image.stem}.png').is_file()
  # Both people of the first photo, each from its own box, the focal from its EXIF.
  data = json.loads((tmp_path / 'own' / 'phone.json').read_text())
  for person, box in zip(data['people'], people):
    assert person['box'] == box and np.shape(person['pose_3d']) == (17, 3)
    assert person['intrinsics']['focal_source'] == 'exif'
    assert person['intrinsics']['focal'] == pytest.approx(28 / math.hypot(36, 24)
                                                          * math.hypot(1280, 720))
  assert data['people'][0]['crop_box'] != data['people'][1]['crop_box']
  # The same as one person at a time.
  alone = predictor.predict(phone, people[1])
  np.testing.assert_allclose(data['people'][1]['pose_3d'], alone['pose_3d'], atol=1e-3)
