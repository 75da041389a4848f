"""Keras ResNet-50 → the backbone: same res4f activations, and loadable for training.

No download: Keras' ResNet-50 is built with random weights (and random BatchNorm statistics
and convolution biases, so that folding the biases is exercised) and saved as HDF5.
"""

import functools

import h5py
import jax
import numpy as np
import pytest

from jaxpose import parallel
from jaxpose import state as state_lib
from jaxpose import train
from jaxpose.models import posenet
from jaxpose.models import resnet
from jaxpose.tools import import_resnet50
from conftest import load_config

SIZE = 64


def _randomise(model, rng):
  import keras  # pylint: disable=g-import-not-at-top
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0.0, 0.2, c),
                         rng.normal(0.0, 0.5, c), rng.uniform(0.5, 2.0, c)])
    elif isinstance(layer, keras.layers.Conv2D):
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0.0, 0.5, bias.shape)])


@pytest.fixture(scope='module')
def keras_resnet(tmp_path_factory):
  """(model up to conv4_block6_out, path of the whole model saved as HDF5)."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(0)
  model = keras.applications.ResNet50(weights=None, include_top=False,
                                      input_shape=(SIZE, SIZE, 3))
  _randomise(model, np.random.default_rng(0))
  path = tmp_path_factory.mktemp('keras') / 'resnet50.h5'
  model.save(path)
  return keras.Model(model.input, model.get_layer('conv4_block6_out').output), str(path)


def _relative_error(actual, expected):
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _res4f(params, stats, x):
  out, _ = resnet.Backbone().apply({'params': params, 'batch_stats': stats}, x, train=False)
  return np.asarray(out)


def test_same_res4f_as_keras_on_the_same_input(keras_resnet):
  tap, path = keras_resnet
  x = np.random.default_rng(1).normal(0.0, 50.0, (2, SIZE, SIZE, 3)).astype(np.float32)
  expected = np.asarray(tap(x, training=False))
  params, stats = import_resnet50.convert(import_resnet50.read_keras_h5(path))
  actual = _res4f(params, stats, x)
  assert actual.shape == expected.shape == (2, SIZE // 16, SIZE // 16, 1024)
  assert np.abs(expected).max() > 1.0
  assert _relative_error(actual, expected) < 1e-4


def test_posenet_input_convention(keras_resnet, monkeypatch):
  """PoseNet's normalised RGB through the converted weights = Keras' caffe BGR input: exact
  away from the border, where conv1's zero padding means a different grey in the two
  conventions (see import_resnet50's docstring)."""
  import keras  # pylint: disable=g-import-not-at-top
  tap, path = keras_resnet
  layers = import_resnet50.read_keras_h5(path)
  image = np.random.default_rng(2).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
  caffe = keras.applications.resnet.preprocess_input(image.copy())

  def posenet_input():
    return (image - np.float32(posenet.PIXEL_MEAN)) / np.float32(posenet.PIXEL_STD)

  params, stats = import_resnet50.to_posenet_input(*import_resnet50.convert(layers))
  assert _relative_error(_res4f(params, stats, posenet_input()),
                         np.asarray(tap(caffe, training=False))) < 2e-3

  # A mean far from the caffe one makes the folded offset large; conv1 output pixels 2 … 29
  # do not reach the padding.
  monkeypatch.setattr(posenet, 'PIXEL_MEAN', (60.0, 180.0, 30.0))
  params, stats = import_resnet50.to_posenet_input(*import_resnet50.convert(layers))
  _, captured = resnet.Backbone().apply({'params': params, 'batch_stats': stats},
                                        posenet_input(), train=False,
                                        capture_intermediates=True, mutable=['intermediates'])
  actual = np.asarray(captured['intermediates']['bn_conv1']['__call__'][0])
  bn = keras.Model(tap.input, tap.get_layer('conv1_bn').output)
  expected = np.asarray(bn(caffe, training=False))
  inner = np.s_[:, 2:-2, 2:-2]
  assert _relative_error(actual[inner], expected[inner]) < 1e-5


def test_converted_weights_load_into_the_train_state(keras_resnet, tmp_path):
  _, path = keras_resnet
  import_resnet50.main(['--keras-h5', path, '--out', str(tmp_path / 'weights')])
  weights = str(tmp_path / 'weights' / import_resnet50.FILE_NAME)
  params, stats = state_lib.load_backbone(weights)

  # The paper's backbone under the smoke head. Its state is only traced (initialising
  # ResNet-50 for real costs ~20 s of compilation here): loading places real arrays.
  config = load_config('synthetic')
  config.model.update(stage_sizes=(3, 4, 6), width=64, heatmap_block=3)
  model = posenet.create(config.model)
  abstract = jax.eval_shape(functools.partial(state_lib.init_state, config, model,
                                              state_lib.make_optimizer(config.optim)),
                            jax.random.key(0))
  shardings = parallel.state_sharding(parallel.make_mesh(), abstract, fsdp=False)
  abstract = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                          abstract, shardings)
  state = state_lib.load_backbone_into_state(abstract, weights)
  loaded = {'params': state.params['backbone'], 'batch_stats': state.batch_stats['backbone']}
  expected = {'params': params, 'batch_stats': stats}
  assert jax.tree.structure(loaded) == jax.tree.structure(expected)
  for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(expected)):
    assert got.sharding == shardings.params['lifter_0']['kernel']
    np.testing.assert_array_equal(got, want)


def test_training_from_a_backbone_that_does_not_fit_names_the_path(keras_resnet, tmp_path):
  _, path = keras_resnet
  weights = str(tmp_path / 'resnet50.npz')
  state_lib.save_backbone(weights, *import_resnet50.convert(import_resnet50.read_keras_h5(path)))
  config = load_config('synthetic')  # the smoke network: 8 channels in conv1, not 64
  config.init.backbone = weights
  with pytest.raises(ValueError, match=r'params/conv1/kernel: file \(7, 7, 3, 64\) vs model '
                                       r'\(7, 7, 3, 8\)'):
    train.train_and_evaluate(config, str(tmp_path / 'workdir'))


def test_bad_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='nowhere.h5'):
    import_resnet50.read_keras_h5(str(tmp_path / 'nowhere.h5'))
  junk = tmp_path / 'junk.h5'
  junk.write_bytes(b'not hdf5')
  with pytest.raises(ValueError, match='junk.h5 is not an HDF5 file'):
    import_resnet50.read_keras_h5(str(junk))
  keras3 = tmp_path / 'model.weights.h5'
  with h5py.File(keras3, 'w') as f:
    f.create_group('layers')
    f.create_group('vars')
  with pytest.raises(ValueError, match=r'model.weights.h5 is in the Keras 3 ".weights.h5" '
                                       r'format'):
    import_resnet50.read_keras_h5(str(keras3))
