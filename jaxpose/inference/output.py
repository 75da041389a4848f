"""What prediction writes: a prediction as JSON, the picture of its skeletons, and both as
files named after the photos."""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxpose import fileio
from jaxpose import visualize

# Height of the pictures ``prediction_picture`` draws.
PICTURE_HEIGHT = 480


def to_json(prediction: dict) -> dict:
  """``Predictor.predict``'s result with arrays as (nested) lists and a note on units."""
  def plain(x):
    if isinstance(x, dict):
      return {k: plain(v) for k, v in x.items()}
    if isinstance(x, (np.ndarray, np.generic, tuple, list)):
      return np.asarray(x).tolist()
    return x
  out = plain(prediction)
  out['units'] = ('pose_3d, root: mm, camera frame (x right, y down, z forward), pose_3d '
                  'relative to the root (pelvis); pose_2d, box, crop_box (x, y, w, h), '
                  'camera.principal: pixels of the image (pixel centres at +0.5); '
                  'camera.scale: image px per mm; crop_*: pixels of the network input')
  return out


def prediction_picture(image: np.ndarray, prediction: dict | Sequence[dict],
                       height: int = PICTURE_HEIGHT) -> np.ndarray:
  """The photo at ``height`` px with the 2D skeletons and the crops outlined, beside the 3D
  skeletons from the front and the side (``visualize.skeleton_3d_views``, height × height
  each): one person root-relative, several (a list of predictions) at their absolute
  positions. Returns (height, round(width × height / H) + 2 × height, 3) uint8."""
  people = [prediction] if isinstance(prediction, dict) else list(prediction)
  image = np.asarray(image)
  zoom = height / image.shape[0]
  width = max(1, round(image.shape[1] * zoom))
  photo = np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.LANCZOS))
  line = max(1, height // 160)
  for person in people:
    photo = visualize.draw_skeleton_2d(photo, person['pose_2d'] * zoom, width=2 * line,
                                       joint_radius=1.5 * line, outline=line)
  pil = Image.fromarray(photo)
  for person in people:
    x, y, w, h = np.asarray(person['crop_box']) * zoom
    ImageDraw.Draw(pil).rectangle((x, y, x + w, y + h), outline=(255, 255, 255), width=line)
  if len(people) == 1:
    views = visualize.skeleton_3d_views(people[0]['pose_3d'], size=height)
  elif people:
    views = visualize.skeleton_3d_views(
        np.stack([p['pose_3d'] + p['root'] for p in people]), size=height)
  else:
    views = np.full((height, 2 * height, 3), 255, np.uint8)
  return np.concatenate([np.asarray(pil), views], axis=1)


def write(prediction: dict | Sequence[dict], image: np.ndarray, out_dir: str, name: str,
          extra: dict | None = None) -> tuple[str, str]:
  """Writes ``out_dir/<name>.json`` (``to_json`` + ``extra``; for a list of predictions,
  ``{"people": [to_json, ...]}`` + ``extra``) and ``<name>.png`` (``prediction_picture``);
  returns their paths."""
  fileio.gfile.makedirs(out_dir)
  stem = os.path.join(out_dir, name)
  if isinstance(prediction, dict):
    data = {**to_json(prediction), **(extra or {})}
  else:
    data = {'people': [to_json(p) for p in prediction], **(extra or {})}
  # One line per key: readable, yet a pose stays one line instead of 68.
  fileio.write_atomically(stem + '.json', lambda f: f.write(
      '{\n' + ',\n'.join(f' {json.dumps(k)}: {json.dumps(v)}' for k, v in data.items())
      + '\n}\n'))
  picture = Image.fromarray(prediction_picture(image, prediction))
  fileio.write_atomically(stem + '.png', lambda f: picture.save(f, format='PNG'), binary=True)
  return stem + '.json', stem + '.png'


def output_names(paths: Sequence[str]) -> list[str]:
  """The file stems of ``paths``, made distinct (``a``, ``a_2``, …) where they repeat."""
  names, seen = [], {}
  for path in paths:
    stem = pathlib.Path(path).stem
    seen[stem] = seen.get(stem, 0) + 1
    names.append(stem if seen[stem] == 1 else f'{stem}_{seen[stem]}')
  return names
