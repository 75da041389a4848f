"""jaxpose.inference.onnx_export against JAX itself: each translated primitive on small
functions at two batch sizes, the pending-convolution folding (BatchNorm and ReLU into the
Conv), the Predictor's two backends on the real photos, and a named error for a primitive
without a rule. (The exported file in ONNX Runtime alone is tested in test_export.)"""

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime
import pytest

from jaxpose.inference import onnx_export
from jaxpose.inference import predictor as predictor_lib


def _run_onnx(model: onnx.ModelProto, x: np.ndarray) -> dict:
  session = onnxruntime.InferenceSession(model.SerializeToString(),
                                         providers=['CPUExecutionProvider'])
  names = [o.name for o in session.get_outputs()]
  return dict(zip(names, session.run(None, {'x': x})))


def _check(fn, shape, dtype=np.float32, atol=1e-4):
  model = onnx_export.to_onnx(fn, shape, dtype, 'x')
  rng = np.random.default_rng(0)
  for batch in (1, 3):
    x = (rng.integers(0, 256, (batch, *shape)) if dtype == np.uint8 else
         rng.normal(size=(batch, *shape))).astype(dtype)
    want = jax.device_get(jax.jit(fn)(x))
    got = _run_onnx(model, x)
    assert set(got) == set(want)
    for key in want:
      np.testing.assert_allclose(got[key], want[key], atol=atol, rtol=1e-4, err_msg=key)
  return model


def test_convolution_block_folds_batchnorm_and_relu_into_the_conv():
  rng = np.random.default_rng(1)
  kernel = rng.normal(size=(3, 3, 4, 6)).astype(np.float32)
  grouped = rng.normal(size=(1, 1, 3, 6)).astype(np.float32)
  mean, var = rng.normal(size=6).astype(np.float32), rng.uniform(0.5, 2, 6).astype(np.float32)
  scale, bias = rng.normal(size=6).astype(np.float32), rng.normal(size=6).astype(np.float32)

  def fn(x):
    y = jax.lax.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    y = jax.nn.relu((y - mean) * jax.lax.rsqrt(var + 1e-5) * scale + bias)
    z = jax.lax.conv_general_dilated(y, grouped, (1, 1), 'VALID', feature_group_count=2,
                                     dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    pooled = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                   ((0, 0), (1, 1), (1, 1), (0, 0)))
    return dict(y=y, z=z, pooled=pooled)

  model = _check(fn, (9, 9, 4))
  ops = [node.op_type for node in model.graph.node]
  # BatchNorm's four operations and the ReLU are in the first Conv's weights and a Relu.
  assert ops.count('Conv') == 2 and ops.count('Relu') == 1
  assert not {'Sub', 'Mul', 'Add', 'Sqrt'} & set(ops)


def test_dense_indexing_broadcasts_and_reductions():
  rng = np.random.default_rng(2)
  weight = rng.normal(size=(12, 5)).astype(np.float32)

  def fn(x):
    flat = x.reshape(x.shape[0], -1)
    dense = flat @ weight + 1.0
    pair = jnp.einsum('bij,bik->bjk', x, x)
    return dict(dense=dense, first=x[:, 0], middle=x[:, 1:3], pair=pair,
                peak=x.max(axis=(1, 2)), total=jnp.sum(x * 2, axis=1),
                stacked=jnp.stack([x, -x], axis=1), scale=jnp.exp(x[:, 0, 0]) / 3.0,
                square=x ** 2, where=jnp.where(x > 0, x, 0.5 * x),
                arg=jnp.argmax(x, axis=-1))

  _check(fn, (3, 4))


def test_uint8_input():
  _check(lambda x: dict(y=x.astype(jnp.float32) / 255.0), (4, 4, 3), np.uint8)


def test_a_primitive_without_a_rule_is_named():
  with pytest.raises(NotImplementedError, match="'sort'"):
    onnx_export.to_onnx(lambda x: dict(y=jnp.sort(x, axis=1)), (5,), np.float32, 'x')


def test_predictor_backends_agree_on_the_real_photos(predictor, trained_smoke_workdir,
                                                     real_photos):
  paths, boxes, focals = zip(*real_photos)
  by_jax = predictor.predict_many(paths, boxes, focals)
  by_onnx = predictor_lib.Predictor(trained_smoke_workdir, backend='onnxruntime').predict_many(
      paths, boxes, focals)
  for a, b in zip(by_jax, by_onnx):
    np.testing.assert_allclose(b['pose_3d'], a['pose_3d'], atol=1e-2)  # mm
    np.testing.assert_allclose(b['pose_2d'], a['pose_2d'], atol=1e-3)  # px
    np.testing.assert_allclose(b['root'], a['root'], rtol=1e-4)
    np.testing.assert_allclose(b['confidence'], a['confidence'], atol=1e-4)


def test_an_unknown_backend_is_refused():
  with pytest.raises(ValueError, match="backend='tflite'"):
    predictor_lib.Predictor('unused', backend='tflite')
