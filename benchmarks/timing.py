"""The processes that time each framework for ``benchmarks/compare_torch.py``, and the
calls of one convolution that they time (``conv_arrays``, ``conv_call``)."""

from __future__ import annotations

import functools
import importlib.util
import multiprocessing
import os
import signal
import traceback

import jax
import numpy as np

from jaxpose import benchmark
from jaxpose import parallel
from jaxpose import runtime
from jaxpose.models import inventory
from jaxpose.models import ops


def conv_arrays(layer: inventory.ConvLayer, batch: int, backward: bool) -> tuple:
  """``(x, kernel, dy)`` to time ``layer`` on, the same in both frameworks' processes (``dy``,
  the output's gradient, None for the forward pass alone)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((batch, *layer.input), np.float32)
  kernel = rng.standard_normal(layer.kernel) / np.sqrt(np.prod(layer.kernel[:-1]))
  dy = rng.standard_normal(layer.output_shape(batch), np.float32) if backward else None
  return x, kernel.astype(np.float32), dy


def conv_call(layer: inventory.ConvLayer, x: np.ndarray, kernel: np.ndarray, dy: np.ndarray | None):
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
  """A process of its own that times calls for ``compare_torch``: as each framework runs
  for its users, and the same for both. Within one process, a framework's times depend on
  what the process ran before (the frameworks share one malloc heap; jaxpose's
  convolutions alone ran slower once the whole network's programs had been built).

  Between requests the process is stopped (SIGSTOP): PyTorch's OpenMP threads spin on
  after a call and would take cores from the other framework. (The figures of both:
  docs/performance.md, "Timing processes".)

  ``times(request, steps)`` times ``steps`` calls (after a warm-up call) of
  ``('conv', layer, batch, backward)`` (``conv_arrays`` through ``framework``'s convolution:
  ``conv_call`` or ``torch_reference.conv_call``) or, with PyTorch's ``network`` (the
  arguments of ``torch_reference.benchmark_calls``), of 'train' (an Adadelta step) and
  'infer'; with framework 'onnxruntime' and ``network`` (a serialized ONNX model, its uint8
  crops), of 'infer'. ``cpu_setup``: the argument with which this process ran
  ``runtime.configure_cpu`` (None: it did not), which the other then runs too."""

  def __init__(self, framework: str, cpu_setup: int | None, network: tuple | None = None):
    if framework == 'torch' and importlib.util.find_spec('torch') is None:
      raise ImportError('the PyTorch comparison needs PyTorch: pip install -e .[bench]')
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
      # Here only: the other processes (and the parent) keep torch out of their heap.
      # pylint: disable=g-import-not-at-top
      import torch
      from benchmarks import torch_reference
      # pylint: enable=g-import-not-at-top
      # XLA:CPU's thread pool spans every core the process may use; PyTorch gets as many.
      torch.set_num_threads(len(os.sched_getaffinity(0)))
      info = dict(torch=torch.__version__, torch_threads=torch.get_num_threads())
      if network is not None:
        calls = dict(zip(('train', 'infer'), torch_reference.benchmark_calls(*network)))
      convolution = torch_reference.conv_call
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
      conn.send(('ok', benchmark.call_times(calls.get(request, conv[1]), steps)))
  except Exception:  # pylint: disable=broad-except
    conn.send(('error', traceback.format_exc()))
