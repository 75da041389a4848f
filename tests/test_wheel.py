"""jaxpose installed from its wheel, run from a folder outside the repository: the wheel holds
every module and the TFDS builders with their dummy data, installs no top-level ``datasets``,
and trains, evaluates, predicts and exports; the SavedModel runs in TensorFlow alone and
agrees with the jax.export artefact.

The end-to-end test needs a Python with the wheel installed (``.ci/run`` makes one: the
newest set, no constraints) named by ``JAXPOSE_WHEEL_PYTHON``; it skips without one.
"""

import json
import os
import pathlib
import subprocess
import sys
import zipfile

import pytest

from conftest import CONFIGS, REPO

WHEEL_PYTHON = os.environ.get('JAXPOSE_WHEEL_PYTHON')

# Runs in a fresh interpreter: TensorFlow and numpy only.
_SAVED_MODEL = r'''
import sys
import numpy as np
import tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
crops = np.load(sys.argv[2])
out = model.signatures['crops'](crops=tf.constant(crops))
assert not any(m.split('.')[0] in ('jaxpose', 'flax') for m in sys.modules)
np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})
'''

# jax alone: the jax.export artefact on the same crops.
_JAX_EXPORT = r'''
import sys
import jax
import numpy as np
exported = jax.export.deserialize(open(sys.argv[1], 'rb').read())
out = exported.call(np.load(sys.argv[2]))
assert not any(m.split('.')[0] in ('jaxpose', 'flax') for m in sys.modules)
np.savez(sys.argv[3], **{k: np.asarray(v) for k, v in out.items()})
'''


def _wheel(tmp_path) -> pathlib.Path:
  subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--quiet', '-w',
                  str(tmp_path), str(REPO)], check=True, capture_output=True)
  wheel, = tmp_path.glob('jaxpose-*.whl')
  return wheel


def test_the_wheel_holds_every_module_and_the_builders(tmp_path):
  names = set(zipfile.ZipFile(_wheel(tmp_path)).namelist())
  modules = {p.relative_to(REPO).as_posix() for p in (REPO / 'jaxpose').rglob('*.py')}
  assert modules <= names, sorted(modules - names)
  builders = {'jaxpose/builders/' + p.relative_to(REPO / 'datasets').as_posix()
              for p in (REPO / 'datasets').rglob('*') if p.is_file()
              and '__pycache__' not in p.parts}
  assert builders <= names, sorted(builders - names)
  assert not any(n.startswith('datasets/') for n in names)


def _run(args, cwd, env):
  run = subprocess.run([WHEEL_PYTHON, *args], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=900)
  assert run.returncode == 0, f'{args}:\n{run.stderr[-4000:]}'
  return run.stdout


@pytest.mark.skipif(not WHEEL_PYTHON, reason='needs JAXPOSE_WHEEL_PYTHON, a Python with the '
                    'jaxpose wheel installed (.ci/run makes one)')
def test_the_installed_wheel_trains_evaluates_predicts_and_exports(tmp_path, real_fixtures):
  import numpy as np  # pylint: disable=g-import-not-at-top
  # Outside the repository, so nothing is imported from the checkout.
  env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'XLA_FLAGS')}
  env['TFDS_DATA_DIR'] = str(tmp_path / 'tfds')
  where = json.loads(_run(['-c', 'import json, jaxpose; from jaxpose.data import tfds_io; '
                           'print(json.dumps([jaxpose.__file__, str(tfds_io.DATASETS_DIR)]))'],
                          tmp_path, env))
  site = pathlib.Path(where[0]).parents[1]
  assert pathlib.Path(where[1]) == site / 'jaxpose' / 'builders'
  assert site.name == 'site-packages' and pathlib.Path(where[0]).parent != REPO / 'jaxpose'
  assert not (site / 'datasets').exists()

  config = f'--config={CONFIGS / "synthetic.py"}:smoke'
  _run(['-m', 'jaxpose.train', config, '--workdir=w'], tmp_path, env)
  _run(['-m', 'jaxpose.evaluate', config, '--workdir=w'], tmp_path, env)
  assert list((tmp_path / 'w' / 'eval').glob('*/*.json'))

  photo = sorted((real_fixtures / 'mpii' / 'images').glob('*.jpg'))[0]
  _run(['-m', 'jaxpose.predict', '--workdir=w', f'--image={photo}', '--out=p'], tmp_path, env)
  prediction = json.loads((tmp_path / 'p' / f'{photo.stem}.json').read_text())
  assert np.isfinite(np.asarray(prediction['pose_3d'])).all()

  _run(['-m', 'jaxpose.export', '--workdir=w', '--out=e'], tmp_path, env)
  info = json.loads((tmp_path / 'e' / 'export.json').read_text())
  size = info['input_size']
  crops = np.random.default_rng(0).integers(0, 256, (3, size, size, 3), np.uint8)
  np.save(tmp_path / 'crops.npy', crops)
  _run(['-c', _SAVED_MODEL, 'e/saved_model', 'crops.npy', 'tf.npz'], tmp_path, env)
  _run(['-c', _JAX_EXPORT, 'e/crops.jax_export', 'crops.npy', 'jax.npz'], tmp_path, env)
  tf_out, jax_out = np.load(tmp_path / 'tf.npz'), np.load(tmp_path / 'jax.npz')
  assert set(tf_out) == set(jax_out)
  for key in jax_out:
    np.testing.assert_allclose(tf_out[key], jax_out[key], rtol=1e-4, atol=1e-3, err_msg=key)
