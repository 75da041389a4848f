"""Test set-up: 8 fake CPU devices (the sharded step is tested over them), the real
benchmark samples from ../shared/fixtures/real when present, and the smoke checkpoint the
inference tests share (trained once per test process)."""

import json
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

import numpy as np  # pylint: disable=g-import-not-at-top
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


@pytest.fixture
def real_photos(real_fixtures) -> list[tuple[pathlib.Path, tuple, float | None]]:
  """(path, person box x, y, w, h, focal or None) of every real sample: MPII's boxes from
  its centre and scale (box height / 200 px); Human3.6M's too, with its camera's focal."""
  photos = []
  for record in json.loads((real_fixtures / 'mpii' / 'annotations.json').read_text()):
    half = 100 * record['scale']
    (cx, cy) = record['center']
    photos.append((real_fixtures / 'mpii' / 'images' / record['image'],
                   (cx - half, cy - half, 2 * half, 2 * half), None))
  h36m = np.load(real_fixtures / 'h36m' / 'annotations.npz')
  cameras = json.loads((real_fixtures / 'h36m' / 'cameras.json').read_text())
  for name, (cx, cy), scale in zip(h36m['imgname'], h36m['center'], h36m['scale']):
    subject, camera = name.split('/')[0], name.split('/')[1].split('.')[-1]
    half = 100 * scale
    focal = float(np.mean(cameras[f'{subject}_{camera}']['f']))
    photos.append((real_fixtures / 'h36m' / 'images' / name,
                   (cx - half, cy - half, 2 * half, 2 * half), focal))
  return photos


@pytest.fixture(scope='session')
def trained_smoke_workdir(tmp_path_factory) -> str:
  """A workdir with a checkpoint of the synthetic smoke config (two steps), trained once
  per test process."""
  from jaxpose import train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path_factory.mktemp('jaxpose_predict_'))
  config = load_config('synthetic')
  config.total_steps = 2
  config.checkpoint_every_steps = 2
  config.image_every_steps = 0
  config.data.eval = {}  # prediction needs a checkpoint, not its evaluation
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope='module')
def predictor(trained_smoke_workdir):
  """The Predictor of ``trained_smoke_workdir``."""
  from jaxpose.inference import predictor as predictor_lib  # pylint: disable=g-import-not-at-top
  return predictor_lib.Predictor(trained_smoke_workdir)


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
