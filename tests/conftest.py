"""Test set-up: 8 fake CPU devices (the sharded step is tested over them) and the real
benchmark samples from ../shared/fixtures/real when present."""

import os
import pathlib
import tempfile

os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_force_host_platform_device_count=8'])
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Most tests compile the same small networks (the smoke configs): with a compilation cache
# shared by the test processes and the programs they start, each distinct program compiles
# once per machine.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(tempfile.gettempdir(), 'jaxpose_test_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')


def multiprocess_env(devices_per_process: int) -> dict:
  """The environment of the processes of a multi-process test: CPU only, with their own
  device count and without the compilation cache. With the cache, two processes on jax
  0.12.1 deadlocked in their first steps' collectives (one loads a program the other
  compiles); 0.10.2 did not."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS')}
  env.update(XLA_FLAGS=f'--xla_force_host_platform_device_count={devices_per_process}',
             JAX_PLATFORMS='cpu')
  return env

import pytest  # pylint: disable=g-import-not-at-top

from jaxpose import cli  # pylint: disable=g-import-not-at-top
from jaxpose import runtime  # pylint: disable=g-import-not-at-top

runtime.configure_cpu()

REPO = pathlib.Path(__file__).resolve().parents[1]
# Datasets the tests build (the synthetic smoke splits), once per test process.
DATA_DIR = tempfile.mkdtemp(prefix='jaxpose_tfds_')
CONFIGS = REPO / 'configs'
REAL = REPO.parent / 'shared' / 'fixtures' / 'real'


@pytest.fixture
def real_fixtures() -> pathlib.Path:
  if not REAL.exists():
    pytest.skip(f'real benchmark samples not found at {REAL} (they live beside the '
                'repository, in ../shared/fixtures/real)')
  return REAL


def run_main(module, argv: list[str]) -> None:
  """``module.main`` run as ``python -m <module> <argv>`` runs it: its flags (the common ones
  and ``module.define_flags``'s) defined for the call and removed after it."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  if 'workdir' not in flags.FLAGS:
    cli.define_common_flags()
  before = set(flags.FLAGS)
  module.define_flags()
  added = set(flags.FLAGS) - before
  try:
    flags.FLAGS([module.__name__] + argv)
    module.main([])
  finally:
    flags.FLAGS.unparse_flags()
    for name in added:
      delattr(flags.FLAGS, name)


def load_config(name: str, variant: str | None = 'smoke'):
  """A config file of configs/ loaded the way --config=configs/<name>.py:<variant> does."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location(f'config_{name}', CONFIGS / f'{name}.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(variant)
  config.data.data_dir = DATA_DIR
  return config


def loss_and_grads(model, variables: dict, images, targets: dict, config):
  """``((total, terms), grads)``: the training loss of ``model`` (BatchNorm on the batch's
  statistics, the running ones left as they are) and its gradients with respect to
  ``variables['params']``, jitted."""
  import jax  # pylint: disable=g-import-not-at-top
  from jaxpose import losses  # pylint: disable=g-import-not-at-top

  def loss_fn(params):
    outputs, _ = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                             images, train=True, mutable=['batch_stats'])
    return losses.compute(outputs, targets, dict(config.loss), config.data.input_size,
                          config.data.heatmap_sigma)

  return jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(variables['params'])
