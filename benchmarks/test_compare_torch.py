"""``python -m benchmarks.compare_torch``: each framework timed in a process of its own,
stopped between requests, on every convolution of the network."""

import collections
import importlib.util
import json
import multiprocessing
import os
import time

import pytest

from benchmarks import compare_torch
from benchmarks import timing
from conftest import REPO
from conftest import load_config
from conftest import run_main
from jaxpose import benchmark
from jaxpose.models import inventory
from jaxpose.models import posenet

needs_torch = pytest.mark.skipif(
    importlib.util.find_spec('torch') is None,
    reason='torch is the optional `bench` extra (pip install -e .[bench]); CI installs only '
    '.[test]')


def _stopped(pid: int) -> bool:
  """Whether process ``pid`` is stopped, once the kernel has delivered a signal just sent."""
  deadline = time.monotonic() + 10
  while time.monotonic() < deadline:
    with open(f'/proc/{pid}/stat') as f:
      if f.read().rsplit(')', 1)[1].split()[0] == 'T':
        return True
    time.sleep(0.01)
  return False


def test_a_timing_process_runs_only_while_it_is_asked():
  config = load_config('synthetic')
  layer = inventory.conv_layers(posenet.create(config.model), config.data.input_size)[1]
  with timing.TimingProcess('jaxpose', None) as side:
    [process] = multiprocessing.active_children()
    assert _stopped(process.pid)
    times = side.times(('conv', layer, 2, True), 3)
    assert len(times) == 3 and all(t > 0 for t in times)
    assert _stopped(process.pid)
  assert not process.is_alive() and process.exitcode == 0


@needs_torch
def test_a_failure_in_the_pytorch_process_is_reported_with_its_cause():
  config = load_config('synthetic')
  batch = benchmark.random_batch(config, 2)
  with pytest.raises(RuntimeError, match='timing process failed(.|\n)*Flax variables do not'):
    timing.TimingProcess('torch', None, (config, {'params': {}}, batch, {}, batch['image']))


@needs_torch
def test_compare_times_every_convolution_of_the_network(capsys):
  """``--compare=torch`` on the smoke network, from the command line: PyTorch on as many
  threads as this process may use cores, and each convolution of the network timed in
  both frameworks, forward at the inference batch and with its gradients at the train
  batch, as often as the network runs it."""
  import torch  # pylint: disable=g-import-not-at-top
  config = load_config('synthetic')
  run_main(compare_torch, [f'--config={REPO}/configs/synthetic.py:smoke', '--rounds=1',
                           '--infer_batch=8'])
  result = json.loads(capsys.readouterr().out)['compare']
  cores = len(os.sched_getaffinity(0))
  assert (result['torch'], result['torch_threads'], result['cores']) == (
      torch.__version__, cores, cores)
  layers = inventory.conv_layers(posenet.create(config.model), config.data.input_size)
  expected = collections.Counter((l.input, l.kernel, l.strides) for l in layers)
  for what, images in (('train', config.batch_size), ('infer', 8)):
    convs = result[what]['convolutions']
    assert (convs['batch_size'], convs['backward']) == (images, what == 'train')
    timed = collections.Counter()
    for row in convs['layers']:
      timed[tuple(row['input']), tuple(row['kernel']), tuple(row['strides'])] += row['count']
      assert row['jaxpose_ms'] > 0 and row['torch_ms'] > 0
    assert timed == expected
