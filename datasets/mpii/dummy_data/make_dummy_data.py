"""Writes the fake MPII manual directory next to this script (run once, by hand).

The files have the on-disk form of the real releases: a MATLAB v5 ``RELEASE`` struct
(struct arrays, cells, a one-element struct array that loads as a bare struct, a single
point, ``is_visible`` as number, text and empty) and the MMPose JSON lists. Images are
dark with a bright dot on every labelled joint, so a test can see that joints and pixels
were moved together. Persons a and b appear in both forms with the same joints.

  python datasets/mpii/dummy_data/make_dummy_data.py
"""

import io
import json
import pathlib

import numpy as np
from PIL import Image
import scipy.io

HERE = pathlib.Path(__file__).resolve().parent
SIZE = (96, 72)  # width, height

# A standing person in MPII-16 order, x right, y down, in units of its height.
TEMPLATE = np.array([
    [-0.15, 1.0], [-0.13, 0.75], [-0.1, 0.5], [0.1, 0.5], [0.13, 0.75], [0.15, 1.0],
    [0.0, 0.5], [0.0, 0.2], [0.0, 0.15], [0.0, 0.0], [-0.35, 0.45], [-0.3, 0.3],
    [-0.15, 0.2], [0.15, 0.2], [0.3, 0.3], [0.35, 0.45]])


def person(left, top, height):
  """(16, 2) MATLAB (1-based) pixel coordinates, off the pixel grid on purpose."""
  return np.round(TEMPLATE * height + [left + 0.3 * height, top], 2) + 0.37


PEOPLE = {  # name -> (joints, labelled joint ids)
    'a0': (person(5, 6, 55), list(range(16))),
    'a1': (person(45, 10, 50), [1, 2, 3, 4, 7, 9]),
    'b0': (person(20, 4, 60), [0, 1, 2, 3, 4, 5, 6, 7, 12, 13]),
    'e0': (person(20, 4, 60), list(range(16))),
}


def image(names):
  pixels = np.full((SIZE[1], SIZE[0], 3), 30, np.uint8)
  for name in names:
    joints, ids = PEOPLE[name]
    for x, y in joints[ids] - 1.0:  # 1-based coordinates -> 0-based pixel index
      pixels[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def struct_array(rows):
  """A 1×N MATLAB struct array from a list of dicts with the same keys."""
  array = np.zeros((1, len(rows)), dtype=[(k, object) for k in rows[0]])
  for i, row in enumerate(rows):
    for k, v in row.items():
      array[0, i][k] = v
  return array


def points(name, is_visible):
  joints, ids = PEOPLE[name]
  return struct_array([
      dict(id=j, x=joints[j, 0], y=joints[j, 1], is_visible=v)
      for j, v in zip(ids, is_visible)])


def rect(point_array):
  return dict(x1=0.0, y1=0.0, x2=1.0, y2=1.0, scale=1.0,
              objpos=dict(x=1.0, y=1.0), annopoints=dict(point=point_array))


def write_mat(path):
  empty = np.zeros((0, 0))
  one_point = struct_array([dict(id=9, x=30.5, y=8.25, is_visible=1)])
  annolist = struct_array([
      # Two single persons; is_visible as numbers, text and empty.
      dict(image=dict(name='mpii_a.jpg'), annorect=struct_array([
          rect(points('a0', [1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1])),
          rect(points('a1', ['1', '0', '1', empty, '1', '1'])),
      ])),
      # One rect: the 1×1 struct array loads as a bare struct.
      dict(image=dict(name='mpii_b.jpg'), annorect=rect(
          points('b0', [1] * 10))),
      # A single point (bare struct) and a rect without points: both skipped.
      dict(image=dict(name='mpii_c.jpg'), annorect=struct_array([
          rect(one_point), dict(rect(one_point), annopoints=empty)])),
      # A test image (img_train 0, no file here): never read.
      dict(image=dict(name='mpii_test.jpg'), annorect=struct_array([
          dict(rect(one_point), annopoints=empty)])),
      # An image that cannot be decoded: skipped and counted.
      dict(image=dict(name='mpii_corrupt.jpg'), annorect=rect(
          points('e0', [1] * 16))),
      # A crowd: no single person (no file here either).
      dict(image=dict(name='mpii_crowd.jpg'), annorect=struct_array([
          rect(one_point), rect(one_point)])),
  ])
  single_person = np.empty((6, 1), object)
  for i, value in enumerate([np.array([[1], [2]]), 1, np.array([[1], [2]]), empty,
                             1, empty]):
    single_person[i, 0] = value
  act = struct_array([dict(cat_name=c, act_name=a, act_id=k) for c, a, k in [
      ('sports', 'curling', 1), (empty, empty, -1), ('sports', 'curling', 1),
      (empty, empty, -1), ('music', 'playing guitar', 7), (empty, empty, -1)]]).T
  release = dict(annolist=annolist, img_train=np.array([[1, 1, 1, 0, 1, 1]]),
                 single_person=single_person, act=act, version='12')
  path.parent.mkdir(parents=True, exist_ok=True)
  scipy.io.savemat(path, {'RELEASE': release}, format='5', do_compression=True)


def record(image_name, name):
  joints, ids = PEOPLE[name]
  vis = np.zeros(16, int)
  vis[ids] = 1
  return dict(joints_vis=vis.tolist(),
              joints=np.where(vis[:, None] > 0, joints, -1.0).tolist(),
              image=image_name, scale=1.0, center=joints[ids].mean(0).round(1).tolist())


def main():
  images = HERE / 'images'
  images.mkdir(exist_ok=True)
  (images / 'mpii_a.jpg').write_bytes(image(['a0', 'a1']))
  (images / 'mpii_b.jpg').write_bytes(image(['b0']))
  (images / 'mpii_c.jpg').write_bytes(image([]))
  (images / 'mpii_corrupt.jpg').write_bytes(image(['e0'])[:300])  # truncated
  write_mat(HERE / 'mpii_human_pose_v1_u12_2' / 'mpii_human_pose_v1_u12_1.mat')
  annotations = HERE / 'annotations'
  annotations.mkdir(exist_ok=True)
  (annotations / 'mpii_train.json').write_text(json.dumps([
      record('mpii_a.jpg', 'a0'), record('mpii_a.jpg', 'a1'),
      record('mpii_corrupt.jpg', 'e0'), record('mpii_b.jpg', 'b0')]))
  (annotations / 'mpii_val.json').write_text(json.dumps([record('mpii_b.jpg', 'b0')]))


if __name__ == '__main__':
  main()
