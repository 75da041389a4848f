"""3D pose of the people in photos, from a trained checkpoint: ``Predictor``.

A person is found in a crop (``jaxpose.inference.crop``): with a box, the square around it;
without one, the paper's recipe: a first pass on the whole image (padded to a square), then
the tight box around the 2D joints it predicts, and a second pass on that crop.

The camera. 3D is in the camera frame (x right, y down, z forward) in mm, root-relative.
The camera's intrinsics are a focal length in pixels and a principal point at the image
centre (``jaxpose.inference.intrinsics``). With them, the pose is rotated from the crop's
virtual camera back into the real one (perspective correction), and the absolute position
of the root follows from the learned weak-perspective camera (``geometry.to_camera``). That
position assumes the person has the size of the skeletons the network learned (a child reads
as an adult further away), and the weak-perspective model (the body's depth extent small
against its distance).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxpose import geometry
from jaxpose import parallel
from jaxpose import skeleton
from jaxpose import state
from jaxpose.data import crops
from jaxpose.inference import crop
from jaxpose.inference import images as image_lib
from jaxpose.inference import intrinsics as intrinsics_lib
from jaxpose.models import posenet

# Crops per network call. Every call is padded to it: one compiled shape per Predictor (a
# compilation costs far more than the padding on any device).
BATCH = 8
# Where Predictor runs the network on crops: XLA, or ONNX Runtime on the network translated
# to ONNX in memory (jaxpose.inference.onnx_export; CPU only).
BACKENDS = ('jax', 'onnxruntime')


def crop_network(model: posenet.PoseNet):
  """(variables, ``crops`` (B, S, S, 3) uint8) → dict of float32: ``pose_3d`` (B, J, 3)
  mm, ``pose_2d`` (B, J, 2) crop px, ``camera_scale`` (B,) px/mm, ``camera_principal``
  (B, 2) px, ``confidence`` (B, J): the peak of each joint's res5a heatmap."""
  def run(variables, crops):
    out = model.apply(variables, crops, train=False)
    return dict(pose_3d=out['pose_3d'], pose_2d=out['pose_2d'],
                camera_scale=out['camera']['scale'],
                camera_principal=out['camera']['principal'],
                confidence=out['heatmaps'][:, -1].max(axis=(1, 2)))
  return run


def _onnxruntime_network(network, size: int):
  """``network`` (float32 crops, as ``crop.crop_images`` makes them → dict) run by ONNX
  Runtime on the CPU."""
  # Imported here: only this backend needs ONNX, which is slow to import.
  import onnxruntime  # pylint: disable=g-import-not-at-top
  from jaxpose.inference import onnx_export  # pylint: disable=g-import-not-at-top
  model = onnx_export.to_onnx(network, (size, size, 3), np.float32, 'crops')
  session = onnxruntime.InferenceSession(model.SerializeToString(),
                                         providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  return lambda crops: dict(zip(names, session.run(None, {'crops': np.asarray(crops)})))


class Predictor:
  """A restored checkpoint that predicts 3D poses in photos (module docstring).

  Attributes:
    config: the checkpoint's config. step: its step. model: the network. variables: its
    params and batch_stats. input_size: the side of its square input, pixels. backend:
    what runs the network (``BACKENDS``).
  """

  def __init__(self, workdir: str, step: int | None = None,
               config: ml_collections.ConfigDict | None = None, backend: str = 'jax'):
    if backend not in BACKENDS:
      raise ValueError(f'backend={backend!r}: expected one of {BACKENDS}')
    # The model comes from the checkpoint's config, on one device.
    self.config, self.model, self.variables, _, self.step = state.load_model(
        workdir, step, config)
    self.input_size = int(self.config.data.input_size)
    self.backend = backend
    network = functools.partial(crop_network(self.model), self.variables)
    if backend == 'onnxruntime':
      self._network = _onnxruntime_network(network, self.input_size)
    else:
      self._network = self._padded(parallel.jit_local(network))
    self._crop = parallel.jit_local(crop.crop_images, static_argnums=3)

  def predict(self, image, box=None, focal: float | None = None,
              fov: float | None = None) -> dict:
    """The pose of the person in ``image`` (a path or an (H, W, 3) uint8 array).

    Args:
      image: the photo.
      box: (x, y, w, h) person box in pixels, or None to find the person.
      focal: the camera's focal length in pixels, or None for
        ``intrinsics.camera_intrinsics``'s choice: ``fov``, else the photo's EXIF, else
        ``intrinsics.default_focal``.
      fov: the camera's horizontal field of view in degrees, or None.

    Returns:
      A dict (arrays are numpy float64):
        ``joint_names`` (17,); ``pose_3d`` (17, 3) root-relative mm in the camera frame,
        perspective-corrected; ``pose_2d`` (17, 2) pixels of the image: the camera head's
        projection of the 3D pose; ``confidence`` (17,) the peak of each joint's res5a
        heatmap (trained towards 1 on a visible joint, 0 elsewhere); ``root`` (3,) the
        root's position in the camera frame, mm; ``box`` the person box given, or None;
        ``crop_box`` (4,) the square the network saw, (x, y, side, side); ``crop_matrix``
        (3, 3) image → network input pixels; ``camera``: ``scale`` (px/mm) and
        ``principal`` (2,) of the weak-perspective camera in image pixels, ``crop_scale``
        and ``crop_principal`` in the network's input (``crop_size`` pixels square);
        ``intrinsics``: ``focal``, ``principal`` (2,), ``focal_source`` ('focal', 'fov',
        'exif' or 'default') and ``focal_assumed`` (True for 'default');
        ``image_size`` (width, height).
    """
    return self.predict_many([image], [box], focal, fov)[0]

  def predict_many(self, images: Sequence, boxes: Sequence | None = None,
                   focal: float | Sequence[float | None] | None = None,
                   fov: float | Sequence[float | None] | None = None) -> list[dict]:
    """``predict`` for many images, batched; ``boxes``, ``focal`` and ``fov`` may be one per
    image (None entries: find the person / ``camera_intrinsics``'s choice) or None for all."""
    n = len(images)
    boxes = [None] * n if boxes is None else list(boxes)
    if len(boxes) != n:
      raise ValueError(f'got {n} images and {len(boxes)} boxes; give one box per image, or '
                       f'None')
    arrays, intrinsics = self._load(images, focal, fov)
    return self._predict(arrays, boxes, intrinsics)

  def predict_people(self, images: Sequence, boxes: Sequence[Sequence],
                     focal: float | Sequence[float | None] | None = None,
                     fov: float | Sequence[float | None] | None = None) -> list[list[dict]]:
    """The pose of every person of each image, one per box of ``boxes[i]`` (a sequence of
    (x, y, w, h)), all batched together; ``focal`` and ``fov`` as in ``predict_many``."""
    if len(boxes) != len(images):
      raise ValueError(f'got {len(images)} images and {len(boxes)} lists of boxes; give one '
                       f'list per image')
    arrays, intrinsics = self._load(images, focal, fov)
    owner = [i for i, image_boxes in enumerate(boxes) for _ in image_boxes]
    flat = self._predict([arrays[i] for i in owner], [b for bs in boxes for b in bs],
                         [intrinsics[i] for i in owner])
    people = [[] for _ in images]
    for i, prediction in zip(owner, flat):
      people[i].append(prediction)
    return people

  def _load(self, images: Sequence, focal, fov) -> tuple[list[tuple[np.ndarray, str]], list]:
    """The images as (array, name) and their ``camera_intrinsics``."""
    n = len(images)
    focals = [focal] * n if focal is None or np.ndim(focal) == 0 else list(focal)
    fovs = [fov] * n if fov is None or np.ndim(fov) == 0 else list(fov)
    if len(focals) != n or len(fovs) != n:
      raise ValueError(f'got {n} images, {len(focals)} focal lengths and {len(fovs)} fields '
                       f'of view; give one per image, or None')
    arrays, intrinsics = [], []
    for image, f, v in zip(images, focals, fovs):
      array, name = image_lib.load_image(image)
      path = image if isinstance(image, (str, os.PathLike)) else None
      arrays.append((array, name))
      intrinsics.append(intrinsics_lib.camera_intrinsics((array.shape[1], array.shape[0]), f,
                                                         v, path, name))
    return arrays, intrinsics

  def _predict(self, loaded: list[tuple[np.ndarray, str]], boxes: list,
               intrinsics: list[dict]) -> list[dict]:
    """One person per (image, box, intrinsics); a None box: find the person."""
    regions = []
    for (array, name), box in zip(loaded, boxes):
      height, width = array.shape[:2]
      regions.append(crop.person_region(box, (width, height), name) if box is not None
                     else (np.array([width / 2, height / 2]), float(max(width, height))))
    outputs = self._run([array for array, _ in loaded], regions)
    # The paper's recipe for images without a box: crop the tight box of the first pass.
    second = [i for i, box in enumerate(boxes) if box is None]
    if second:
      tight = [crops.tight_box(outputs[i]['pose_2d'], np.ones(skeleton.NUM_JOINTS, bool))
               for i in second]
      for i, out in zip(second, self._run([loaded[i][0] for i in second], tight)):
        outputs[i] = out
    return [self._finish(out, k, box, array.shape)
            for (array, _), box, out, k in zip(loaded, boxes, outputs, intrinsics)]

  def _run(self, images: list[np.ndarray], regions: list) -> list[dict]:
    """The network on each image's (centre, side) square; outputs in image pixels."""
    size = self.input_size
    cuts = [self._crop(image, np.asarray(centre)[None], np.asarray([side]), size)[0]
            for image, (centre, side) in zip(images, regions)]
    rows = []
    for start in range(0, len(cuts), BATCH):
      out = self._network(jnp.stack(cuts[start:start + BATCH]))
      rows += [{k: np.asarray(v[i], np.float64) for k, v in out.items()}
               for i in range(len(out['pose_3d']))]
    centres = np.array([centre for centre, _ in regions], np.float64).reshape(-1, 2)
    sides = np.array([side for _, side in regions], np.float64)
    results = []
    for centre, side, matrix, out in zip(centres, sides,
                                         geometry.crop_matrices(centres, sides, size), rows):
      results.append(dict(
          pose_3d_crop=out['pose_3d'], pose_2d=geometry.from_crop(matrix, out['pose_2d']),
          confidence=out['confidence'], crop_scale=float(out['camera_scale']),
          crop_principal=out['camera_principal'], matrix=matrix, centre=centre,
          side=float(side)))
    return results

  @staticmethod
  def _padded(network):
    """``network`` on batches padded to ``BATCH`` (one compiled shape), the padding dropped."""
    def run(crops):
      n = len(crops)
      padded = jnp.concatenate([crops, jnp.zeros((BATCH - n,) + crops.shape[1:], crops.dtype)])
      return {k: v[:n] for k, v in jax.device_get(network(padded)).items()}
    return run

  def _finish(self, out: dict, intrinsics: dict, box, shape) -> dict:
    """The network's crop outputs in the camera frame and the image's pixels."""
    matrix, half = out['matrix'], out['side'] / 2
    pose, root, root_pixel = geometry.to_camera(
        out['pose_3d_crop'], out['crop_scale'], out['crop_principal'], matrix,
        intrinsics['focal'], intrinsics['principal'], self.input_size,
        self.config.data.virtual_camera)
    return dict(
        joint_names=skeleton.JOINT_NAMES,
        pose_3d=pose,
        pose_2d=out['pose_2d'],
        confidence=out['confidence'],
        root=root,
        box=None if box is None else np.asarray(box, np.float64).reshape(4),
        crop_box=np.array([*(out['centre'] - half), out['side'], out['side']]),
        crop_matrix=matrix,
        camera=dict(scale=out['crop_scale'] / matrix[0, 0], principal=root_pixel,
                    crop_scale=out['crop_scale'], crop_principal=out['crop_principal'],
                    crop_size=self.input_size),
        intrinsics=dict(intrinsics),
        image_size=(shape[1], shape[0]),
    )
