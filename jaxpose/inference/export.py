"""A checkpoint as models that run without jaxpose: a jax.export artefact, an ONNX model and
a SavedModel.

  python -m jaxpose.export --workdir=DIR [--step=N] --out=OUT

writes

* ``OUT/crops.jax_export``: the network on crops, serialized with ``jax.export`` (StableHLO,
  the weights inside) for a symbolic batch size: ``jax.export.deserialize(bytes).call(crops)``
  with (B, S, S, 3) uint8 crops returns ``predictor.crop_network``'s dict. It needs jax (and
  jaxlib) only, of this version or newer.
* ``OUT/crops.onnx``: the same network as an ONNX model (opset ``onnx_export.OPSET``, input
  ``crops`` (B, S, S, 3) uint8 for any B, the same outputs by name), for ONNX Runtime,
  TensorRT, OpenVINO and the like (``jaxpose.inference.onnx_export``).
* ``OUT/saved_model/``: a TensorFlow SavedModel made with ``jax2tf`` (the StableHLO
  embedded in ``XlaCallModule`` ops, at a version the exporting TensorFlow reads:
  ``stablehlo_for_tensorflow``), which TensorFlow alone (that version or newer) loads and
  runs, with two signatures:

  - ``crops``: ``crops`` (B, S, S, 3) uint8 → ``predictor.crop_network``'s dict:
    root-relative 3D in mm in each crop's virtual camera, 2D and the weak-perspective camera
    in crop pixels, and the joints' confidence;
  - ``image`` (the default, ``serving_default``): ``image`` (H, W, 3) uint8, ``boxes``
    (N, 4) float32 person boxes (x, y, w, h) and ``focal`` () float32, px (principal point
    at the image centre) → what ``Predictor.predict`` returns for each box, batched: crop,
    network, perspective correction and the mapping back into the image are in the graph
    (the Predictor's crop geometry, ``crop.person_squares`` and ``geometry``, in float64).
    No boxes (N = 0) give empty results.

  Inputs of another shape, a box with w or h <= 0 or not finite, and a focal <= 0 raise
  ``tf.errors.InvalidArgumentError`` naming the input and what it should be.

``OUT/export.json`` records the checkpoint, the input size and the signatures.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np

from jaxpose import fileio
from jaxpose import geometry
from jaxpose import parallel
from jaxpose import skeleton
from jaxpose.inference import crop
from jaxpose.inference import onnx_export
from jaxpose.inference import predictor as predictor_lib

# Where the artefacts run: lowered for each, whatever machine exports them.
PLATFORMS = ('cpu', 'cuda', 'tpu')
JAX_EXPORT = 'crops.jax_export'
ONNX = 'crops.onnx'
SAVED_MODEL = 'saved_model'


def image_outputs(predictor: predictor_lib.Predictor):
  """(variables, ``image`` (H, W, 3) uint8, ``boxes`` (N, 4), ``focal`` ()) →
  ``Predictor.predict``'s arrays for each box, stacked: ``pose_3d``, ``pose_2d``,
  ``confidence``, ``root``, ``crop_box``, ``crop_matrix``, ``camera_scale``,
  ``camera_principal``, ``crop_scale``, ``crop_principal``. The network runs in float32, the
  geometry in float64 (trace with ``jax.enable_x64``)."""
  size = predictor.input_size
  network = predictor_lib.crop_network(predictor.model)

  def run(variables, image, boxes, focal):
    centres, sides = crop.person_squares(boxes.astype(jnp.float64))
    out = network(variables, crop.crop_images(image, centres, sides, size))
    out = jax.tree.map(lambda x: x.astype(jnp.float64), out)
    matrix = geometry.crop_matrices(centres, sides, size)
    height, width = image.shape[0], image.shape[1]
    principal = jnp.stack([width / 2, height / 2]).astype(jnp.float64)
    focal = jnp.broadcast_to(focal.astype(jnp.float64), sides.shape)
    pose, root, root_pixel = geometry.to_camera(
        out['pose_3d'], out['camera_scale'], out['camera_principal'], matrix, focal,
        jnp.broadcast_to(principal, centres.shape), size,
        predictor.config.data.virtual_camera)
    return dict(
        pose_3d=pose,
        pose_2d=geometry.from_crop(matrix, out['pose_2d']),
        confidence=out['confidence'],
        root=root,
        crop_box=jnp.concatenate([centres - sides[:, None] / 2, sides[:, None],
                                  sides[:, None]], axis=-1),
        crop_matrix=matrix,
        camera_scale=out['camera_scale'] / matrix[:, 0, 0],
        camera_principal=root_pixel,
        crop_scale=out['camera_scale'],
        crop_principal=out['camera_principal'])
  return run


def export_crops(predictor: predictor_lib.Predictor) -> jax.export.Exported:
  """``predictor.crop_network`` with the checkpoint's weights, exported for a symbolic batch
  size."""
  size = predictor.input_size
  batch, = jax.export.symbolic_shape('b')
  network = functools.partial(predictor_lib.crop_network(predictor.model), predictor.variables)
  return jax.export.export(parallel.jit_local(network), platforms=PLATFORMS)(
      jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8))


def onnx_crops(predictor: predictor_lib.Predictor) -> bytes:
  """``predictor.crop_network`` with the checkpoint's weights as a serialized ONNX model."""
  size = predictor.input_size
  network = functools.partial(predictor_lib.crop_network(predictor.model), predictor.variables)
  return onnx_export.to_onnx(network, (size, size, 3), np.uint8, 'crops',
                             doc=f'jaxpose step {predictor.step}').SerializeToString()


def _version(text: str) -> tuple[int, ...]:
  return tuple(int(part) for part in text.split('.'))


@contextlib.contextmanager
def stablehlo_for_tensorflow():
  """Serializes ``jax.export``'s StableHLO, while open, at a version that this TensorFlow's
  ``XlaCallModule`` reads; yields that version.

  jax writes the version of about four weeks before its own, which outruns the TensorFlow
  beside it when jax is the newer (jax 0.12.1 writes 1.22.0; TensorFlow 2.21 reads up to
  1.13.7 and fails on anything newer). Writing the older of the two keeps the artefact
  loadable; an op that the older version lacks fails here, at export, naming the version.
  jax has no public switch for this, so its serializer is wrapped for the duration.
  """
  # pylint: disable=g-import-not-at-top
  from jax._src import xla_bridge
  from jax._src.export import _export
  from jax._src.lib.mlir.dialects import hlo
  from tensorflow.compiler.mlir.stablehlo import stablehlo as tf_stablehlo
  # pylint: enable=g-import-not-at-top
  jax_target = hlo.get_version_from_compatibility_requirement(
      hlo.StablehloCompatibilityRequirement.WEEK_4)
  target = min(jax_target, tf_stablehlo.get_current_version(), key=_version)
  original = _export._module_to_bytecode  # pylint: disable=protected-access

  def serialize(module):
    return jax.extend.mlir.serialize_portable_artifact(
        module, target, xla_bridge.get_backend().serialize_with_sdy)

  _export._module_to_bytecode = serialize  # pylint: disable=protected-access
  try:
    yield target
  finally:
    _export._module_to_bytecode = original  # pylint: disable=protected-access


def saved_model(predictor: predictor_lib.Predictor, directory: str) -> str:
  """Writes the SavedModel of the module docstring to ``directory``; returns the StableHLO
  version of its ``XlaCallModule`` ops (``stablehlo_for_tensorflow``)."""
  # Imported here: only this needs TensorFlow's side of the bridge.
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top

  size = predictor.input_size
  module = tf.Module()
  # The weights are variables of the SavedModel, stored once for both signatures.
  module.weights = tf.nest.map_structure(tf.Variable, jax.device_get(predictor.variables))
  crops_tf = jax2tf.convert(predictor_lib.crop_network(predictor.model), with_gradient=False,
                            polymorphic_shapes=[None, '(b, _, _, _)'],
                            native_serialization_platforms=PLATFORMS)
  image_tf = jax2tf.convert(image_outputs(predictor), with_gradient=False,
                            polymorphic_shapes=[None, '(h, w, _)', '(n, _)', '()'],
                            native_serialization_platforms=PLATFORMS)

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec((None, size, size, 3), tf.uint8, name='crops')])
  def crops(images):
    return crops_tf(module.weights, _checked_crops(tf, images, size))

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec((None, None, 3), tf.uint8, name='image'),
      tf.TensorSpec((None, 4), tf.float32, name='boxes'),
      tf.TensorSpec((), tf.float32, name='focal')])
  def image(image, boxes, focal):
    image, run_boxes, focal = _checked_image_inputs(tf, image, boxes, focal)
    count = tf.shape(boxes)[0]
    # The graph needs a box: an empty list runs one over the whole image and keeps none.
    return tf.nest.map_structure(lambda x: x[:count],
                                 image_tf(module.weights, image, run_boxes, focal))

  module.crops, module.image = crops, image
  with stablehlo_for_tensorflow() as version:
    signatures = {'crops': crops.get_concrete_function()}
    # Traced (and saved, which traces again) with 64-bit floats on, for the geometry of
    # image_outputs; the network's float32 is explicit, so crops' graph is the same either
    # way.
    with jax.enable_x64(True):
      signatures['image'] = signatures['serving_default'] = image.get_concrete_function()
      tf.saved_model.save(module, directory, signatures=signatures)
  return version


def _checked_crops(tf, crops, size: int):
  """``crops``, once checked to be (B, size, size, 3): the compiled model would otherwise
  fail with a compiler dump of several KB, its cause on one line inside."""
  check = tf.debugging.assert_equal(
      tf.shape(crops)[1:], tf.constant([size, size, 3]),
      message=f'crops: expected (B, {size}, {size}, 3) uint8 crops of the network\'s input size')
  with tf.control_dependencies([check]):
    return tf.identity(crops)


def _checked_image_inputs(tf, image, boxes, focal):
  """(image, the boxes to run, focal) once checked: an (H, W, 3) image with H, W >= 1,
  boxes with finite x, y and w, h > 0 (a zero-size box has no crop), a finite focal > 0.
  An empty box list runs one box over the whole image (``image`` keeps no row of it)."""
  shape = tf.shape(image)
  checks = [
      tf.debugging.assert_equal(shape[2], 3, message='image: expected (H, W, 3) uint8 RGB'),
      tf.debugging.assert_positive(shape[:2], message='image: expected H, W >= 1'),
      tf.debugging.assert_all_finite(boxes, message='boxes: expected finite x, y, w, h'),
      tf.debugging.assert_positive(boxes[:, 2:], message='boxes: expected w, h > 0 for every '
                                   'box (x, y, w, h); a zero-size box has no crop'),
      tf.debugging.assert_all_finite(focal, message='focal: expected a finite number'),
      tf.debugging.assert_positive(focal, message='focal: expected a focal length > 0 px')]
  whole = tf.cast(tf.stack([[0, 0, shape[1], shape[0]]]), boxes.dtype)
  with tf.control_dependencies(checks):
    return (tf.identity(image), tf.cond(tf.shape(boxes)[0] > 0, lambda: boxes, lambda: whole),
            tf.identity(focal))


def export(predictor: predictor_lib.Predictor, out_dir: str) -> dict:
  """Writes the artefacts of the module docstring; returns their paths."""
  fileio.gfile.makedirs(out_dir)
  paths = dict(jax_export=os.path.join(out_dir, JAX_EXPORT),
               onnx=os.path.join(out_dir, ONNX),
               saved_model=os.path.join(out_dir, SAVED_MODEL),
               info=os.path.join(out_dir, 'export.json'))
  serialized = export_crops(predictor).serialize()
  fileio.write_atomically(paths['jax_export'], lambda f: f.write(serialized), binary=True)
  serialized = onnx_crops(predictor)
  fileio.write_atomically(paths['onnx'], lambda f: f.write(serialized), binary=True)
  stablehlo_version = saved_model(predictor, paths['saved_model'])
  info = dict(step=predictor.step, input_size=predictor.input_size,
              joint_names=list(skeleton.JOINT_NAMES), jax_version=jax.__version__,
              saved_model_stablehlo_version=stablehlo_version,
              onnx_opset=onnx_export.OPSET,
              signatures=dict(crops='crops (B, S, S, 3) uint8',
                              image='image (H, W, 3) uint8, boxes (N, 4) float32 x, y, '
                                    'w, h px, focal () float32 px'))
  fileio.write_atomically(paths['info'], lambda f: json.dump(info, f, indent=1))
  return paths
