"""Photos to files: what ``python -m jaxpose.predict --image`` does, as a function."""

from __future__ import annotations

import os
from collections.abc import Sequence

import ml_collections

from jaxpose import fileio
from jaxpose.inference import boxes as box_lib
from jaxpose.inference import images as image_lib
from jaxpose.inference import output
from jaxpose.inference import predictor as predictor_lib


def predict_photos(workdir: str, images: Sequence[str], out_dir: str, *,
                   step: int | None = None, config: ml_collections.ConfigDict | None = None,
                   backend: str = 'jax', bboxes: Sequence[str] | None = None,
                   boxes_file: str | None = None, min_box_score: float = 0.5,
                   focal: float | None = None, fov: float | None = None
                   ) -> list[tuple[str, tuple[str, str], int | None]]:
  """Writes ``out_dir/<name>.json`` and ``<name>.png`` (``output.write``) for each photo.

  Args:
    workdir, step, config, backend: the checkpoint and how to run it (``Predictor``'s).
    images: ``--image`` values: files, folders, glob patterns (``images.image_paths``).
    out_dir: the output folder.
    bboxes: one 'x,y,w,h' person box per photo, or None to find the person.
    boxes_file: a file of boxes (``boxes.load``): every box is one person. Not with bboxes.
    min_box_score: the score under which a detection of ``boxes_file`` is left out.
    focal, fov: the camera's focal length (px) or horizontal field of view (degrees).

  Returns:
    (photo, the paths written, the number of people or None without ``boxes_file``) per
    photo. The photos and boxes are read and checked before the (slower) restore, so that
    a bad file or box fails at once.
  """
  table = None if boxes_file is None else box_lib.load(boxes_file, min_box_score)
  paths = image_lib.image_paths(images)
  boxes = [box_lib.parse_box(b) for b in bboxes or []]
  if boxes and len(boxes) != len(paths):
    raise ValueError(f'--bbox given {len(boxes)} times for {len(paths)} --image; give one '
                     f'box per image, in the same order, or none')
  people = None if table is None else box_lib.for_images(table, paths, boxes_file)
  arrays = [image_lib.load_image(path)[0] for path in paths]
  for path, image, box, text in zip(paths, arrays, boxes, bboxes or []):
    box_lib.check_box(box, (image.shape[1], image.shape[0]), f'--bbox={text} (image {path})')
  for path, image, image_boxes in zip(paths, arrays, people or []):
    for i, box in enumerate(image_boxes):
      box_lib.check_box(box, (image.shape[1], image.shape[0]),
                        f'--boxes={boxes_file}, box {i} of image {path}')
  predictor = predictor_lib.Predictor(workdir, step, config, backend)
  if people is None:
    predictions = predictor.predict_many(paths, boxes or None, focal, fov)
  else:
    predictions = predictor.predict_people(paths, people, focal, fov)
  checkpoint_info = dict(checkpoint=dict(workdir=fileio.absolute(workdir),
                                         step=predictor.step))
  written = []
  for path, image, name, prediction in zip(paths, arrays, output.output_names(paths),
                                           predictions):
    files = output.write(prediction, image, out_dir, name,
                         dict(image=os.path.abspath(path), **checkpoint_info))
    written.append((path, files, None if people is None else len(prediction)))
  return written
