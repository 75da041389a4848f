"""Keras' ImageNet ResNet-50 weights → the backbone's params and batch_stats (up to res4f).

  python -m jaxpose.tools.import_resnet50 --keras-h5 PATH --out DIR

reads Keras' legacy HDF5 weights (the file ``keras.applications.ResNet50(weights='imagenet')``
downloads, ``resnet50_weights_tf_dim_ordering_tf_kernels[_notop].h5``, or any
``model.save('x.h5')``/``save_weights('x.h5')`` of that model) and writes
``DIR/resnet50_res4f.npz``; train from it with
``--config.init.backbone=DIR/resnet50_res4f.npz``.

The file is a flat npz: ``params/<module path>`` and ``batch_stats/<module path>`` (e.g.
``params/res4f/conv3/kernel``, ``batch_stats/bn_conv1/mean``), float32, relative to the
backbone (``PoseNet``'s ``backbone`` collection entry).

Layer map: ``conv1_conv`` → ``conv1``, ``conv1_bn`` → ``bn_conv1``,
``conv<s>_block<b>_<i>_conv``/``_bn`` → ``res<s><letter b>/conv<i>``/``bn<i>`` for i = 1…3
and ``proj_conv``/``proj_bn`` for i = 0 (the projection shortcut); conv5 is not used (the
paper's res5a is trained from scratch). Both networks put the stride on the first 1×1
convolution (torchvision's ResNet-50 puts it on the 3×3 and is not convertible this way).
Keras' convolutions have biases and ours do not: a bias b before BatchNorm is the same as
running mean − b, so it is folded there.

Input convention. Keras' weights expect "caffe" input: BGR, minus ``CAFFE_MEAN_BGR``, not
scaled. PoseNet feeds RGB minus ``posenet.PIXEL_MEAN`` over ``posenet.PIXEL_STD``. The
written weights are for PoseNet's input: conv1's input channels are reordered and scaled by
the std, and conv1 applied to the mean difference (under half a grey level) is folded into
bn_conv1's mean like a bias. This is exact except within 3 pixels of the image border,
where the zero padding of conv1 stands for the ImageNet mean in one convention and the
caffe mean in the other.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import h5py
import numpy as np

from jaxpose import fileio
from jaxpose import state
from jaxpose.models import posenet
from jaxpose.models import resnet

# keras.applications.resnet.preprocess_input ("caffe" mode) subtracts these from BGR pixels.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
FILE_NAME = 'resnet50_res4f.npz'
_BN_KEYS = ('gamma', 'beta', 'moving_mean', 'moving_variance')


def read_keras_h5(path: str) -> dict[str, dict[str, np.ndarray]]:
  """{layer name: {weight name ('kernel', 'gamma', …): array}} of a legacy Keras HDF5 file."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--keras-h5: {path} does not exist')
  try:
    f = h5py.File(path, 'r')
  except OSError as e:
    raise ValueError(f'--keras-h5: {path} is not an HDF5 file ({e})') from e
  with f:
    root = f['model_weights'] if 'model_weights' in f else f
    if 'layers' in root and 'vars' in root:
      raise ValueError(f'{path} is in the Keras 3 ".weights.h5" format, whose layer names '
                       f'are not the model\'s; save the model with model.save("x.h5") or use '
                       f'the Keras ImageNet download (legacy HDF5)')
    layers = {}
    for name, group in root.items():
      names = [n.decode() if isinstance(n, bytes) else str(n)
               for n in group.attrs.get('weight_names', [])]
      # 'conv1_conv/kernel:0' (Keras 2) or 'conv1_conv/kernel' (Keras 3) → 'kernel'.
      layers[name] = {n.split('/')[-1].split(':')[0]: np.asarray(group[n], np.float32)
                      for n in names}
  return layers


def _layer(layers: dict, name: str, keys: Sequence[str], path: str) -> list[np.ndarray]:
  if name not in layers:
    raise ValueError(f'{path} has no layer {name!r}: is it Keras\' ResNet-50?')
  missing = [k for k in keys if k not in layers[name]]
  if missing:
    raise ValueError(f'{path}: layer {name!r} lacks {missing}; it has {sorted(layers[name])}')
  return [layers[name][k] for k in keys]


def convert(layers: dict, path: str = 'the weights') -> tuple[dict, dict]:
  """Keras layers (``read_keras_h5``) → the backbone's (params, batch_stats), for input in
  Keras' own convention (see the module docstring; ``to_posenet_input`` converts)."""
  params, stats = {}, {}

  def conv_bn(conv: str, bn: str, module: str | None, conv_name: str, bn_name: str):
    kernel, bias = _layer(layers, conv, ('kernel', 'bias'), path)
    gamma, beta, mean, var = _layer(layers, bn, _BN_KEYS, path)
    target_p = params if module is None else params.setdefault(module, {})
    target_s = stats if module is None else stats.setdefault(module, {})
    target_p[conv_name] = {'kernel': kernel}
    target_p[bn_name] = {'scale': gamma, 'bias': beta}
    target_s[bn_name] = {'mean': mean - bias, 'var': var}

  conv_bn('conv1_conv', 'conv1_bn', None, 'conv1', 'bn_conv1')
  for s, blocks in enumerate(state.IMAGENET_STAGE_SIZES):
    for b in range(blocks):
      module = resnet.block_name(s + 2, b)
      keras = f'conv{s + 2}_block{b + 1}'
      for i in range(4) if b == 0 else range(1, 4):  # 0: the projection shortcut
        conv_name, bn_name = ('proj_conv', 'proj_bn') if i == 0 else (f'conv{i}', f'bn{i}')
        conv_bn(f'{keras}_{i}_conv', f'{keras}_{i}_bn', module, conv_name, bn_name)
  return params, stats


def to_posenet_input(params: dict, stats: dict) -> tuple[dict, dict]:
  """Weights for Keras' caffe input → the same network for PoseNet's normalised RGB input
  (module docstring)."""
  mean_rgb = np.asarray(posenet.PIXEL_MEAN, np.float64)
  std_rgb = np.asarray(posenet.PIXEL_STD, np.float64)
  caffe_rgb = np.asarray(CAFFE_MEAN_BGR, np.float64)[::-1]
  kernel = np.asarray(params['conv1']['kernel'], np.float64)[:, :, ::-1, :]  # BGR → RGB
  # caffe input = normalised · std + (ImageNet mean − caffe mean), channel by channel.
  offset = np.einsum('hwco,c->o', kernel, mean_rgb - caffe_rgb)
  params = {**params, 'conv1': {'kernel': np.float32(kernel * std_rgb[:, None])}}
  bn = stats['bn_conv1']
  stats = {**stats, 'bn_conv1': {'mean': np.float32(bn['mean'] - offset), 'var': bn['var']}}
  return params, stats


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--keras-h5', required=True,
                      help="Keras' ResNet-50 weights, legacy HDF5 (.h5)")
  parser.add_argument('--out', required=True, help=f'output folder for {FILE_NAME}')
  args = parser.parse_args(argv)
  params, stats = to_posenet_input(*convert(read_keras_h5(args.keras_h5), args.keras_h5))
  fileio.gfile.makedirs(args.out)
  path = os.path.join(args.out, FILE_NAME)
  state.save_backbone(path, params, stats)
  print(f'wrote {path}; train with --config.init.backbone={path}')


if __name__ == '__main__':
  main()
