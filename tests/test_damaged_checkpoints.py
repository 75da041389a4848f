"""Damaged checkpoints: resume skips them (kept aside, named), evaluation names the step and
the file, --step picks a step, unfinished saves are cleaned up, and readers survive a
training run deleting the step they are reading."""

import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxpose import checkpoint
from jaxpose import cli
from jaxpose import evaluate
from jaxpose import train
from conftest import REPO, load_config

RUN = dict(total_steps=6, checkpoint_every_steps=3, image_every_steps=0, eval_every_steps=6)


def _config(**overrides):
  config = load_config('synthetic')
  config.update({**RUN, **overrides})
  return config


@pytest.fixture(autouse=True)
def info_logs(caplog):
  caplog.set_level(logging.INFO)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A workdir with the checkpoints of steps 3 and 6."""
  workdir = tmp_path_factory.mktemp('trained')
  train.train_and_evaluate(_config(), str(workdir))
  return workdir


@pytest.fixture
def workdir(trained, tmp_path):
  copy = tmp_path / 'work'
  shutil.copytree(trained, copy)
  return copy


def _damage(workdir, how):
  """Damages the checkpoint of step 6; returns the start of what the message names: the
  missing file, or for truncated array files the database folder (TensorStore names the
  array, and the data file of hashed name where it read one)."""
  step = workdir / 'checkpoints' / '6'
  if how == 'truncated':
    # Every array file: evaluation reads only some arrays (the model's).
    for path in (step / 'state').rglob('d/*'):
      with open(path, 'r+b') as f:
        f.truncate(50)
    return f'{step}/state/'
  path = step / how
  path.unlink()
  return f'{path}: missing'


DAMAGES = ['state/_METADATA', 'state/manifest.ocdbt', 'meta/metadata', 'truncated']


def _steps(workdir):
  return sorted(p.name for p in (workdir / 'checkpoints').iterdir())


@pytest.mark.parametrize('how', DAMAGES)
def test_resume_skips_a_damaged_checkpoint_and_keeps_it(workdir, how, caplog):
  path = _damage(workdir, how)
  train.train_and_evaluate(_config(total_steps=9), str(workdir))
  directory = workdir / 'checkpoints'
  assert (f'the checkpoint of step 6 in {directory} is damaged: {path}' in caplog.text
          ), caplog.text[-3000:]
  assert f'Skipped (kept as {directory}/6.damaged)' in caplog.text
  assert 'Resumed from step 3 of' in caplog.text
  assert _steps(workdir) == ['3', '6', '6.damaged', '9']
  assert (directory / '6.damaged' / 'state').is_dir()


@pytest.mark.parametrize('how', DAMAGES)
def test_evaluation_names_the_damaged_step_and_file(workdir, how):
  path = _damage(workdir, how)
  with pytest.raises(checkpoint.DamagedCheckpointError) as raised:
    evaluate.restore_and_evaluate(_config(), str(workdir))
  line = cli._describe(raised.value)
  assert line.startswith(f'the checkpoint of step 6 in {workdir}/checkpoints is damaged: '
                         f'{path}'), line
  assert line.endswith('(choose another step with --step; steps there: [3, 6])'), line
  assert evaluate.restore_and_evaluate(_config(), str(workdir), step=3)


def test_every_checkpoint_damaged_is_named(workdir):
  _damage(workdir, 'state/_METADATA')
  (workdir / 'checkpoints' / '3' / 'state' / '_METADATA').unlink()
  with pytest.raises(checkpoint.DamagedCheckpointError) as raised:
    train.train_and_evaluate(_config(total_steps=9), str(workdir))
  assert cli._describe(raised.value).endswith(
      '3/state/_METADATA: missing (and no older checkpoint is left to resume from)')


def test_step_resumes_from_an_earlier_checkpoint_keeping_the_newer(workdir, caplog):
  state = train.train_and_evaluate(_config(), str(workdir), resume_step=3)
  assert 'Resumed from step 3 of' in caplog.text
  assert (f'Resuming from step 3 as --step asks: the newer checkpoints (steps [6]) are kept '
          f"as ['{workdir}/checkpoints/6.superseded']") in caplog.text
  assert _steps(workdir) == ['3', '6', '6.superseded']
  assert int(state.step) == 6
  with pytest.raises(FileNotFoundError, match=r'--step=4: no checkpoint of that step in .*; '
                     r'steps there: \[3, 6\]'):
    train.train_and_evaluate(_config(), str(workdir), resume_step=4)


def test_unfinished_saves_older_than_the_resumed_step_are_removed(workdir, caplog):
  directory = workdir / 'checkpoints'
  for name in ('2.orbax-checkpoint-tmp-17', '5.orbax-checkpoint-tmp-18'):
    (directory / name / 'state').mkdir(parents=True)
    (directory / name / 'state' / 'data').write_bytes(b'x' * 1000)
  train.train_and_evaluate(_config(total_steps=7), str(workdir))
  assert _steps(workdir) == ['3', '6', '7']
  for name in ('2.orbax-checkpoint-tmp-17', '5.orbax-checkpoint-tmp-18'):
    assert (f'Removing {directory}/{name}: an unfinished save of step {name[0]}, older than '
            'the checkpoint of step 6 resumed from') in caplog.text


def test_total_steps_below_the_checkpoint_is_refused(workdir):
  with pytest.raises(ValueError, match=r'config.total_steps=4 is below step 6 of the '
                     r'checkpoint in .*: expected total_steps >= 6'):
    train.train_and_evaluate(_config(total_steps=4), str(workdir))
  assert _steps(workdir) == ['3', '6']


# Saves a two-array "train state" as fast as it can, keeping 2 steps, until killed.
WRITER = '''
import sys, numpy as np
from jaxpose import checkpoint
ckpt = checkpoint.Checkpointer(sys.argv[1], keep=2)
step = 0
while True:
  step += 1
  value = np.full((64, 64), step, np.float32)
  ckpt.save(step, {'params': {'w': value}, 'batch_stats': {'m': value[0]}}, {'step': step})
  ckpt.wait()
  if step == 3:
    print('saving', flush=True)
'''


def test_readers_survive_training_deleting_old_checkpoints(tmp_path):
  writer = subprocess.Popen([sys.executable, '-c', WRITER, str(tmp_path)], cwd=REPO,
                            stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, JAX_PLATFORMS='cpu'))
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  abstract = {'params': {'w': jax.ShapeDtypeStruct((64, 64), np.float32, sharding=sharding)},
              'batch_stats': {'m': jax.ShapeDtypeStruct((64,), np.float32,
                                                        sharding=sharding)}}
  try:
    assert writer.stdout.readline().strip() == 'saving'
    for _ in range(60):
      variables, meta, step = checkpoint.read(str(tmp_path), None, lambda ckpt, step: (
          ckpt.restore_variables(abstract, step), ckpt.read_meta(step), step))
      assert meta['step'] == step and float(variables['params']['w'][0, 0]) == step
  finally:
    writer.kill()
    writer.wait()
