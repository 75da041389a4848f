"""The exported models, run without jaxpose: the SavedModel by TensorFlow alone in a
separate process, the jax.export artefact deserialised, both against the Predictor on the
real photos of ../shared/fixtures/real."""

import json
import subprocess
import sys

import jax
import numpy as np
from PIL import Image

from jaxpose import export
from jaxpose.inference import crop
from jaxpose.inference import export as export_lib
from jaxpose.inference import predictor as predictor_lib
from conftest import run_main

# Runs in a fresh interpreter: TensorFlow and numpy only.
_TENSORFLOW_ONLY = r'''
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
inputs = np.load(sys.argv[2])
out = {}
crops = model.signatures['crops'](crops=tf.constant(inputs['crops']))
out.update({'crops/' + k: v.numpy() for k, v in crops.items()})
for i in range(int(inputs['count'])):
  result = model.signatures['serving_default'](
      image=tf.constant(inputs[f'image_{i}']), boxes=tf.constant(inputs[f'boxes_{i}']),
      focal=tf.constant(inputs[f'focal_{i}']))
  out.update({f'image_{i}/' + k: v.numpy() for k, v in result.items()})
# TensorFlow imports jax's version module where jax is installed; jaxpose stays out.
assert not any(m.split('.')[0] in ('jaxpose', 'flax') for m in sys.modules)
np.savez(sys.argv[3], **out)
'''

# Runs in a fresh interpreter: ONNX Runtime and numpy only, at batches 1 and 5.
_ONNXRUNTIME_ONLY = r'''
import sys
import numpy as np
import onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])
crops = np.load(sys.argv[2])['crops']
names = [o.name for o in session.get_outputs()]
out = {}
for n in (1, 5):
  out.update({f'{n}/{k}': v for k, v in zip(names, session.run(None, {'crops': crops[:n]}))})
assert not any(m.split('.')[0] in ('jaxpose', 'jax', 'flax', 'tensorflow') for m in sys.modules)
np.savez(sys.argv[3], **out)
'''

# What both signatures and Predictor.predict share, by the export's names.
_IMAGE_KEYS = {'pose_3d': 'pose_3d', 'pose_2d': 'pose_2d', 'confidence': 'confidence',
               'root': 'root', 'crop_box': 'crop_box', 'crop_matrix': 'crop_matrix',
               'camera_scale': ('camera', 'scale'), 'camera_principal': ('camera', 'principal'),
               'crop_scale': ('camera', 'crop_scale'),
               'crop_principal': ('camera', 'crop_principal')}


def _get(prediction, key):
  return (prediction[key[0]][key[1]] if isinstance(key, tuple) else prediction[key])


def test_exports_equal_the_predictor(trained_smoke_workdir, real_photos, tmp_path):
  workdir = trained_smoke_workdir
  run_main(export, [f'--workdir={workdir}', f'--out={tmp_path / "export"}'])
  info = json.loads((tmp_path / 'export' / 'export.json').read_text())
  assert info['step'] == 2

  predictor = predictor_lib.Predictor(workdir)
  photos = real_photos
  paths, boxes, focals = zip(*photos)
  # The signature's boxes are float32: the Predictor gets the same numbers.
  boxes = [np.float32(box).astype(np.float64) for box in boxes]
  predictions = predictor.predict_many(paths, boxes, focals)
  size = predictor.input_size
  images = [np.asarray(Image.open(path).convert('RGB')) for path in paths]
  crops = np.concatenate([np.asarray(crop.crop_images(
      image, [p['crop_box'][:2] + p['crop_box'][2] / 2], [p['crop_box'][2]], size))
      for image, p in zip(images, predictions)])
  crops = np.round(crops).astype(np.uint8)
  inputs = dict(crops=crops, count=len(images))
  for i, (image, box, p) in enumerate(zip(images, boxes, predictions)):
    # Two boxes per photo: the annotated one and the same moved, in one call.
    inputs.update({f'image_{i}': image, f'focal_{i}': np.float32(p['intrinsics']['focal']),
                   f'boxes_{i}': np.float32([box, np.add(box, [20, -10, 0, 0])])})
  np.savez(tmp_path / 'inputs.npz', **inputs)
  run = subprocess.run([sys.executable, '-c', _TENSORFLOW_ONLY, str(tmp_path / 'export' /
                        'saved_model'), str(tmp_path / 'inputs.npz'), str(tmp_path / 'tf.npz')],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  got = np.load(tmp_path / 'tf.npz')

  differences = {}
  moved = predictor.predict_many(
      paths, [np.float32(np.add(b, [20, -10, 0, 0])).astype(np.float64) for b in boxes], focals)
  for i, pair in enumerate(zip(predictions, moved)):
    for j, prediction in enumerate(pair):
      for name, key in _IMAGE_KEYS.items():
        difference = np.abs(got[f'image_{i}/{name}'][j] - _get(prediction, key)).max()
        differences[name] = max(differences.get(name, 0.0), difference)
  print('SavedModel image signature vs Predictor, max |difference|:', differences)
  assert all(d < 1e-3 for d in differences.values()), differences

  # The crop signature and the jax.export artefact against the network itself.
  network = jax.device_get(predictor_lib.crop_network(predictor.model)(predictor.variables,
                                                                      crops))
  exported = jax.export.deserialize((tmp_path / 'export' / export_lib.JAX_EXPORT).read_bytes())
  from_jax = jax.device_get(exported.call(crops))
  for name, value in network.items():
    tf_difference = np.abs(got[f'crops/{name}'] - value).max()
    jax_difference = np.abs(from_jax[name] - value).max()
    print(f'crops/{name}: SavedModel {tf_difference:.2g}, jax.export {jax_difference:.2g}')
    assert tf_difference < 1e-3 and jax_difference < 1e-3

  # The ONNX model in ONNX Runtime alone, against the SavedModel's crops signature and the
  # network, on the same uint8 crops.
  assert len(crops) >= 5
  run = subprocess.run([sys.executable, '-c', _ONNXRUNTIME_ONLY, str(tmp_path / 'export' /
                        export_lib.ONNX), str(tmp_path / 'inputs.npz'), str(tmp_path / 'ort.npz')],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
  assert run.returncode == 0, run.stderr[-3000:]
  onnx_out = np.load(tmp_path / 'ort.npz')
  for n in (1, 5):
    for name, value in network.items():
      assert onnx_out[f'{n}/{name}'].shape == value[:n].shape
      difference = np.abs(onnx_out[f'{n}/{name}'] - value[:n]).max()
      saved = np.abs(onnx_out[f'{n}/{name}'] - got[f'crops/{name}'][:n]).max()
      print(f'batch {n} crops/{name}: ONNX Runtime vs network {difference:.2g}, vs '
            f'SavedModel {saved:.2g}')
      assert saved < (0.5 if name == 'pose_3d' else 1e-2) and difference < 1e-2
