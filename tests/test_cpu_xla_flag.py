"""runtime.configure_cpu only makes XLA:CPU faster: with CPU_XLA_FLAG the train step's loss
and gradients equal those of the plain XLA:CPU path, and freed memory is handed out again."""

import os
import pathlib
import platform
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import load_config
from jaxpose import benchmark
from jaxpose import parallel
from jaxpose import runtime

REPO = pathlib.Path(__file__).resolve().parents[1]
# One process per XLA_FLAGS (XLA reads them once): the smoke network's loss and gradients
# on a random batch, saved as .npz (without TensorFlow, which the data modules import).
GRADIENTS = '''
import os, sys
import jax, numpy as np
sys.path.insert(0, 'tests')
from conftest import load_config, loss_and_grads
from jaxpose import losses, skeleton
from jaxpose.models import posenet
config = load_config('synthetic')
model = posenet.create(config.model)
size, n, j = config.data.input_size, 8, skeleton.NUM_JOINTS
rng = np.random.default_rng(0)
images = rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8)
pose = rng.normal(0, 300, (n, j, 3)).astype(np.float32)
targets = dict(pose_3d=pose - pose[:, :1], has_3d=np.arange(n) % 2 == 0,
               joints_2d=rng.uniform(0, size, (n, j, 2)).astype(np.float32),
               joints_2d_valid=rng.uniform(size=(n, j)) > 0.1,
               ref_bone_lengths=rng.uniform(100, 400, (n, skeleton.NUM_BONES)).astype(np.float32),
               has_ref_bones=np.ones(n, bool))
variables = model.init(jax.random.key(0), images[:1], train=False)

(loss, _), grads = jax.device_get(loss_and_grads(model, variables, images, targets, config))
leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
np.savez(sys.argv[1], loss=loss, xla_flags=os.environ['XLA_FLAGS'],
         **{jax.tree_util.keystr(k): v for k, v in leaves})
'''


def _gradients(xla_flags: str, path) -> tuple[dict, set[str]]:
  """The script's loss and gradients under ``xla_flags``, and the XLA flags it ran with."""
  # conftest's XLA_FLAGS (8 devices, CPU_XLA_FLAG) must not leak into the plain run.
  env = dict(os.environ, XLA_FLAGS=xla_flags, PYTHONPATH=str(REPO))
  subprocess.run([sys.executable, '-c', GRADIENTS, str(path)], cwd=REPO, env=env, check=True)
  with np.load(path) as saved:
    saved = dict(saved)
  return saved, set(str(saved.pop('xla_flags')).split())


# XLA's own settings of CPU_XLA_FLAG's flags, spelled out: the script imports conftest, whose
# runtime.configure_cpu() adds CPU_XLA_FLAG to any flag it does not find set.
PLAIN_XLA = ('--xla_cpu_experimental_ynn_fusion_type=+individual_convolution '
             '--xla_cpu_enable_concurrency_optimized_scheduler=false')


def test_cpu_xla_flag_keeps_the_gradients(tmp_path):
  plain, plain_flags = _gradients(PLAIN_XLA, tmp_path / 'plain.npz')
  fast, fast_flags = _gradients(runtime.CPU_XLA_FLAG, tmp_path / 'fast.npz')
  # configure_cpu (run by the script's conftest) kept each run's flags: the two runs
  # compare XLA's settings with CPU_XLA_FLAG's, not CPU_XLA_FLAG with itself.
  ours = {f for f in runtime.CPU_XLA_FLAG.split() if runtime.xla_knows(f.split('=')[0])}
  assert ours and ours <= fast_flags and not ours & plain_flags
  assert plain.keys() == fast.keys() and len(plain) > 50
  np.testing.assert_allclose(fast.pop('loss'), plain.pop('loss'), rtol=1e-5)
  for name, value in plain.items():
    # Relative to each gradient's largest entry: convolutions sum in another order.
    scale = max(np.abs(value).max(), 1e-12)
    np.testing.assert_allclose(fast[name] / scale, value / scale, atol=1e-4, err_msg=name)


@pytest.mark.parametrize('flag',
                         [*runtime.CPU_XLA_FLAG.split(), '--xla_cpu_no_such_flag=true'])
def test_xla_knows_the_flags_that_xla_accepts(flag):
  """runtime.xla_knows against XLA's own verdict: it aborts the process on a flag it lacks."""
  env = dict(os.environ, XLA_FLAGS=flag, JAX_PLATFORMS='cpu')
  run = subprocess.run([sys.executable, '-c', 'import jax; jax.devices()'], env=env,
                       capture_output=True, text=True)
  assert (run.returncode == 0) == runtime.xla_knows(flag.split('=')[0]), run.stderr[-2000:]


# A block as big as a train step's temporaries, allocated twice: the second time from the
# memory the first one freed. On a worker thread (where XLA runs a step) too, whose malloc
# arena maps any block bigger than its heap unless every thread shares the main arena.
REALLOCATE = '''
import resource, sys, threading, numpy as np
from jaxpose import runtime
runtime.configure_cpu(int(sys.argv[1]))
def reallocate():
  for _ in range(2):
    before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
    block = np.ones(1 << 26, np.float32)  # 256 MiB, 65536 pages of 4 KiB
    del block
  print(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
reallocate()
thread = threading.Thread(target=reallocate)
thread.start()
thread.join()
'''


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='the allocator set-up is glibc\'s')
@pytest.mark.parametrize('one_arena', [False, True])
def test_configure_cpu_keeps_freed_memory_for_the_next_step(one_arena):
  train_bytes = 2 * runtime.THREAD_HEAP_BYTES if one_arena else 0
  assert ((-8, 1) in runtime.malloc_settings(train_bytes)) == one_arena  # M_ARENA_MAX=1
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, '-c', REALLOCATE, str(train_bytes)], cwd=REPO, env=env,
                       check=True, capture_output=True, text=True).stdout
  main_thread, worker = map(int, out.split())
  # glibc's default maps and unmaps such a block: 65536 faults (at least 128 where numpy
  # asks for huge pages of 2 MiB).
  assert main_thread < 50
  if one_arena:
    assert worker < 50
  else:
    assert worker >= 128


def test_one_arena_only_where_the_train_step_outgrows_a_thread_heap():
  """The quickstart's network keeps its temporaries in a thread's heap, the paper's does
  not (what one arena costs and buys each: docs/performance.md)."""
  quickstart = load_config('synthetic', None)
  paper = load_config('synthetic', 'paper_model')
  paper.batch_size = 8
  assert (runtime.train_activation_bytes(quickstart) < runtime.THREAD_HEAP_BYTES <
          runtime.train_activation_bytes(paper))


def test_activation_bytes_follow_the_compiled_train_steps_temporaries():
  config = load_config('synthetic')
  step = benchmark.build_train(config, parallel.make_mesh(jax.local_devices()[:1]))
  temporaries = step['compiled'].memory_analysis().temp_size_in_bytes
  estimate = runtime.train_activation_bytes(config)
  # The estimate counts the modules' outputs only; the step's temporaries hold them and
  # the gradients' buffers beside them (docs/performance.md has the measured ratios).
  assert estimate < temporaries < 2 * estimate
