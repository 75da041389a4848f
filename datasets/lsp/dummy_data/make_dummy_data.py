"""Writes the fake LSP / LSP-extended manual directory next to this script (run once).

``joints.mat`` files have the real releases' layouts (LSP 3×14×N, LSPET 14×3×N) and flag
conventions (LSP: 1 = occluded but labelled; LSPET: 1 = labelled, 0 = not, with junk
coordinates). Images are dark with a bright dot on every joint that must come out valid,
so a test can see that joints and pixels were moved together.

  python datasets/lsp/dummy_data/make_dummy_data.py
"""

import io
import pathlib

import numpy as np
from PIL import Image
import scipy.io

HERE = pathlib.Path(__file__).resolve().parent

# A standing person in LSP-14 order, x right, y down, in units of its height.
TEMPLATE = np.array([
    [-0.15, 1.0], [-0.13, 0.75], [-0.1, 0.5], [0.1, 0.5], [0.13, 0.75], [0.15, 1.0],
    [-0.35, 0.45], [-0.3, 0.3], [-0.15, 0.2], [0.15, 0.2], [0.3, 0.3], [0.35, 0.45],
    [0.0, 0.15], [0.0, 0.0]])


def person(left, top, height):
  """(14, 2) MATLAB (1-based) pixel coordinates, off the pixel grid on purpose."""
  return np.round(TEMPLATE * height + [left + 0.35 * height, top], 2) + 0.41


def image(size, joints, dots, corrupt=False):
  """JPEG bytes, dark with a 3×3 dot on ``joints[dots]``."""
  if corrupt:
    return b'this is not a JPEG file'
  pixels = np.full((size[1], size[0], 3), 30, np.uint8)
  for x, y in joints[dots] - 1.0:  # 1-based coordinates -> 0-based pixel index
    pixels[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] = 255
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


def write(folder, name_format, people, layout):
  """people: (image size, (14, 2) joints, (14,) flags, dots, corrupt) per image."""
  (HERE / folder / 'images').mkdir(parents=True, exist_ok=True)
  columns = []
  for i, (size, joints, flags, dots, corrupt) in enumerate(people):
    (HERE / folder / 'images' / name_format.format(i + 1)).write_bytes(
        image(size, joints, dots, corrupt))
    columns.append(np.concatenate([joints, np.asarray(flags, float)[:, None]], 1))
  joints = np.stack(columns, -1)  # 14×3×N
  if layout == '3x14xN':
    joints = joints.transpose(1, 0, 2)
  scipy.io.savemat(HERE / folder / 'joints.mat', {'joints': joints})


def main():
  everything = np.arange(14)
  # LSP: flags mix 0 (visible) and 1 (occluded); all labelled.
  occluded = np.array([0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0])
  off_image = person(8, 4, 80)
  off_image[5] = [80.0, 84.0]  # l_ankle right of the 75 px wide image
  off_image[11] = [-3.0, 40.0]  # l_wrist left of it
  write('lsp_dataset', 'im{:04d}.jpg', [
      ((75, 90), person(8, 4, 80), occluded, everything, False),             # train
      ((75, 90), off_image, np.zeros(14), np.delete(everything, [5, 11]), False),  # train
      ((75, 90), person(8, 4, 80), np.zeros(14), everything, True),          # test, corrupt
      ((56, 70), person(6, 3, 62), 1 - occluded, everything, False),         # test
  ], layout='3x14xN')
  # LSPET: flag 1 labelled; flag 0 joints have junk coordinates (zeros, or a guess).
  unlabelled = person(10, 5, 90)
  flags = np.ones(14)
  flags[[0, 6, 13]] = 0
  unlabelled[0] = [0.0, 0.0]
  unlabelled[6] = [-1.0, -1.0]
  unlabelled[12] = [120.0, 30.0]  # flag 1 but right of the 80 px wide image
  lonely = np.zeros((14, 2))
  lonely[12] = [30.0, 20.0]
  write('lspet_dataset', 'im{:05d}.jpg', [
      ((80, 100), person(10, 5, 90), np.ones(14), everything, False),
      ((80, 100), unlabelled, flags, np.delete(everything, [0, 6, 12, 13]), False),
      ((80, 100), lonely, np.eye(14)[12], [12], False),  # one valid joint: skipped
  ], layout='14x3xN')


if __name__ == '__main__':
  main()
