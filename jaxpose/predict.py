"""3D pose of the people in photos and videos, from a trained checkpoint.

  python -m jaxpose.predict --workdir=DIR [--step=N] --image=PATH [--image=PATH ...]
      [--bbox=x,y,w,h ... | --boxes=FILE] [--focal=F | --fov=DEG] --out=OUT
  python -m jaxpose.predict --workdir=DIR --video=PATH [--boxes=FILE] [--focal=F | --fov=DEG]
      [--smoothing=none|one_euro] --out=OUT

writes, per image, ``OUT/<name>.json`` (``to_json``'s layout; with ``--boxes``,
``{"people": [...]}``, one per box) and ``OUT/<name>.png``: the photo with the predicted 2D
skeletons and their crops, and the 3D skeletons from the front and the side; per video,
``OUT/<name>.jsonl`` and ``OUT/<name>.mp4`` (``jaxpose.video``). ``--boxes`` reads
``jaxpose.boxes``'s layouts. The model and its config come from the checkpoint
(``--config`` is optional; when given it must describe the checkpoint's model).

The crop. The network was trained on the *tight box*: the square of side
``crops.BOX_PADDING`` × the larger extent of the 2D joints, centred on the middle of that
extent (``jaxpose.data.crops``). A user box (x, y, w, h) is taken as the extent of the
person's joints (head top to ankles and wrists, as a person box drawn by hand or by a
detector is), so the network sees the square of side ``BOX_PADDING × max(w, h)`` centred on
the box. Without a box the paper's recipe applies: a first pass on the whole image (padded
to a square), then the tight box around the 2D joints it predicts, and a second pass on that
crop. Crops are cut by ``crop_images``, a JAX graph that the exported model shares
(``jaxpose.export``).

The camera. 3D is in the camera frame (x right, y down, z forward) in mm, root-relative.
The camera's intrinsics are a focal length ``focal`` in pixels (or a horizontal field of
view; else a photo's EXIF 35 mm-equivalent focal length; else a ``DEFAULT_FOV_DEG``° field
of view, that of a typical phone or compact camera: ``camera_intrinsics``) and a principal
point at the image centre. With them, the pose is rotated from the crop's
virtual camera back into the real one (perspective correction), and the absolute position
of the root follows from the learned weak-perspective camera ``u = s X + c``: the root lies
on the ray through ``c`` at the depth where ``s = f / Z`` (Z along the axis of the crop's
virtual camera, the frame the network predicts in). That depth assumes the person has
the size of the skeletons the network learned (a child reads as an adult further away), and
the weak-perspective model (the body's depth extent small against its distance).
"""

from __future__ import annotations

import functools
import glob
import json
import math
import os
import pathlib
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from PIL import ExifTags, Image, ImageDraw, ImageOps, UnidentifiedImageError

from jaxpose import boxes as box_files
from jaxpose import checkpoint
from jaxpose import cli
from jaxpose import fileio
from jaxpose import geometry
from jaxpose import parallel
from jaxpose import skeleton
from jaxpose import smoothing
from jaxpose import visualize
from jaxpose.data import crops
from jaxpose.models import posenet

# A typical phone or compact camera's horizontal field of view, for photos of unknown focal.
DEFAULT_FOV_DEG = 55.0
# Crops per network call. Every call is padded to it: one compiled shape per Predictor (a
# compilation costs far more than the padding on any device).
BATCH = 8
# Height of the pictures ``prediction_picture`` draws.
PICTURE_HEIGHT = 480


def default_focal(width: int) -> float:
  """Focal length (px) of a ``DEFAULT_FOV_DEG``° horizontal field of view."""
  return fov_focal(DEFAULT_FOV_DEG, width)


def fov_focal(fov_deg: float, width: int) -> float:
  """Focal length (px) of a ``fov_deg``° horizontal field of view across ``width`` pixels."""
  if not (np.isfinite(fov_deg) and 0 < fov_deg < 180):
    raise ValueError(f'--fov must be a horizontal field of view in degrees, between 0 and '
                     f'180, got {fov_deg}')
  return width / 2 / math.tan(math.radians(fov_deg) / 2)


def exif_focal(path, size: tuple[int, int]) -> float | None:
  """The focal length (px) from a photo's EXIF FocalLengthIn35mmFilm, or None without it.

  The 35 mm-equivalent focal length gives the angle of view of a 36 × 24 mm frame, whose
  diagonal is 43.27 mm (CIPA DC-004, as phones write it): the photo's diagonal in pixels
  spans the same angle, whatever its aspect ratio and orientation.
  """
  try:
    with Image.open(path) as pil:
      value = pil.getexif().get_ifd(ExifTags.IFD.Exif).get(ExifTags.Base.FocalLengthIn35mmFilm)
  except (UnidentifiedImageError, OSError, SyntaxError):
    return None
  if not value or not np.isfinite(float(value)) or float(value) <= 0:
    return None  # 0 is EXIF for "unknown"
  return float(value) / math.hypot(36.0, 24.0) * math.hypot(*size)


def camera_intrinsics(size: tuple[int, int], focal: float | None = None,
                      fov: float | None = None, path=None, name: str = 'the image') -> dict:
  """The intrinsics of an image of ``size`` (width, height): the principal point at its centre
  and the focal length from the first of ``focal`` (px), ``fov`` (horizontal degrees), the
  EXIF of the photo at ``path``, ``DEFAULT_FOV_DEG``; ``focal_source`` says which."""
  width, height = size
  if focal is not None and fov is not None:
    raise ValueError(f'give a focal length or a field of view for {name}, not both')
  if focal is not None and not (np.isfinite(focal) and focal > 0):
    raise ValueError(f'focal of {name} must be a positive number of pixels, got {focal}')
  exif = None if focal is not None or fov is not None or path is None else exif_focal(
      path, size)
  if focal is not None:
    source = 'focal'
  elif fov is not None:
    focal, source = fov_focal(fov, width), 'fov'
  elif exif is not None:
    focal, source = exif, 'exif'
  else:
    focal, source = default_focal(width), 'default'
  return dict(focal=float(focal), principal=np.array([width / 2, height / 2]),
              focal_source=source, focal_assumed=source == 'default')


def config_from_json(saved: dict) -> ml_collections.ConfigDict:
  """A checkpoint's config (``meta['config']``) as a ConfigDict; JSON lists back to tuples,
  as the config files write sequences."""
  def tuples(x):
    if isinstance(x, dict):
      return {k: tuples(v) for k, v in x.items()}
    return tuple(tuples(v) for v in x) if isinstance(x, list) else x
  return ml_collections.ConfigDict(tuples(saved))


def to_rgb(pil: Image.Image) -> np.ndarray:
  """(H, W, 3) uint8 RGB of an image of any mode PIL opens.

  PIL's own conversion clips grey levels wider than 8 bits at 255 (a 16-bit PNG turns
  white), so those are scaled: ``I;16*`` from 0-65535; ``I`` (32-bit integers) and ``F``
  (floats), whose files do not say their range, from the smallest of 1 (``F`` only), 255,
  65535 and 2^32 - 1 that holds the brightest pixel, negatives as 0. Every other mode (1, L,
  LA, P, PA, RGBA, CMYK, YCbCr, LAB, HSV, ...) is PIL's conversion.
  """
  if not (pil.mode.startswith('I;16') or pil.mode in ('I', 'F')):
    return np.asarray(pil.convert('RGB'))
  values = np.nan_to_num(np.asarray(pil, np.float64))
  if pil.mode.startswith('I;16'):
    full = 65535.0
  else:
    top = float(values.max(initial=0.0))
    scales = ((1.0,) if pil.mode == 'F' else ()) + (255.0, 65535.0, 2.0**32 - 1)
    full = next((s for s in scales if top <= s), top)
  grey = np.round(np.clip(values / full, 0.0, 1.0) * 255).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def load_image(image) -> tuple[np.ndarray, str]:
  """(H, W, 3) uint8 RGB (``to_rgb``) and a name for messages, from a path or an array."""
  if isinstance(image, (str, os.PathLike)):
    path = pathlib.Path(image)
    if not path.is_file():
      raise FileNotFoundError(f'image {path} does not exist')
    try:
      with Image.open(path) as pil:
        # Phone photos are stored sideways with an EXIF note on how to turn them.
        return to_rgb(ImageOps.exif_transpose(pil)), str(path)
    except Image.DecompressionBombError as e:
      # PIL refuses more than twice its MAX_IMAGE_PIXELS; its message gives the size.
      size = re.search(r'\((\d+) pixels\)', str(e))
      needed = -(-int(size.group(1)) // 2) if size else 'N'
      raise ValueError(f'image {path}: {e} (PIL\'s guard against decompression bombs: twice '
                       f'PIL.Image.MAX_IMAGE_PIXELS = {Image.MAX_IMAGE_PIXELS}); to read it, '
                       f'raise the limit with --max_image_pixels={needed}') from e
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
      raise ValueError(f'cannot read image {path}: {e}') from e
  array = np.asarray(image)
  if array.ndim != 3 or array.shape[-1] != 3 or array.dtype != np.uint8:
    raise ValueError(f'image must be a path or an (H, W, 3) uint8 array, got an array of '
                     f'shape {array.shape} and dtype {array.dtype}')
  if min(array.shape[:2]) < 1:
    raise ValueError(f'image is empty: shape {array.shape}')
  return array, f'array {array.shape}'


def image_paths(values: Sequence[str]) -> list[str]:
  """The files of ``--image`` values: a file as it is, a folder as its images (the files
  with an extension PIL reads, by name), a glob pattern as its matches (by name)."""
  Image.init()
  readable = set(Image.registered_extensions())
  paths = []
  for value in values:
    if os.path.isdir(value):
      found = sorted(str(p) for p in pathlib.Path(value).iterdir()
                     if p.is_file() and p.suffix.lower() in readable)
      if not found:
        raise FileNotFoundError(f'--image={value}: the folder holds no image (no file named '
                                f'*.jpg, *.png or another extension PIL reads)')
    elif glob.has_magic(value) and not os.path.exists(value):
      found = sorted(p for p in glob.glob(value) if os.path.isfile(p))
      if not found:
        raise FileNotFoundError(f'--image={value}: no file matches this pattern')
    else:
      found = [value]
    paths += found
  return paths


def parse_box(text: str) -> tuple[float, float, float, float]:
  """'x,y,w,h' → four floats."""
  try:
    box = tuple(float(v) for v in text.split(','))
  except ValueError:
    box = ()
  if len(box) != 4:
    raise ValueError(f'--bbox must be four numbers x,y,w,h, got {text!r}')
  return box


# A person box may reach past the image (a person cut off by its border), but one whose
# longer side exceeds this many times the image's longer side would leave the whole image
# under a quarter of the crop's side: no person is visible at that scale, the box is a typo.
MAX_BOX_TO_IMAGE = 4.0


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


def person_region(box, image_size: tuple[int, int], name: str) -> tuple[np.ndarray, float]:
  """Centre and side of the network's input square for a person box (module docstring)."""
  x, y, w, h = check_box(box, image_size, name)
  return np.array([x + w / 2, y + h / 2]), float(max(w, h) * crops.BOX_PADDING)


def crop_images(image, centres, sides, size: int):
  """The squares (``centres`` (N, 2), ``sides`` (N,), pixels) of an (H, W, 3) image at
  ``size`` × ``size`` pixels, (N, size, size, 3) float32 (jax.numpy).

  Each crop pixel averages the image over a window of the crop pixel's size (at least one
  image pixel) centred on it, pixels outside the image black: an area average where the
  crop shrinks (bilinear sampling alone would alias; training crops are smooth) and bilinear
  interpolation where it enlarges. The crop is axis-aligned, so this is one matrix product
  per image axis, and the same graph runs in the exported model.
  """
  def weights(centre, side, length):
    """(N, size, length): crop pixel i's share of each image pixel k along one axis."""
    step = side / size
    middle = centre[:, None] + (jnp.arange(size, dtype=jnp.float32) + 0.5 - size / 2) * step[
        :, None]
    half = jnp.maximum(step, 1.0)[:, None, None] / 2
    k = jnp.arange(length, dtype=jnp.float32)  # image pixel k covers [k, k + 1)
    overlap = (jnp.minimum(middle[..., None] + half, k + 1)
               - jnp.maximum(middle[..., None] - half, k))
    return jnp.maximum(overlap, 0.0) / (2 * half)

  centres = jnp.asarray(centres, jnp.float32)
  sides = jnp.asarray(sides, jnp.float32)
  rows = weights(centres[:, 1], sides, image.shape[0])
  cols = weights(centres[:, 0], sides, image.shape[1])
  return jnp.einsum('nih,hwc,njw->nijc', rows, image.astype(jnp.float32), cols,
                    precision=jax.lax.Precision.HIGHEST)


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


# Where Predictor runs the network on crops: XLA, or ONNX Runtime on the network translated
# to ONNX in memory (jaxpose.onnx_export; CPU only).
BACKENDS = ('jax', 'onnxruntime')


def _onnxruntime_network(network, size: int):
  """``network`` (float32 crops, as ``crop_images`` makes them → dict) run by ONNX Runtime
  on the CPU."""
  import onnxruntime  # pylint: disable=g-import-not-at-top
  from jaxpose import onnx_export  # pylint: disable=g-import-not-at-top
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
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])

    def load(ckpt, step):
      # The model comes from the checkpoint's config: the meta and the variables are read
      # from the same step (checkpoint.read looks it up again if training deletes it).
      meta = ckpt.read_meta(step)
      if config is None:
        chosen = config_from_json(meta['config'])
      else:
        checkpoint.check_model_config(meta['config'], config, ckpt.directory)
        chosen = config
      model = posenet.create(chosen.model)
      # Only the model is read, on one device: the optimiser state is not needed, and its
      # structure depends on optimiser settings that may have changed since.
      abstract = jax.tree.map(
          lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
          posenet.abstract_variables(model, int(chosen.data.input_size)))
      return chosen, model, ckpt.restore_variables(abstract, step), step

    # checkpoint.read checks the workdir before Orbax opens it: Orbax would create the
    # folder of a mistyped workdir.
    self.config, self.model, self.variables, self.step = checkpoint.read(workdir, step, load)
    self.input_size = int(self.config.data.input_size)
    self.backend = backend
    network = functools.partial(crop_network(self.model), self.variables)
    if backend == 'onnxruntime':
      self._network = _onnxruntime_network(network, self.input_size)
    else:
      self._network = self._padded(parallel.jit_local(network))
    self._crop = parallel.jit_local(crop_images, static_argnums=3)

  def predict(self, image, box=None, focal: float | None = None,
              fov: float | None = None) -> dict:
    """The pose of the person in ``image`` (a path or an (H, W, 3) uint8 array).

    Args:
      image: the photo.
      box: (x, y, w, h) person box in pixels, or None to find the person.
      focal: the camera's focal length in pixels, or None for ``camera_intrinsics``'s
        choice: ``fov``, else the photo's EXIF, else ``default_focal``.
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
      array, name = load_image(image)
      path = image if isinstance(image, (str, os.PathLike)) else None
      arrays.append((array, name))
      intrinsics.append(camera_intrinsics((array.shape[1], array.shape[0]), f, v, path, name))
    return arrays, intrinsics

  def _predict(self, loaded: list[tuple[np.ndarray, str]], boxes: list,
               intrinsics: list[dict]) -> list[dict]:
    """One person per (image, box, intrinsics); a None box: find the person."""
    regions = []
    for (array, name), box in zip(loaded, boxes):
      height, width = array.shape[:2]
      regions.append(person_region(box, (width, height), name) if box is not None
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
    results = []
    for (centre, side), out in zip(regions, rows):
      matrix = geometry.crop_matrix(centre, side, size)
      results.append(dict(
          pose_3d_crop=out['pose_3d'], pose_2d=from_crop(matrix, out['pose_2d']),
          confidence=out['confidence'], crop_scale=float(out['camera_scale']),
          crop_principal=out['camera_principal'], matrix=matrix,
          centre=np.asarray(centre, np.float64), side=float(side)))
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
    pose, root, root_pixel = to_camera(
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


def from_crop(matrix, points):
  """(..., J, 2) crop pixels → image pixels, for (..., 3, 3) scale-and-translate crop
  matrices (numpy or jax.numpy; no matrix inverse, which TensorFlow cannot run from JAX)."""
  xp = np if isinstance(matrix, np.ndarray) else jnp
  scale = xp.stack([matrix[..., 0, 0], matrix[..., 1, 1]], axis=-1)
  return (points - matrix[..., None, :2, 2]) / scale[..., None, :]


def to_camera(pose_3d_crop, crop_scale, crop_principal, matrix, focal, principal,
              input_size: int, virtual_camera: bool = True):
  """The network's outputs for crops → the camera frame (module docstring); numpy or
  jax.numpy (by the type of ``matrix``), over any leading batch axes (shown as ...).

  Args:
    pose_3d_crop: (..., J, 3) root-relative pose as predicted (the crop's virtual camera
      frame when ``virtual_camera``, the camera frame otherwise).
    crop_scale, crop_principal: (...) and (..., 2) the weak-perspective camera in the crop
      (px/mm, px).
    matrix: (..., 3, 3) image → crop pixels. focal: (...) the image's focal length, px.
    principal: (..., 2) the image's principal point, px. input_size: the crop's side, px.
    virtual_camera: the checkpoint's ``config.data.virtual_camera``.

  Returns:
    (..., J, 3) root-relative pose in the camera frame, (..., 3) the root's position in it
    (mm), and (..., 2) the root's pixel in the image.
  """
  xp = np if isinstance(matrix, np.ndarray) else jnp
  dtype = matrix.dtype
  focal = xp.asarray(focal, dtype)[..., None] * xp.ones(2, dtype)
  principal = xp.asarray(principal, dtype)
  # The crop is scale-and-translate: its focal scales, its principal point maps.
  crop_focal = focal * matrix[..., 0, 0, None]
  crop_principal_point = geometry.apply_affine(matrix, principal[..., None, :])[..., 0, :]
  pose = xp.asarray(pose_3d_crop, dtype)
  if virtual_camera:
    batch = crop_focal.reshape(-1, 2)
    rotation = geometry.virtual_camera_rotation(
        batch, crop_principal_point.reshape(-1, 2), xp.ones(batch.shape[:1], bool),
        input_size).reshape(matrix.shape)
    pose = geometry.correct_perspective(pose, rotation)
  else:
    rotation = xp.broadcast_to(xp.eye(3, dtype=dtype), matrix.shape)
  root_pixel = from_crop(matrix, xp.asarray(crop_principal, dtype)[..., None, :])[..., 0, :]
  # The scale is f / Z with Z the root's depth along the frame the network predicts in
  # (the virtual camera's axis); the root is on the ray through its pixel.
  depth = geometry.unproject_depth(xp.asarray(crop_scale, dtype), crop_focal[..., 0])
  ray = xp.concatenate([(root_pixel - principal) / focal, xp.ones_like(depth)[..., None]],
                       axis=-1)
  along = (rotation[..., 2, :] * ray).sum(-1)
  return pose, ray * (depth / along)[..., None], root_pixel


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


def main(argv):
  del argv
  fl = flags.FLAGS
  if bool(fl.image) == bool(fl.video):
    raise ValueError('give --image (one or more photos) or --video, one of the two')
  if fl.bbox and fl.boxes:
    raise ValueError('give --bbox or --boxes, not both')
  if fl.focal is not None and fl.fov is not None:
    raise ValueError('give --focal or --fov, not both')
  table = None if fl.boxes is None else box_files.load(fl.boxes, fl.min_box_score)
  if fl.video:
    if not fileio.is_local(fl.out):
      raise ValueError(f'--out={fl.out}: a video\'s outputs are written by OpenCV, which needs '
                       'a local folder')
    from jaxpose import video  # pylint: disable=g-import-not-at-top  (it imports this module)
    # Checked before the (slower) restore, so that a bad file or box fails at once.
    capture, info = video.open_video(fl.video)
    capture.release()
    frame_boxes = None if table is None else box_files.for_frames(table, fl.boxes)
    for index, frame_boxes_at in (frame_boxes or {}).items():
      for i, box in enumerate(frame_boxes_at):
        check_box(box, (info.width, info.height),
                  f'--boxes={fl.boxes}, box {i} of frame {index} of {fl.video}')
    params = None if fl.smoothing == 'none' else smoothing.OneEuroParams(
        fl.one_euro_min_cutoff, fl.one_euro_beta, fl.one_euro_d_cutoff)
    predictor = Predictor(fl.workdir, fl.step, fl.config, fl.backend)
    summary = video.predict_video(
        predictor, fl.video, fl.out, boxes=frame_boxes, focal=fl.focal, fov=fl.fov,
        smoothing_params=params, lost_confidence=fl.lost_confidence,
        extra=dict(checkpoint=dict(workdir=fileio.absolute(fl.workdir), step=predictor.step)))
    print(f'{fl.video}: wrote {summary["jsonl"]} and {summary["video"]}: '
          f'{summary["frames"]} frames at {summary["frames_per_second"]:.1f} frames/s, '
          f'{summary["skipped"]} skipped (undecodable), {summary["lost"]} tracks lost')
    return
  if fl.max_image_pixels is not None:
    Image.MAX_IMAGE_PIXELS = fl.max_image_pixels
  paths = image_paths(fl.image)
  boxes = [parse_box(b) for b in fl.bbox or []]
  if boxes and len(boxes) != len(paths):
    raise ValueError(f'--bbox given {len(boxes)} times for {len(paths)} --image; give one '
                     f'box per image, in the same order, or none')
  people = None if table is None else box_files.for_images(table, paths, fl.boxes)
  # Read and checked before the (slower) restore, so that a bad file or box fails at once.
  images = [load_image(path)[0] for path in paths]
  for path, image, box, text in zip(paths, images, boxes, fl.bbox or []):
    check_box(box, (image.shape[1], image.shape[0]), f'--bbox={text} (image {path})')
  for path, image, image_boxes in zip(paths, images, people or []):
    for i, box in enumerate(image_boxes):
      check_box(box, (image.shape[1], image.shape[0]),
                f'--boxes={fl.boxes}, box {i} of image {path}')
  predictor = Predictor(fl.workdir, fl.step, fl.config, fl.backend)
  if people is None:
    predictions = predictor.predict_many(paths, boxes or None, fl.focal, fl.fov)
  else:
    predictions = predictor.predict_people(paths, people, fl.focal, fl.fov)
  checkpoint_info = dict(checkpoint=dict(workdir=fileio.absolute(fl.workdir),
                                         step=predictor.step))
  for path, image, name, prediction in zip(paths, images, output_names(paths), predictions):
    files = write(prediction, image, fl.out, name,
                  dict(image=os.path.abspath(path), **checkpoint_info))
    count = '' if people is None else f' ({len(prediction)} people)'
    print(f'{path}: wrote {" and ".join(files)}{count}')


def define_flags():
  flags.DEFINE_enum('backend', 'jax', BACKENDS, 'What runs the network on the crops: XLA, '
                    'or ONNX Runtime on the network translated to ONNX (CPU; '
                    'jaxpose.onnx_export).')
  flags.DEFINE_multi_string('image', None, 'Image file to predict on, a folder of images or a '
                            'glob pattern such as "photos/*.jpg" (repeat for several).')
  flags.DEFINE_integer('max_image_pixels', None, 'PIL.Image.MAX_IMAGE_PIXELS: PIL refuses '
                       'images of more than twice this many pixels (default 89,478,485), a '
                       'guard against decompression bombs.', lower_bound=1)
  flags.DEFINE_multi_string(
      'bbox', None, 'Person box x,y,w,h in pixels of the image (the extent of its joints); '
      'none (find the person), or one per --image in the same order.')
  flags.DEFINE_float('focal', None, 'Focal length in pixels of the images or the video '
                     '(default: --fov, else the EXIF 35 mm-equivalent focal length of a photo, '
                     'else a horizontal field of view of 55 degrees).')
  flags.DEFINE_float('fov', None, 'Horizontal field of view in degrees, instead of --focal.')
  flags.DEFINE_string('out', None, 'Output folder for <name>.json and <name>.png, or the '
                      'video\'s <name>.jsonl and <name>.mp4.')
  flags.DEFINE_string('video', None, 'Video file to predict on, frame by frame (instead of '
                      '--image).')
  flags.DEFINE_string('boxes', None, 'JSON file of person boxes per image or per video frame '
                      '(jaxpose/boxes.py: its own layout or COCO-style detections); every box '
                      'is one person.')
  flags.DEFINE_float('min_box_score', 0.5, 'Detections of a --boxes file scoring lower are '
                     'left out.')
  flags.DEFINE_enum('smoothing', 'one_euro', ['none', 'one_euro'], 'Temporal smoothing of a '
                    'video\'s 2D and 3D poses (jaxpose/smoothing.py).')
  flags.DEFINE_float('one_euro_min_cutoff', 1.0, 'One-Euro cut-off frequency at rest, Hz '
                     '(lower: smoother).')
  flags.DEFINE_float('one_euro_beta', 1.0, 'One-Euro cut-off increase per m/s of joint speed, '
                     'Hz (higher: less lag on fast motion).')
  flags.DEFINE_float('one_euro_d_cutoff', 1.0, 'One-Euro cut-off frequency of the speed, Hz.')
  flags.DEFINE_float('lost_confidence', 0.3, 'A video\'s track is lost when its mean joint '
                     'confidence falls below this (jaxpose/video.py).')


if __name__ == '__main__':
  cli.run(main, required=('workdir', 'out'), define_flags=define_flags)
