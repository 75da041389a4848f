"""A run on built data never imports TensorFlow: training through the command line and its
resume, evaluation, prediction and the jax.export artefact, in a process where
``import tensorflow`` fails (as on the accelerator images, which carry none). Only building
a dataset (TFDS) and the SavedModel export may need it."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image

from jaxpose.data import synthetic
from jaxpose.data import tfds_io
from conftest import DATA_DIR, REPO

# Any import of tensorflow (or of a module of it) fails, and is recorded.
_BLOCK = r'''
import atexit, importlib.abc, importlib.machinery, json, sys
ATTEMPTS = []
class _Refuse(importlib.abc.Loader):
  def create_module(self, spec):
    ATTEMPTS.append(spec.name)
    raise ImportError(f'{spec.name} is not available in this test')
  def exec_module(self, module):
    pass
class _NoTensorFlow(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path=None, target=None):
    if name == 'tensorflow' or name.startswith('tensorflow.'):
      return importlib.machinery.ModuleSpec(name, _Refuse())
    return None
sys.meta_path.insert(0, _NoTensorFlow())
atexit.register(lambda: print('TENSORFLOW_IMPORTS', json.dumps(ATTEMPTS)))
'''

_TRAIN = _BLOCK + r'''
import runpy
sys.path.insert(0, 'tests')
import conftest  # the tests' XLA and compilation-cache set-up
runpy.run_module('jaxpose.train', run_name='__main__', alter_sys=True)
'''

_THE_REST = _BLOCK + r'''
sys.path.insert(0, 'tests')
import numpy as np
import jax
import conftest
# ablation and benchmark imported only: they run the same training and evaluation code.
from jaxpose import ablation, benchmark, evaluate, export, predict, train
from jaxpose.inference import export as export_lib, predictor as predictor_lib, video
data_dir, workdir, image = sys.argv[1:4]
config = conftest.load_config('synthetic')
config.data.data_dir = data_dir
config.total_steps = 4
config.checkpoint_every_steps = 2
config.image_every_steps = 2
state = train.train_and_evaluate(config, workdir)  # resumes at step 2
reports = evaluate.restore_and_evaluate(config, workdir)
predictor = predictor_lib.Predictor(workdir)
prediction = predictor.predict(image)
exported = jax.export.deserialize(export_lib.export_crops(predictor).serialize())
crops = np.zeros((2, predictor.input_size, predictor.input_size, 3), np.uint8)
outputs = exported.call(crops)
print('RESULT', json.dumps(dict(
    step=int(state.step), mpjpe={k: r['mpjpe'] for k, r in reports.items()},
    pose_3d=list(np.shape(prediction['pose_3d'])),
    exported=[list(np.shape(v)) for v in jax.tree.leaves(outputs)])))
'''


def _run(script: str, *args) -> str:
  done = subprocess.run([sys.executable, '-c', script, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=900)
  assert done.returncode == 0, done.stderr[-4000:]
  [line] = [l for l in done.stdout.splitlines() if l.startswith('TENSORFLOW_IMPORTS')]
  assert json.loads(line.split(' ', 1)[1]) == [], f'imported TensorFlow: {line}'
  return done.stdout


def test_train_resume_evaluate_predict_and_export_without_tensorflow(tmp_path):
  # Built beforehand: building a dataset is where TFDS may use TensorFlow.
  tfds_io.ensure_built(tfds_io.get_builder('synthetic_humans', DATA_DIR, 'smoke'))
  workdir, image = tmp_path / 'run', tmp_path / 'person.png'
  Image.fromarray(synthetic.render_sample('wild_test', 0).image).save(image)
  _run(_TRAIN, '--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
       f'--config.data.data_dir={DATA_DIR}', '--config.total_steps=2',
       '--config.checkpoint_every_steps=2')
  assert (workdir / 'checkpoints' / '2').is_dir()
  assert list(workdir.glob('events.out.tfevents.*')), 'no TensorBoard events written'
  out = _run(_THE_REST, DATA_DIR, str(workdir), str(image))
  [line] = [l for l in out.splitlines() if l.startswith('RESULT')]
  result = json.loads(line.split(' ', 1)[1])
  assert result['step'] == 4
  assert set(result['mpjpe']) == {'studio_val', 'wild_val'}
  assert all(np.isfinite(v) for v in result['mpjpe'].values())
  assert result['pose_3d'] == [17, 3]
  assert result['exported'] and all(shape[0] == 2 for shape in result['exported'])
