"""The PyTorch yardstick of ``benchmarks.compare_torch`` is the same network: the same
parameters, and from the same weights the same outputs, losses and gradients; its
convolutions, timed one by one, compute what jaxpose's do."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import timing
from conftest import load_config
from conftest import loss_and_grads
from jaxpose import benchmark
from jaxpose import losses
from jaxpose.models import inventory
from jaxpose.models import posenet

torch = pytest.importorskip(
    'torch', reason='torch is the optional `bench` extra (pip install -e .[bench]); CI '
    'installs only .[test]')
from benchmarks import torch_reference  # pylint: disable=g-import-not-at-top


@pytest.fixture(scope='module')
def networks():
  """A smoke config, its Flax variables (statistics and the zero-initialised scales made
  non-trivial) and the PyTorch network holding them."""
  config = load_config('synthetic')
  model = posenet.create(config.model)
  size = config.data.input_size
  init = jax.jit(functools.partial(model.init, train=False))  # jitted: eager init is slow
  variables = init(jax.random.key(0), jnp.zeros((1, size, size, 3)))
  # Zero-initialised parameters (BatchNorm's biases, the blocks' last scales, the camera's
  # output layer) and the fresh statistics would hide mistakes: perturb them a little.
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  variables = jax.tree.unflatten(tree, [
      x + 0.01 * jax.random.uniform(k, x.shape) for x, k in zip(leaves, keys)])
  net = torch_reference.PoseNet(config.model, size)
  torch_reference.load_flax_variables(net, variables)
  return config, model, jax.device_get(variables), net


def _assert_close(theirs, ours):
  # Relative to the largest entry: the perturbed weights give outputs of all magnitudes.
  ours = np.asarray(ours)
  scale = np.abs(ours).max()
  assert np.isfinite(scale) and scale > 0
  np.testing.assert_allclose(theirs.detach().numpy() / scale, ours / scale, atol=1e-5)


def test_same_parameters(networks):
  _, _, variables, net = networks
  flax_sizes = sorted(np.size(x) for x in jax.tree.leaves(variables['params']))
  assert sorted(p.numel() for p in net.parameters()) == flax_sizes
  bad = {'params': {**variables['params'], 'latent': {
      'kernel': variables['params']['latent']['kernel'][1:],
      'bias': variables['params']['latent']['bias']}}, 'batch_stats': variables['batch_stats']}
  with pytest.raises(ValueError, match='params/latent/kernel'):
    torch_reference.load_flax_variables(net, bad)


def test_same_outputs_losses_and_gradients(networks):
  config, model, variables, net = networks
  batch = benchmark.random_batch(config, 8)
  images = torch.from_numpy(batch['image'])

  net.eval()
  with torch.no_grad():
    theirs = net(images)
  ours = jax.jit(functools.partial(model.apply, train=False))(variables, batch['image'])
  _assert_close(theirs['pose_3d'], ours['pose_3d'])
  _assert_close(theirs['heatmaps'].permute(0, 1, 3, 4, 2), ours['heatmaps'])
  _assert_close(theirs['pose_2d'], ours['pose_2d'])

  targets = jax.device_get(losses.make_targets(batch, config))
  weights, size = dict(config.loss), config.data.input_size
  (total, terms), grads = loss_and_grads(model, variables, batch['image'], targets, config)
  net.train()
  net.zero_grad()
  their_total, their_terms = torch_reference.compute_losses(
      net(images), {k: torch.from_numpy(np.asarray(v)) for k, v in targets.items()}, weights,
      size, config.data.heatmap_sigma)
  their_total.backward()
  for name, value in terms.items():
    np.testing.assert_allclose(their_terms[name].item(), value, rtol=1e-4, err_msg=name)
  np.testing.assert_allclose(their_total.item(), total, rtol=1e-4)
  _assert_close(net.latent.weight.grad, grads['latent']['kernel'].T)
  _assert_close(net.backbone.conv1.weight.grad,
                grads['backbone']['conv1']['kernel'].transpose(3, 2, 0, 1))


def test_both_frameworks_time_the_same_convolutions():
  """``compare_torch.compare_convolutions`` times ``conv_call`` of each framework: on each kind
  of layer of the network (the stem, strided and plain 1×1, 3×3) both compute the same
  output and the same gradients."""
  config = load_config('synthetic')
  layers = set(inventory.conv_layers(posenet.create(config.model), config.data.input_size))
  kinds = {(layer.kernel[:2], layer.strides, layer.input_grad): layer for layer in layers}
  assert len(kinds) == 4
  rng = np.random.default_rng(0)
  for layer in kinds.values():
    x = rng.standard_normal((2, *layer.input), np.float32)
    kernel = rng.standard_normal(layer.kernel).astype(np.float32)
    ours = timing.conv_call(layer, x, kernel, None)()
    _assert_close(torch_reference.conv_call(layer, x, kernel, None)().permute(0, 2, 3, 1), ours)
    dy = rng.standard_normal(ours.shape).astype(np.float32)
    their_y, theirs = torch_reference.conv_call(layer, x, kernel, dy)()
    our_y, ours = timing.conv_call(layer, x, kernel, dy)()
    _assert_close(their_y.permute(0, 2, 3, 1), our_y)
    assert len(theirs) == len(ours) == (2 if layer.input_grad else 1)
    *input_grad, kernel_grad = ours
    _assert_close(theirs[-1].permute(2, 3, 1, 0), kernel_grad)
    if input_grad:
      _assert_close(theirs[0].permute(0, 2, 3, 1), input_grad[0])
