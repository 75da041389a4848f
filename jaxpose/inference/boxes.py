"""Person boxes (x, y, w, h) for photos and video frames: ``predict --bbox``, files of them
(``predict --boxes``), and the checks of a box against its image.

Two file layouts are read:

* jaxpose's own: a JSON object from an image's file name (or a video's frame index, from 0)
  to its list of boxes ``[x, y, w, h]`` in pixels::

      {"photo.jpg": [[10, 20, 200, 400], [300, 25, 180, 390]], "other.jpg": []}
      {"0": [[10, 20, 200, 400]], "12": [[40, 22, 190, 400]]}

* COCO-style detections, as detectors write them (MMDetection, Detectron2, YOLO exporters):
  a list of ``{"image_id": ..., "bbox": [x, y, w, h], "score": s, "category_id": 1}``, or a
  COCO dataset file whose ``annotations`` hold such entries and whose ``images`` map
  ``id`` to ``file_name``. Entries scoring below ``min_score`` or of another category than
  COCO's person (1) are left out.

A key names an image by its file name, its path as given, its stem, or the number its stem
spells (COCO's ``000000397133.jpg`` is image 397133); a video's frames by their index.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence

import numpy as np

# COCO's category id of a person.
PERSON = 1
# A person box may reach past the image (a person cut off by its border), but one whose
# longer side exceeds this many times the image's longer side would leave the whole image
# under a quarter of the crop's side: no person is visible at that scale, the box is a typo.
MAX_BOX_TO_IMAGE = 4.0


def parse_box(text: str) -> tuple[float, float, float, float]:
  """'x,y,w,h' → four floats."""
  try:
    box = tuple(float(v) for v in text.split(','))
  except ValueError:
    box = ()
  if len(box) != 4:
    raise ValueError(f'--bbox must be four numbers x,y,w,h, got {text!r}')
  return box


def check_box(box, image_size: tuple[int, int], where: str) -> np.ndarray:
  """``box`` (x, y, w, h) as an array; raises, naming ``where`` (the flag or file entry and
  the image), unless it is finite with w, h > 0, overlaps the image and its longer side is
  at most ``MAX_BOX_TO_IMAGE`` times the image's."""
  box = np.asarray(box, np.float64).reshape(-1)
  width, height = image_size
  if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] <= 0 or box[3] <= 0:
    raise ValueError(f'box of {where} must be four finite numbers (x, y, w, h) with w, h > 0, '
                     f'got {box.tolist()}')
  x, y, w, h = box
  if x >= width or y >= height or x + w <= 0 or y + h <= 0:
    raise ValueError(f'box (x, y, w, h) = {tuple(box.tolist())} of {where} lies outside the '
                     f'image of size {width}x{height} (width x height); expected a box that '
                     'overlaps it')
  limit = MAX_BOX_TO_IMAGE * max(width, height)
  if max(w, h) > limit:
    raise ValueError(f'box (x, y, w, h) = {tuple(box.tolist())} of {where} is larger than '
                     f'{MAX_BOX_TO_IMAGE:g} times the image of size {width}x{height} (width x '
                     f'height); expected w, h <= {limit:g} pixels')
  return box


def load(path, min_score: float = 0.5) -> dict[str, list[tuple[float, float, float, float]]]:
  """The boxes of a file in either layout, keyed by the strings of its keys or image ids."""
  path = pathlib.Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'boxes file {path} does not exist')
  try:
    data = json.loads(path.read_text())
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'boxes file {path} is not JSON: {e}') from e
  if isinstance(data, dict) and 'annotations' in data:
    names = {str(image['id']): image['file_name'] for image in data.get('images', [])
             if isinstance(image, dict) and 'id' in image and 'file_name' in image}
    return _detections(data['annotations'], path, min_score, names)
  if isinstance(data, list):
    return _detections(data, path, min_score, {})
  if not isinstance(data, dict):
    raise ValueError(f'boxes file {path}: expected an object from image names or frame '
                     f'indices to lists of [x, y, w, h], or a COCO-style list of detections; '
                     f'got a JSON {type(data).__name__}')
  table = {}
  for key, boxes in data.items():
    if not isinstance(boxes, list):
      raise ValueError(f'boxes file {path}, key {key!r}: expected a list of [x, y, w, h], '
                       f'got {boxes!r}')
    table[str(key)] = [_box(box, path, f'key {key!r}, box {i}') for i, box in enumerate(boxes)]
  return table


def _detections(entries, path, min_score: float, names: dict) -> dict:
  if not isinstance(entries, list):
    raise ValueError(f'boxes file {path}: "annotations" must be a list of detections')
  table = {}
  for i, entry in enumerate(entries):
    if not isinstance(entry, dict) or 'image_id' not in entry or 'bbox' not in entry:
      raise ValueError(f'boxes file {path}, detection {i}: expected an object with '
                       f'"image_id" and "bbox", got {entry!r}')
    key = str(entry['image_id'])
    table.setdefault(names.get(key, key), [])
    if entry.get('category_id', PERSON) != PERSON or entry.get('score', 1.0) < min_score:
      continue
    table[names.get(key, key)].append(_box(entry['bbox'], path, f'detection {i}'))
  return table


def _box(box, path, where: str) -> tuple[float, float, float, float]:
  values = np.asarray(box, np.float64) if isinstance(box, list) else np.zeros(0)
  if values.shape != (4,) or not np.all(np.isfinite(values)) or np.any(values[2:] <= 0):
    raise ValueError(f'boxes file {path}, {where}: expected [x, y, w, h] with w, h > 0, '
                     f'got {box!r}')
  return tuple(values.tolist())


def _image_keys(path) -> list[str]:
  """The keys that may name the image at ``path`` (module docstring)."""
  path = pathlib.Path(path)
  keys = [str(path), path.name, path.stem]
  if path.stem.isdigit():
    keys.append(str(int(path.stem)))
  return keys


def for_images(table: dict, paths: Sequence, source: str) -> list[list[tuple]]:
  """The boxes of each image (none where the file has no entry for it); a file that names
  none of the images is an error (``source`` names it)."""
  found = []
  for path in paths:
    key = next((k for k in _image_keys(path) if k in table), None)
    found.append(None if key is None else table[key])
  if table and all(boxes is None for boxes in found):
    raise ValueError(f'boxes file {source} names none of the images '
                     f'{[pathlib.Path(p).name for p in paths]}; its keys include '
                     f'{sorted(table)[:5]}')
  return [boxes or [] for boxes in found]


def for_frames(table: dict, source: str) -> dict[int, list[tuple]]:
  """The boxes by frame index (keys must be whole numbers from 0)."""
  frames = {}
  for key, boxes in table.items():
    if not key.isdigit():
      raise ValueError(f'boxes file {source}: for a video its keys (or image ids) must be '
                       f'frame indices 0, 1, ..., got {key!r}')
    frames[int(key)] = boxes
  return frames
