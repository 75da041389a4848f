"""jaxpose against the same network in PyTorch (and ONNX Runtime) on this machine, as JSON.

``python -m benchmarks.compare_torch --config=configs/synthetic.py[:variant]
[--compare=torch|inference] [--rounds=N] [--config.batch_size=N] [--nocpu_xla_flag]``, from
the repository's root with the ``bench`` extra (``pip install -e '.[bench]'``).

* ``--compare=torch`` (the default): the train step and inference of jaxpose and of the same
  network in PyTorch (``benchmarks/torch_reference.py``, from the same weights), in turns
  for ``--rounds`` rounds, both and the ratios (jaxpose / PyTorch); then each of the
  network's convolutions alone in both (``jaxpose.models.inventory``), forward (inference)
  and with its gradients (train), and what the steps spend outside them;
* ``--compare=inference``: the network on crops in XLA, ONNX Runtime and PyTorch at batches
  8 and 64, and the latency of one crop.

PyTorch, ONNX Runtime and each framework's convolutions run in processes of their own
(``timing.TimingProcess``), with the same allocator set-up (``--nocpu_xla_flag`` turns it
off in all). This machine's figures of jaxpose alone: ``python -m jaxpose.benchmark``.
"""

from __future__ import annotations

import collections
import functools
import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags

from benchmarks import timing
from jaxpose import benchmark
from jaxpose import cli
from jaxpose import losses
from jaxpose import parallel
from jaxpose.inference import onnx_export
from jaxpose.inference import predictor
from jaxpose.models import inventory
from jaxpose.models import posenet


def compare_convolutions(layers: list[inventory.ConvLayer], batch: int, backward: bool,
                         timed_steps: int, rounds: int, sides: dict) -> dict:
  """Each distinct convolution of ``layers`` at ``batch`` images, its forward pass or (with
  ``backward``) the forward pass and its gradients, timed in turns in ``sides``' jaxpose
  and torch ``timing.TimingProcess``; the sums over ``layers`` (each convolution as often as the
  network runs it) are the time a step spends in its convolutions, with no other work
  around them."""
  rows, totals = [], dict(jaxpose=0.0, torch=0.0)
  for layer, count in collections.Counter(layers).items():
    times = dict(jaxpose=[], torch=[])
    for _ in range(rounds):
      for name, side in sides.items():
        times[name].extend(side.times(('conv', layer, batch, backward), timed_steps))
    ms = {name: 1e3 * float(np.median(t)) for name, t in times.items()}
    for name in totals:
      totals[name] += count * ms[name]
    passes = (3 if layer.input_grad else 2) if backward else 1
    gflops = passes * batch * layer.flops() / 1e9
    rows.append(dict(input=layer.input, kernel=layer.kernel, strides=layer.strides,
                     count=count, jaxpose_ms=ms['jaxpose'], torch_ms=ms['torch'],
                     jaxpose_gflops_per_s=gflops / ms['jaxpose'] * 1e3,
                     torch_gflops_per_s=gflops / ms['torch'] * 1e3,
                     ratio=ms['torch'] / ms['jaxpose']))
  return dict(batch_size=batch, backward=backward, layers=rows, jaxpose_ms=totals['jaxpose'],
              torch_ms=totals['torch'], ratio=totals['torch'] / totals['jaxpose'])


def _framework_rates(images: int, rounds: list[list[float]]) -> dict:
  """images/s of the median step over all rounds, and of each round's median step."""
  return dict(images_per_s=images / float(np.median(np.concatenate(rounds))),
              images_per_s_per_round=[round(images / float(np.median(r)), 3) for r in rounds])


def compare_torch(config: ml_collections.ConfigDict, mesh, timed_steps: int, rounds: int,
                  peak: float, infer_batch: int, cpu_setup: int | None) -> dict:
  """The train step and inference (batch ``infer_batch``) of jaxpose (here) and of
  ``torch_reference``'s PyTorch network (in a ``timing.TimingProcess``) from the same initial
  weights, timed in turns: each of ``rounds`` rounds times ``timed_steps`` calls of each
  (after a warm-up call), so that a machine shared with other work slows both alike; the
  network's convolutions alone (``compare_convolutions``, each framework in a process of
  its own) and the rest of each step. Ratios are jaxpose's speed over PyTorch's."""
  jax_train = benchmark.build_train(config, mesh)
  jax_infer = benchmark.build_infer(config, mesh, infer_batch)
  targets = jax.device_get(losses.make_targets(jax_train['batch'], config))
  layers = inventory.conv_layers(posenet.create(config.model), config.data.input_size)
  network = (config, jax_train['variables'], jax_train['batch'], targets, jax_infer['images'])
  with timing.TimingProcess('torch', cpu_setup, network) as torch_side, \
       timing.TimingProcess('jaxpose', cpu_setup) as jax_side:
    sizes = dict(train=config.batch_size, infer=infer_batch)
    convs = {what: compare_convolutions(layers, images, what == 'train', timed_steps, rounds,
                                        dict(jaxpose=jax_side, torch=torch_side))
             for what, images in sizes.items()}
    calls = dict(train=jax_train['call'], infer=jax_infer['call'])
    times = {(what, name): [] for what in calls for name in ('jaxpose', 'torch')}
    # All rounds of one program before the next: a process switching between its train
    # step and inference pays page faults until its heap settles again (a few calls).
    for what, call in calls.items():
      for _ in range(rounds):
        times[what, 'jaxpose'].append(benchmark.call_times(call, timed_steps))
        times[what, 'torch'].append(torch_side.times(what, timed_steps))
    result = dict(**torch_side.info, cores=len(os.sched_getaffinity(0)), rounds=rounds,
                  steps_per_round=timed_steps)
  for what, compiled in (('train', jax_train['compiled']), ('infer', jax_infer['compiled'])):
    images = sizes[what]
    section = {name: _framework_rates(images, times[what, name])
               for name in ('jaxpose', 'torch')}
    flops = benchmark.compiled_flops(compiled, mesh.devices.size)
    if flops is not None:  # XLA's count of jaxpose's program: the same network in both.
      for name in section:
        section[name]['fraction_of_peak'] = (
            flops / images * section[name]['images_per_s'] / peak)
    jaxpose, other = section['jaxpose'], section['torch']
    # Where the time goes: the network's convolutions alone, in both frameworks, and the
    # step's remaining time (normalisation, activations, pooling, the head, the loss and
    # the optimiser, and whatever the convolutions cost more or less inside the step).
    rest = {f'{name}_ms': 1e3 * images / section[name]['images_per_s'] -
            convs[what][f'{name}_ms'] for name in ('jaxpose', 'torch')}
    section.update(
        batch_size=images,
        ratio=jaxpose['images_per_s'] / other['images_per_s'],
        ratio_per_round=[round(a / b, 3) for a, b in zip(jaxpose['images_per_s_per_round'],
                                                         other['images_per_s_per_round'])],
        convolutions=convs[what],
        outside_convolutions=dict(**rest, ratio=rest['torch_ms'] / rest['jaxpose_ms']))
    result[what] = section
  return result


def compare_inference(config: ml_collections.ConfigDict, timed_steps: int, rounds: int,
                      cpu_setup: int | None, batches: tuple[int, ...] = (8, 64)) -> dict:
  """The network on crops (``predictor.crop_network``, one device) in XLA (here), ONNX Runtime
  (``onnx_export``'s model of it) and PyTorch (``torch_reference``), each of the last two in
  a ``timing.TimingProcess``, from the same weights: images/s at each of ``batches`` and the
  latency of one crop, timed in turns over ``rounds`` rounds. Ratios are over PyTorch's."""
  model = posenet.create(config.model)
  size = config.data.input_size
  variables = jax.device_get(model.init(jax.random.key(config.seed),
                                        np.zeros((1, size, size, 3), np.uint8), train=False))
  network = functools.partial(predictor.crop_network(model), variables)
  serialized = onnx_export.to_onnx(network, (size, size, 3), np.uint8,
                                   'crops').SerializeToString()
  xla = parallel.jit_local(network)
  # PyTorch's network is built with its train step too: a small batch for that.
  train_batch = benchmark.random_batch(config, 2)
  targets = jax.device_get(losses.make_targets(train_batch, config))
  result = dict(cores=len(os.sched_getaffinity(0)), rounds=rounds,
                steps_per_round=timed_steps)
  for batch in (*batches, 1):
    images = np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), np.uint8)
    with timing.TimingProcess('torch', cpu_setup, (config, variables, train_batch, targets,
                                            images)) as torch_side, \
         timing.TimingProcess('onnxruntime', cpu_setup, (serialized, images)) as ort_side:
      times = dict(xla=[], onnxruntime=[], torch=[])
      for _ in range(rounds):
        times['xla'].append(benchmark.call_times(lambda: xla(images), timed_steps))
        times['onnxruntime'].append(ort_side.times('infer', timed_steps))
        times['torch'].append(torch_side.times('infer', timed_steps))
      result.update(torch_side.info, **ort_side.info)
    if batch == 1:
      result['latency_ms'] = {name: 1e3 * float(np.median(np.concatenate(t)))
                              for name, t in times.items()}
      continue
    section = {name: _framework_rates(batch, t) for name, t in times.items()}
    for name in ('xla', 'onnxruntime'):
      section[f'{name}_over_torch'] = (section[name]['images_per_s'] /
                                       section['torch']['images_per_s'])
    result[f'batch_{batch}'] = section
  return result


def compare(config: ml_collections.ConfigDict, framework: str, timed_steps: int,
            rounds: int, infer_batch: int, cpu_setup: int | None) -> dict:
  """``compare_torch`` (``framework`` 'torch') on all local devices, with the peak, or
  ``compare_inference`` (``framework`` 'inference')."""
  result = benchmark.machine(config)
  if framework == 'inference':
    result['compare'] = compare_inference(config, timed_steps, rounds, cpu_setup)
    return result
  mesh = parallel.make_mesh(jax.local_devices())
  result['peak'] = benchmark.measure_peak(mesh, jnp.dtype(config.model.dtype))
  result['compare'] = compare_torch(config, mesh, timed_steps, rounds,
                                    result['peak']['flops_per_s'], infer_batch, cpu_setup)
  result.update(benchmark.peak_memory())
  return result


def main(argv):
  del argv
  config = cli.FLAGS.config
  figures = compare(config, cli.FLAGS.compare, cli.FLAGS.timed_steps, cli.FLAGS.rounds,
                    cli.FLAGS.infer_batch, cli.cpu_setup())
  print(json.dumps(benchmark.report(config, figures), indent=1))


def define_flags():
  flags.DEFINE_enum('compare', 'torch', ['torch', 'inference'],
                    'torch: the train step, inference and each convolution of jaxpose and of '
                    'the same network in PyTorch, interleaved, and the ratios; inference: '
                    'the network on crops in XLA, ONNX Runtime and PyTorch at batches 8 and '
                    '64 and its latency on one crop.')
  flags.DEFINE_integer('infer_batch', 32, 'Batch of the inference of --compare=torch.',
                       lower_bound=1)
  flags.DEFINE_integer('timed_steps', 5, 'Timed calls per round; medians are reported.',
                       lower_bound=5)
  flags.DEFINE_integer('rounds', 3, 'Rounds, each timing every framework in turn.',
                       lower_bound=1)


if __name__ == '__main__':
  cli.run(main, required=('config',), define_flags=define_flags)
