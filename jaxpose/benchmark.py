"""How fast a config trains, infers and reads its data, on this machine, as JSON.

``python -m jaxpose.benchmark --config=configs/synthetic.py[:variant] [--what=train,infer,input]
[--compare=torch] [--config.batch_size=N] [--nocpu_xla_flag]``; the paper's network (256 px)
on any experiment is the ``paper_model`` variant, e.g.
``--config=configs/synthetic.py:paper_model --config.batch_size=8``.

* ``train``: images/s of the real jitted train step on random inputs (median of
  ``--timed_steps`` steps after compilation and a warm-up step), FLOPs per image from XLA's
  cost analysis of the compiled step, and the FLOP/s achieved with its fraction of the peak;
  beside them the MFU from the analytic count (as ``loop``'s), and the device augmentation
  (``augment.train_batch`` on random stored crops of 1.5 × the input size) timed alone, with
  its share of augmentation + step;
* ``infer``: images/s of the network at batch ``--infer_batch`` (32) and its latency
  p50/p90 at batch 1;
* ``peak``: FLOP/s of large matmuls (one per device, in the model's compute dtype; the
  fastest of 10 calls) in the same run, the yardstick of the fractions above (a machine
  busy with other work can disturb it, and the fractions with it);
* ``input``: images/s of the host's side of the input (``pipeline.TrainStream``: reading and
  decoding) on the config's training sources, and images per CPU-second of the process, the
  rate of one core (skipped, with the reason, if they are not built and
  ``config.data.build_if_missing`` is off);
* ``loop`` (with ``train``): the whole training loop (``train.train_and_evaluate``: input,
  transfer, step, logging windows), ``--rounds`` runs of ``--loop_steps``: the images/s/device
  it logs per window, the share of wall time the devices waited for the host (against the
  ``train`` step on a batch already on the devices, timed around each run), FLOP/s per
  device and the model FLOP utilisation (MFU) from an analytic count of the network's FLOPs
  (3 × the forward pass's, the convention of maxtext; XLA's count beside it);
* ``peak_memory_bytes``: the device's peak where it reports one, else the process's max RSS.

``--compare=torch`` (the ``bench`` extra) measures instead the train step and inference of
jaxpose and of the same network in PyTorch (``jaxpose.torch_reference``), in turns for
``--rounds`` rounds, and reports both and the ratios (jaxpose / PyTorch); then each of the
network's convolutions alone in both, forward (inference) and with its gradients (train),
and what the steps spend outside them. PyTorch, and each framework's convolutions, run in
processes of their own, with the same allocator set-up (``--nocpu_xla_flag`` turns it off
in all).

jaxpose's steps run over all local devices (batch 1 on the first). Speed figures belong
here, not in tests.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import json
import multiprocessing
import os
import resource
import signal
import tempfile
import time
import traceback
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from jax import lax
from ml_collections import config_flags

from jaxpose import cli
from jaxpose import losses
from jaxpose import onnx_export
from jaxpose import parallel
from jaxpose import predict
from jaxpose import runtime
from jaxpose import skeleton
from jaxpose import state as state_lib
from jaxpose import summary
from jaxpose import train
from jaxpose.data import pipeline
from jaxpose.models import ops
from jaxpose.models import posenet

SECTIONS = ('train', 'infer', 'input', 'loop')

LATENCY_CALLS = 20
LOOP_STEP_CALLS = 20  # the step alone, before and after each loop run
INPUT_BATCHES = 20
PEAK_CALLS = 10
# Side of the square matmuls that measure the peak: large enough to run at full speed, small
# enough to take well under a second per device.
PEAK_MATMUL = {'cpu': 2048}
PEAK_MATMUL_DEFAULT = 8192


def random_batch(config: ml_collections.ConfigDict, n: int, seed: int = 0) -> dict:
  """A host batch with every field the train step reads: half 3D-labelled, half 2D-only."""
  rng = np.random.default_rng(seed)
  size, j = config.data.input_size, skeleton.NUM_JOINTS
  return dict(
      image=rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8),
      joints_2d=rng.uniform(0, size, (n, j, 2)).astype(np.float32),
      joints_2d_valid=rng.uniform(size=(n, j)) > 0.1,
      joints_3d=(rng.normal(0, 300, (n, j, 3)) + [0, 0, 5000]).astype(np.float32),
      has_3d=np.arange(n) % 2 == 0,
      focal=np.full((n, 2), 100.0, np.float32),
      principal=rng.uniform(0, size, (n, 2)).astype(np.float32),
      has_intrinsics=np.arange(n) % 2 == 0,
      ref_bone_lengths=rng.uniform(100, 400, (n, skeleton.NUM_BONES)).astype(np.float32),
      has_ref_bones=np.ones(n, bool),
  )


def _call_times(fn, calls: int) -> list[float]:
  """Seconds of each of ``calls`` calls of ``fn`` (results waited for), after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def _flops(compiled, devices: int) -> float | None:
  """FLOPs of one call of a compiled SPMD program (XLA counts one device's share)."""
  cost = compiled.cost_analysis()
  return None if not cost or 'flops' not in cost else float(cost['flops']) * devices


def measure_peak(mesh, dtype) -> dict:
  """FLOP/s of one large matmul per device of ``mesh``, all at once."""
  devices = mesh.devices.size
  n = PEAK_MATMUL.get(jax.devices()[0].platform, PEAK_MATMUL_DEFAULT)
  x = jax.device_put(jax.random.normal(jax.random.key(0), (devices, n, n), dtype),
                     parallel.batch_sharding(mesh))
  matmul = parallel.jit_data_parallel(lambda a: jnp.einsum('bij,bjk->bik', a, a), mesh)
  # The fastest call: other work on the machine only ever slows a call down.
  seconds = min(_call_times(lambda: matmul(x), PEAK_CALLS))
  return dict(flops_per_s=2 * devices * n**3 / seconds, matmul=[devices, n, n],
              dtype=str(jnp.dtype(dtype)))


def _rate_report(images: int, times: list[float], flops: float | None, peak: float) -> dict:
  median = float(np.median(times))
  report = dict(images_per_s=images / median, step_s_median=median,
                step_s=[round(t, 4) for t in times])
  if flops is not None:
    report.update(flops_per_image=flops / images, flops_per_s=flops / median,
                  fraction_of_peak=flops / median / peak)
  return report


def build_train(config, mesh) -> dict:
  """The compiled train step on a random batch of ``config.batch_size``: ``call()`` runs
  one step (carrying the donated state on), beside the host batch, the initial variables
  and the analytic FLOPs of one trained image (3 × the forward pass's)."""
  batch_size = config.batch_size
  if batch_size % mesh.devices.size:
    raise ValueError(f'config.batch_size={batch_size} is not divisible by the '
                     f'{mesh.devices.size} devices')
  model, state, _, step = train.setup(config, mesh)
  host_batch = random_batch(config, batch_size)
  batch = parallel.to_global(host_batch, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  variables = jax.device_get(state.variables())
  holder = [state]

  def call():
    holder[0], metrics = compiled(holder[0], batch)  # The state is donated: carry it on.
    return holder[0], metrics

  return dict(call=call, compiled=compiled, compile_s=compile_s, batch=host_batch,
              variables=variables,
              analytic_flops_per_image=3 * forward_flops(model, config.data.input_size))


def measure_train(config, mesh, step: dict, calls: int, peak: float) -> dict:
  """The train step ``step`` (of ``build_train``) timed over ``calls`` calls."""
  report = _rate_report(config.batch_size, _call_times(step['call'], calls),
                        _flops(step['compiled'], mesh.devices.size), peak)
  analytic = step['analytic_flops_per_image']
  return dict(batch_size=config.batch_size, compile_s=step['compile_s'], **report,
              analytic_flops_per_image=analytic,
              mfu=analytic * report['images_per_s'] / peak)


def _predict_fn(model):
  def predict(variables, batch):
    return model.apply(variables, batch['image'], train=False)
  return predict


def build_infer(config, mesh, batch_size: int) -> dict:
  """The compiled network (inference) on ``batch_size`` random images: ``call()`` runs it."""
  model = posenet.create(config.model)
  state, shardings = state_lib.create_train_state(config, mesh, model,
                                                  state_lib.make_optimizer(config.optim))
  size = config.data.input_size
  images = np.random.default_rng(0).integers(0, 255, (batch_size, size, size, 3), np.uint8)
  variables = state.variables()
  on_mesh = parallel.jit_predict(_predict_fn(model), mesh, shardings.variables())
  batch = parallel.to_global({'image': images}, mesh)
  compiled = on_mesh.lower(variables, batch).compile()
  return dict(call=lambda: compiled(variables, batch), compiled=compiled, model=model,
              images=images, variables=variables)


def measure_infer(config, mesh, batch_size: int, calls: int, peak: float) -> dict:
  net = build_infer(config, mesh, batch_size)
  report = _rate_report(batch_size, _call_times(net['call'], calls),
                        _flops(net['compiled'], mesh.devices.size), peak)
  # Latency of one image on one device.
  one = parallel.make_mesh(jax.local_devices()[:1])
  single_variables = jax.device_put(net['variables'], parallel.replicated(one))
  single = parallel.jit_predict(_predict_fn(net['model']), one, parallel.replicated(one))
  image = parallel.to_global({'image': net['images'][:1]}, one)
  latency = np.array(_call_times(lambda: single(single_variables, image), LATENCY_CALLS)) * 1e3
  return dict(batch_size=batch_size, **report,
              latency_ms_p50=float(np.percentile(latency, 50)),
              latency_ms_p90=float(np.percentile(latency, 90)))


def measure_input(config) -> dict:
  """The host's side of the input (reading and decoding; the augmentation runs on the
  devices, ``measure_augment``): images/s, and images per second of CPU time the process
  spent (all its threads), the rate one core sustains."""
  try:
    stream = pipeline.TrainStream(config)
  except FileNotFoundError as e:
    return dict(skipped=str(e))
  for _ in range(2):  # the thread pool starts and fills its queue
    next(stream)
  start, cpu = time.perf_counter(), time.process_time()
  for _ in range(INPUT_BATCHES):
    next(stream)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
  images = INPUT_BATCHES * config.batch_size
  return dict(images_per_s=images / seconds, images_per_cpu_s=images / cpu_seconds,
              cores=len(os.sched_getaffinity(0)), batches=INPUT_BATCHES,
              batch_size=config.batch_size)


def random_raw_batch(config: ml_collections.ConfigDict, n: int, seed: int = 0) -> dict:
  """A host batch as ``pipeline.TrainStream`` gives it, of random stored crops of 1.5 ×
  the input size (what the benchmarks' builders store)."""
  rng = np.random.default_rng(seed)
  stored = int(1.5 * config.data.input_size)
  batch = random_batch(config, n, seed)
  batch['joints_2d'] *= 1.5
  batch.update(image=rng.integers(0, 255, (n, stored, stored, 3)).astype(np.uint8),
               size=np.full(n, stored, np.float32),
               key=rng.integers(0, 2**32, (n, 2), dtype=np.uint32))
  if config.data.augment.background > 0:
    batch.update(mask=rng.integers(0, 2, (n, stored, stored, 2)).astype(np.uint8) * 255,
                 background=np.ones(n, bool))
    if config.data.augment.background_sources:
      batch.update(picture=batch['image'][::-1], picture_size=batch['size'],
                   use_picture=np.arange(n) % 2 == 0)
  return batch


def measure_augment(config, mesh, step_s: float, calls: int) -> dict:
  """The device augmentation (``train.make_augment_fn``) of a batch of random stored crops
  (``random_raw_batch``), timed alone, and its share of augmentation + train step."""
  raw = random_raw_batch(config, config.batch_size)
  batch = parallel.to_global(raw, mesh)
  compiled = train.make_augment_fn(config, mesh).lower(batch).compile()
  seconds = float(np.median(_call_times(lambda: compiled(batch), calls)))
  return dict(stored_size=int(raw['size'][0]), s_median=seconds,
              share_of_step=seconds / (seconds + step_s))


def _layers(model: posenet.PoseNet, input_size: int) -> list[tuple]:
  """(module, input shape, output shape) of every convolution and dense layer of one
  image's forward pass, in call order."""
  layers = []

  def record(next_fun, args, kwargs, context):
    out = next_fun(*args, **kwargs)
    if context.method_name == '__call__' and isinstance(context.module, (nn.Conv, nn.Dense)):
      layers.append((context.module, args[0].shape, out.shape))
    return out

  image = jax.ShapeDtypeStruct((1, input_size, input_size, 3), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), image)
  return layers


def forward_flops(model: posenet.PoseNet, input_size: int) -> int:
  """FLOPs of one image's forward pass, counted from the layers' shapes (2 per
  multiply-add of every convolution and dense layer; the rest is negligible)."""
  total = 0
  for module, inputs, out in _layers(model, input_size):
    window = int(np.prod(module.kernel_size)) if isinstance(module, nn.Conv) else 1
    total += 2 * window * inputs[-1] * out[-1] * int(np.prod(out[1:-1]))
  return total


def measure_loop(config, step: dict, steps: int, rounds: int, peak: float) -> dict:
  """The real training loop (``train.train_and_evaluate``: input, transfer, step, logging
  windows) on the config's data, ``rounds`` runs of ``steps`` steps without evaluation, each
  between two timings of the step alone on a batch already on the devices (``step``, of
  ``build_train``): a machine whose speed drifts (shared cores) drifts for both. Per run,
  the median images/s per device the loop logs per window (the first, which compiles, left
  out) over the step's own rate (the mean of its two timings) is the loop's fraction; one
  minus it the share of wall time the devices waited for the host. Medians over runs."""
  config = config.copy_and_resolve_references()
  config.data.eval = ml_collections.ConfigDict()
  config.image_every_steps = 0
  config.total_steps = config.checkpoint_every_steps = config.eval_every_steps = steps
  devices = jax.device_count()
  runs = []
  for _ in range(rounds):
    before = float(np.median(_call_times(step['call'], LOOP_STEP_CALLS)))
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(config, workdir)
      rates = [value for _, value in
               summary.read_scalars(workdir).get('images_per_s_per_device', [])]
    if not rates:
      raise ValueError(f'--loop_steps={steps}: too few steps for two logging windows of '
                       f'config.log_every_steps={config.log_every_steps}')
    after = float(np.median(_call_times(step['call'], LOOP_STEP_CALLS)))
    rate, step_s = float(np.median(rates)), (before + after) / 2
    runs.append(dict(images_per_s_per_device=rate, windows=len(rates), step_s=step_s,
                     fraction=rate / (config.batch_size / step_s / devices)))
  median = lambda key: float(np.median([run[key] for run in runs]))
  rate, fraction = median('images_per_s_per_device'), median('fraction')
  flops = step['analytic_flops_per_image']
  return dict(steps=steps, rounds=rounds, windows_per_round=runs[0]['windows'],
              batch_size=config.batch_size, images_per_s_per_device=rate,
              loop_step_s=config.batch_size / rate / devices, step_s=median('step_s'),
              loop_fraction_of_step_rate=fraction, device_wait_fraction=max(0.0, 1 - fraction),
              loop_fraction_per_round=[round(run['fraction'], 3) for run in runs],
              analytic_train_flops_per_image=flops,
              flops_per_s_per_device=flops * rate, mfu=flops * rate * devices / peak)


def peak_memory() -> dict:
  stats = jax.local_devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return dict(peak_memory_bytes=int(stats['peak_bytes_in_use']),
                peak_memory_source='device memory_stats (first device)')
  # Linux reports ru_maxrss in KiB.
  return dict(peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              peak_memory_source='host max RSS')


class ConvLayer(NamedTuple):
  """One convolution of the network, for one image: NHWC input without the batch, HWIO
  kernel, strides and explicit (low, high) padding per spatial axis."""
  input: tuple[int, ...]
  kernel: tuple[int, ...]
  strides: tuple[int, ...]
  padding: tuple[tuple[int, int], ...]
  # The train step needs the input's gradient of every convolution but the first, which
  # reads the image.
  input_grad: bool

  def output_shape(self, batch: int) -> tuple[int, ...]:
    """Its output's NHWC shape for ``batch`` images."""
    return lax.conv_general_shape_tuple((batch, *self.input), self.kernel, self.strides,
                                        self.padding, ops.NHWC)

  def flops(self) -> int:
    """FLOPs of its forward pass on one image."""
    return 2 * int(np.prod(self.kernel)) * int(np.prod(self.output_shape(1)[1:-1]))


def conv_layers(model: posenet.PoseNet, input_size: int) -> list[ConvLayer]:
  """Every convolution of one image's forward pass, in call order."""
  layers = []
  for module, inputs, _ in _layers(model, input_size):
    if not isinstance(module, nn.Conv):
      continue
    window = tuple(module.kernel_size)
    strides = module.strides or 1
    strides = (strides,) * len(window) if isinstance(strides, int) else tuple(strides)
    padding = nn.linear.canonicalize_padding(module.padding, len(window))
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(inputs[1:-1], window, strides, padding)
    layers.append(ConvLayer(tuple(inputs[1:]), (*window, inputs[-1], module.features), strides,
                            tuple(tuple(int(p) for p in pair) for pair in padding),
                            input_grad=bool(layers)))
  return layers


def conv_arrays(layer: ConvLayer, batch: int, backward: bool) -> tuple:
  """``(x, kernel, dy)`` to time ``layer`` on, the same in both frameworks' processes (``dy``,
  the output's gradient, None for the forward pass alone)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, *layer.input), np.float32)
  kernel = rng.standard_normal(layer.kernel) / np.sqrt(np.prod(layer.kernel[:-1]))
  dy = rng.standard_normal(layer.output_shape(batch), np.float32) if backward else None
  return x, kernel.astype(np.float32), dy


def conv_call(layer: ConvLayer, x: np.ndarray, kernel: np.ndarray, dy: np.ndarray | None):
  """A call of ``layer`` as the network runs it (``ops.conv_general_dilated``) on NHWC ``x``
  and the HWIO ``kernel``: the output, or, given the output's gradient ``dy``, the output
  and the gradients the train step takes: (input, kernel), or (kernel,) for a layer
  without ``input_grad``."""
  conv = functools.partial(ops.conv_general_dilated, window_strides=layer.strides,
                           padding=layer.padding, dimension_numbers=ops.NHWC)
  x, kernel = jax.device_put((x, kernel))
  if dy is None:
    forward = parallel.jit_local(conv)
    return lambda: forward(x, kernel)

  def train(x, kernel, dy):
    # The output is returned, as the train step uses it: XLA would drop an unused one.
    if layer.input_grad:
      y, vjp = jax.vjp(conv, x, kernel)
    else:
      y, vjp = jax.vjp(lambda k: conv(x, k), kernel)
    return y, vjp(dy)

  train, dy = parallel.jit_local(train), jax.device_put(dy)
  return lambda: train(x, kernel, dy)


class TimingProcess:
  """A process of its own that times calls for ``--compare``: as each framework runs for
  its users, and the same for both. Within one process, a framework's times depend on
  what the process ran before: the two frameworks share one malloc heap, and each one's
  buffers fault in again where the other's were freed (jaxpose's train step and inference
  5 % slower beside PyTorch's than alone), and jaxpose's convolutions alone ran 17–32 %
  slower, with no page faults, once the whole network's programs had been built.

  Between requests the process is stopped (SIGSTOP): PyTorch's OpenMP threads spin on
  after a call, and took enough of the 2 cores to slow jaxpose's train step by 7 %
  (PyTorch's own step 7 % slower with OMP_WAIT_POLICY=PASSIVE instead).

  ``times(request, steps)`` times ``steps`` calls (after a warm-up call) of
  ``('conv', layer, batch, backward)`` (``conv_arrays`` through ``framework``'s convolution:
  ``conv_call`` or ``torch_reference.conv_call``) or, with PyTorch's ``network`` (the
  arguments of ``torch_reference.benchmark_calls``), of 'train' (an Adadelta step) and
  'infer'; with framework 'onnxruntime' and ``network`` (a serialized ONNX model, its uint8
  crops), of 'infer'. ``cpu_setup``: the argument with which this process ran
  ``runtime.configure_cpu`` (None: it did not), which the other then runs too."""

  def __init__(self, framework: str, cpu_setup: int | None, network: tuple | None = None):
    if framework == 'torch' and importlib.util.find_spec('torch') is None:
      raise ImportError('--compare=torch needs PyTorch: pip install -e .[bench]')
    context = multiprocessing.get_context('spawn')  # a fresh interpreter, not a fork of JAX
    self._conn, child = context.Pipe()
    self._process = context.Process(target=_serve, args=(child, framework, cpu_setup, network),
                                    daemon=True)
    self._process.start()
    child.close()
    self.info = self._receive()
    os.kill(self._process.pid, signal.SIGSTOP)

  def times(self, request, steps: int) -> list[float]:
    os.kill(self._process.pid, signal.SIGCONT)
    self._conn.send((request, steps))
    times = self._receive()
    os.kill(self._process.pid, signal.SIGSTOP)
    return times

  def _receive(self):
    try:
      kind, value = self._conn.recv()
    except EOFError:
      raise RuntimeError(f'the timing process died (exit code {self._process.exitcode})'
                         ) from None
    if kind == 'error':
      raise RuntimeError(f'the timing process failed:\n{value}')
    return value

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    if self._process.is_alive():
      os.kill(self._process.pid, signal.SIGCONT)
      self._conn.send(None)
    self._process.join(timeout=60)
    if self._process.is_alive():
      self._process.kill()


def _serve(conn, framework: str, cpu_setup: int | None, network: tuple | None) -> None:
  """``TimingProcess``'s other end: builds the calls and answers timing requests until it
  receives None."""
  try:
    if cpu_setup is not None:
      runtime.configure_cpu(cpu_setup)
    info, calls, convolution = {}, {}, conv_call
    if framework == 'torch':
      # pylint: disable=g-import-not-at-top
      import torch
      from jaxpose import torch_reference  # torch is an optional dependency (`bench`).
      # pylint: enable=g-import-not-at-top
      # XLA:CPU's thread pool spans every core the process may use; PyTorch gets as many.
      torch.set_num_threads(len(os.sched_getaffinity(0)))
      info = dict(torch=torch.__version__, torch_threads=torch.get_num_threads())
      if network is not None:
        calls = dict(zip(('train', 'infer'), torch_reference.benchmark_calls(*network)))

      def convolution(layer, x, kernel, dy):
        return torch_reference.conv_call(x, kernel, layer.strides, layer.padding, dy,
                                         layer.input_grad)
    elif framework == 'onnxruntime':
      import onnxruntime  # pylint: disable=g-import-not-at-top
      serialized, images = network
      session = onnxruntime.InferenceSession(serialized, providers=['CPUExecutionProvider'])
      info = dict(onnxruntime=onnxruntime.__version__)
      calls = dict(infer=lambda: session.run(None, {'crops': images}))
    conn.send(('ok', info))
    conv = None, None  # the last convolution asked for: rounds ask for it again
    while (message := conn.recv()) is not None:
      request, steps = message
      if request not in calls and request != conv[0]:
        _, layer, images, backward = request
        conv = request, convolution(layer, *conv_arrays(layer, images, backward))
      conn.send(('ok', _call_times(calls.get(request, conv[1]), steps)))
  except Exception:  # pylint: disable=broad-except
    conn.send(('error', traceback.format_exc()))


def compare_convolutions(layers: list[ConvLayer], batch: int, backward: bool,
                         timed_steps: int, rounds: int, sides: dict) -> dict:
  """Each distinct convolution of ``layers`` at ``batch`` images, its forward pass or (with
  ``backward``) the forward pass and its gradients, timed in turns in ``sides``' jaxpose
  and torch ``TimingProcess``; the sums over ``layers`` (each convolution as often as the
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
  ``torch_reference``'s PyTorch network (in a ``TimingProcess``) from the same initial
  weights, timed in turns: each of ``rounds`` rounds times ``timed_steps`` calls of each
  (after a warm-up call), so that a machine shared with other work slows both alike; the
  network's convolutions alone (``compare_convolutions``, each framework in a process of
  its own) and the rest of each step. Ratios are jaxpose's speed over PyTorch's."""
  jax_train, jax_infer = build_train(config, mesh), build_infer(config, mesh, infer_batch)
  targets = jax.device_get(losses.make_targets(jax_train['batch'], config))
  layers = conv_layers(posenet.create(config.model), config.data.input_size)
  network = (config, jax_train['variables'], jax_train['batch'], targets, jax_infer['images'])
  with TimingProcess('torch', cpu_setup, network) as torch_side, \
       TimingProcess('jaxpose', cpu_setup) as jax_side:
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
        times[what, 'jaxpose'].append(_call_times(call, timed_steps))
        times[what, 'torch'].append(torch_side.times(what, timed_steps))
    result = dict(**torch_side.info, cores=len(os.sched_getaffinity(0)), rounds=rounds,
                  steps_per_round=timed_steps)
  for what, compiled in (('train', jax_train['compiled']), ('infer', jax_infer['compiled'])):
    images = sizes[what]
    section = {name: _framework_rates(images, times[what, name])
               for name in ('jaxpose', 'torch')}
    flops = _flops(compiled, mesh.devices.size)
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
  """The network on crops (``predict.crop_network``, one device) in XLA (here), ONNX Runtime
  (``onnx_export``'s model of it) and PyTorch (``torch_reference``), each of the last two in
  a ``TimingProcess``, from the same weights: images/s at each of ``batches`` and the
  latency of one crop, timed in turns over ``rounds`` rounds. Ratios are over PyTorch's."""
  model = posenet.create(config.model)
  size = config.data.input_size
  variables = jax.device_get(model.init(jax.random.key(config.seed),
                                        np.zeros((1, size, size, 3), np.uint8), train=False))
  network = functools.partial(predict.crop_network(model), variables)
  serialized = onnx_export.to_onnx(network, (size, size, 3), np.uint8,
                                   'crops').SerializeToString()
  xla = parallel.jit_local(network)
  # PyTorch's network is built with its train step too: a small batch for that.
  train_batch = random_batch(config, 2)
  targets = jax.device_get(losses.make_targets(train_batch, config))
  result = dict(cores=len(os.sched_getaffinity(0)), rounds=rounds,
                steps_per_round=timed_steps)
  for batch in (*batches, 1):
    images = np.random.default_rng(batch).integers(0, 256, (batch, size, size, 3), np.uint8)
    with TimingProcess('torch', cpu_setup, (config, variables, train_batch, targets,
                                            images)) as torch_side, \
         TimingProcess('onnxruntime', cpu_setup, (serialized, images)) as ort_side:
      times = dict(xla=[], onnxruntime=[], torch=[])
      for _ in range(rounds):
        times['xla'].append(_call_times(lambda: xla(images), timed_steps))
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


def _machine(config: ml_collections.ConfigDict) -> dict:
  device = jax.local_devices()[0]
  return dict(platform=device.platform, device_kind=device.device_kind,
              devices=jax.local_device_count(), jax=jax.__version__,
              xla_flags=os.environ.get('XLA_FLAGS', ''), dtype=config.model.dtype,
              input_size=config.data.input_size)


def compare(config: ml_collections.ConfigDict, framework: str, timed_steps: int,
            rounds: int, infer_batch: int, cpu_setup: int | None) -> dict:
  """``compare_torch`` (``framework`` 'torch') on all local devices, with the peak, or
  ``compare_inference`` (``framework`` 'inference')."""
  if framework not in ('torch', 'inference'):
    raise ValueError(f'--compare={framework}: expected torch or inference')
  result = _machine(config)
  if framework == 'inference':
    result['compare'] = compare_inference(config, timed_steps, rounds, cpu_setup)
    return result
  mesh = parallel.make_mesh(jax.local_devices())
  result['peak'] = measure_peak(mesh, jnp.dtype(config.model.dtype))
  result['compare'] = compare_torch(config, mesh, timed_steps, rounds,
                                    result['peak']['flops_per_s'], infer_batch, cpu_setup)
  result.update(peak_memory())
  return result


def benchmark(config: ml_collections.ConfigDict, what, timed_steps: int,
              loop_steps: int = 200, infer_batch: int = 32, rounds: int = 3) -> dict:
  """Measures the sections ``what`` (see the module docstring) of ``config``."""
  unknown = sorted(set(what) - set(SECTIONS))
  if unknown:
    raise ValueError(f'--what: unknown {unknown}; choose from {",".join(SECTIONS)}')
  result = _machine(config)
  mesh = parallel.make_mesh(jax.local_devices())
  if {'train', 'infer', 'loop'} & set(what):
    result['peak'] = measure_peak(mesh, jnp.dtype(config.model.dtype))
    peak = result['peak']['flops_per_s']
  if {'train', 'loop'} & set(what):
    step = build_train(config, mesh)
    result['train'] = measure_train(config, mesh, step, timed_steps, peak)
    result['train']['augmentation'] = measure_augment(config, mesh,
                                                      result['train']['step_s_median'],
                                                      timed_steps)
  if 'loop' in what:
    result['loop'] = measure_loop(config, step, loop_steps, rounds, peak)
    result['loop']['xla_train_flops_per_image'] = result['train'].get('flops_per_image')
  if 'infer' in what:
    result['infer'] = measure_infer(config, mesh, infer_batch, timed_steps, peak)
  if 'input' in what:
    result['input'] = measure_input(config)
  result.update(peak_memory())
  return result


def main(argv):
  del argv
  config = cli.FLAGS.config
  if cli.FLAGS.compare:
    figures = compare(config, cli.FLAGS.compare, cli.FLAGS.timed_steps, cli.FLAGS.rounds,
                      cli.FLAGS.infer_batch, cli.cpu_setup())
  else:
    figures = benchmark(config, cli.FLAGS.what, cli.FLAGS.timed_steps, cli.FLAGS.loop_steps,
                        cli.FLAGS.infer_batch, cli.FLAGS.rounds)
  result = dict(config=config_flags.get_config_filename(cli.FLAGS['config']),
                overrides=config_flags.get_override_values(cli.FLAGS['config']),
                batch_size=config.batch_size, **figures)
  print(json.dumps(result, indent=1))


def define_flags():
  flags.DEFINE_list('what', ['train', 'infer', 'input'],
                    f'What to measure, any of {",".join(SECTIONS)}.')
  flags.DEFINE_integer('infer_batch', 32, 'Batch of the inference throughput.', lower_bound=1)
  flags.DEFINE_integer('timed_steps', 5, 'Timed calls per measurement; medians are reported.',
                       lower_bound=5)
  flags.DEFINE_integer('loop_steps', 200, 'Steps of the loop run (several logging windows).',
                       lower_bound=1)
  flags.DEFINE_enum('compare', None, ['torch', 'inference'],
                    'Instead of --what: time the train step, inference and each convolution '
                    'of jaxpose and of the same network in PyTorch (the `bench` extra, run in '
                    'a process of its own), interleaved, and report the ratios (torch); or '
                    'the network on crops in XLA, ONNX Runtime and PyTorch at batches 8 and '
                    '64 and its latency on one crop (inference).')
  flags.DEFINE_integer('rounds', 3, 'Rounds of --compare (each timing both frameworks in '
                       'turn) and of the loop (each a run between two timings of the step).',
                       lower_bound=1)


if __name__ == '__main__':
  cli.run(main, required=('config',), define_flags=define_flags)
