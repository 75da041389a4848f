"""cli.configure_cpu only makes XLA:CPU faster: with CPU_XLA_FLAG the train step's loss and
gradients equal those of the plain XLA:CPU path, and freed memory is handed out again."""

import os
import pathlib
import platform
import subprocess
import sys

import numpy as np
import pytest

from jaxpose import cli

REPO = pathlib.Path(__file__).resolve().parents[1]
# One process per XLA_FLAGS (XLA reads them once): the smoke network's loss and gradients
# on a random batch, saved as .npz (without TensorFlow, which the data modules import).
GRADIENTS = '''
import sys
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
np.savez(sys.argv[1], loss=loss, **{jax.tree_util.keystr(k): v for k, v in leaves})
'''


def _gradients(xla_flags: str, path) -> dict:
  # conftest's XLA_FLAGS (8 devices, CPU_XLA_FLAG) must not leak into the plain run.
  env = dict(os.environ, XLA_FLAGS=xla_flags, PYTHONPATH=str(REPO))
  subprocess.run([sys.executable, '-c', GRADIENTS, str(path)], cwd=REPO, env=env, check=True)
  with np.load(path) as saved:
    return dict(saved)


# XLA's own settings of CPU_XLA_FLAG's flags, spelled out: the script imports conftest, whose
# cli.configure_cpu() adds CPU_XLA_FLAG to any flag it does not find set.
PLAIN_XLA = ('--xla_cpu_experimental_ynn_fusion_type=+individual_convolution '
             '--xla_cpu_enable_concurrency_optimized_scheduler=false')


def test_cpu_xla_flag_keeps_the_gradients(tmp_path):
  assert [f.split('=')[0] for f in PLAIN_XLA.split()] == [
      f.split('=')[0] for f in cli.CPU_XLA_FLAG.split()]
  plain = _gradients(PLAIN_XLA, tmp_path / 'plain.npz')
  fast = _gradients(cli.CPU_XLA_FLAG, tmp_path / 'fast.npz')
  assert plain.keys() == fast.keys() and len(plain) > 50
  np.testing.assert_allclose(fast.pop('loss'), plain.pop('loss'), rtol=1e-5)
  for name, value in plain.items():
    # Relative to each gradient's largest entry: convolutions sum in another order.
    scale = max(np.abs(value).max(), 1e-12)
    np.testing.assert_allclose(fast[name] / scale, value / scale, atol=1e-4, err_msg=name)


# A block as big as a train step's temporaries, allocated twice: the second time from the
# memory the first one freed.
REALLOCATE = '''
import resource, numpy as np
from jaxpose import cli
cli.configure_cpu()
for _ in range(2):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = np.ones(1 << 26, np.float32)  # 256 MiB, 65536 pages of 4 KiB
  del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='the allocator set-up is glibc\'s')
def test_configure_cpu_keeps_freed_memory_for_the_next_step():
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=str(REPO))
  out = subprocess.run([sys.executable, '-c', REALLOCATE], cwd=REPO, env=env, check=True,
                       capture_output=True, text=True).stdout
  # glibc's default maps and unmaps such a block: 65536 faults (about 640 here, where numpy
  # asks for huge pages).
  assert int(out.split()[-1]) < 50
