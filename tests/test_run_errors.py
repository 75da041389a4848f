"""What the programs print when the file system or the config is at fault: one line naming
the path, flag or field, exit status 1, no traceback; a full disk names the step, and the
next run resumes without the unfinished save; evaluation writes its reports elsewhere."""

import contextlib
import os
import shutil
import subprocess
import sys

import pytest

from jaxpose import train
from conftest import DATA_DIR, REPO, load_config

SMOKE = ['--config=configs/synthetic.py:smoke', f'--config.data.data_dir={DATA_DIR}',
         '--config.image_every_steps=0']


def _run(module, *args, timeout=600):
  return subprocess.run([sys.executable, '-m', f'jaxpose.{module}', *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))


def _one_line(result, program, logged_tracebacks=False):
  """The one-line error the program ended with (``logged_tracebacks``: other parts may
  have logged tracebacks before it, and Orbax's and TensorStore's threads around it as the
  interpreter exits, even on the same line)."""
  assert result.returncode == 1, result.stderr[-3000:]
  assert logged_tracebacks or 'Traceback' not in result.stderr, result.stderr[-3000:]
  marker = f'{program}.py: error: '
  if logged_tracebacks:
    found = [line[line.index(marker):] for line in result.stderr.splitlines() if marker in line]
    assert len(found) == 1, result.stderr[-3000:]
    return found[0]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(marker), result.stderr[-3000:]
  return last


@pytest.mark.parametrize('where', ['file', 'file/run'])
def test_a_workdir_that_cannot_be_a_folder_is_one_line(tmp_path, where):
  (tmp_path / 'file').write_text('not a folder')
  path = tmp_path / where
  last = _one_line(_run('train', *SMOKE, f'--workdir={path}'), 'train')
  assert str(tmp_path / 'file') in last, last


# TensorFlow's file layer (tf.io.gfile, and etils.epath on gs://) raises tf.errors.OpError,
# which is neither an OSError nor a ValueError.
TF_FILE_ERROR = """
from jaxpose import cli
def main(argv):
  import tensorflow as tf
  raise tf.errors.FailedPreconditionError(None, None, 'gs://bucket/run is not a directory')
cli.run(main, required=())
"""


def test_file_system_errors_of_tensorflow_are_one_line():
  result = subprocess.run([sys.executable, '-c', TF_FILE_ERROR], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert result.returncode == 1 and 'Traceback' not in result.stderr, result.stderr[-3000:]
  assert result.stderr.strip().splitlines()[-1] == (
      '-c: error: gs://bucket/run is not a directory')


@pytest.mark.parametrize('value, expected', [
    ('nan', 'config.optim.learning_rate=nan: expected a finite number >= 0'),
    ('inf', 'config.optim.learning_rate=inf: expected a finite number >= 0'),
    ('-0.5', 'config.optim.learning_rate=-0.5: expected a finite number >= 0'),
])
def test_learning_rates_are_checked_before_training(tmp_path, value, expected):
  last = _one_line(_run('train', *SMOKE, f'--config.optim.learning_rate={value}',
                        f'--workdir={tmp_path / "work"}'), 'train')
  assert expected in last, last
  assert not (tmp_path / 'work').exists()


def test_every_rate_field_is_named():
  config = load_config('synthetic')
  config.optim.update(decay_rate=float('inf'), pretrained_lr_multiplier=-1.0, decay_steps=0)
  with pytest.raises(ValueError) as raised:
    train.config_lib.validate(config)
  for expected in ('config.optim.decay_rate=inf: expected a finite number >= 0',
                   'config.optim.pretrained_lr_multiplier=-1.0: expected a finite number >= 0',
                   'config.optim.decay_steps=0: expected an integer >= 1'):
    assert expected in str(raised.value)


@contextlib.contextmanager
def _tmpfs(path, size):
  """A tmpfs of ``size`` mounted at ``path`` (root only: skips elsewhere)."""
  path.mkdir()
  if os.geteuid() != 0 or subprocess.run(
      ['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)],
      capture_output=True).returncode:
    pytest.skip('mounting a small file system (a full or read-only disk) needs root')
  try:
    yield path
  finally:
    subprocess.run(['umount', '-l', str(path)], check=False)


def test_a_full_disk_names_the_step_and_the_next_run_cleans_up(tmp_path):
  """A disk with room for half a checkpoint more than step 3's: step 6's save fails."""
  with _tmpfs(tmp_path / 'disk', '64m') as disk:
    workdir = disk / 'work'
    args = [*SMOKE, '--config.eval_every_steps=100', f'--workdir={workdir}']
    assert _run('train', *args, '--config.total_steps=3').returncode == 0
    checkpoint_bytes = sum(p.stat().st_size for p in (workdir / 'checkpoints' / '3').rglob('*'))
    room = shutil.disk_usage(disk).used + checkpoint_bytes // 2
    subprocess.run(['mount', '-o', f'remount,size={room // 1024}k', str(disk)], check=True)
    # Orbax's asyncio tasks log their failures with tracebacks; the program ends in one line.
    last = _one_line(_run('train', *args, '--config.total_steps=6'), 'train',
                     logged_tracebacks=True)
    assert last.startswith(f'train.py: error: saving the checkpoint of step 6 in '
                           f'{workdir}/checkpoints failed ('), last
    assert 'MiB free there): ' in last and 'No space left on device' in last, last
    assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == [
        '3', '6.orbax-checkpoint-tmp']
    # Room again (as after clearing space): the run resumes from step 3 and step 6's
    # unfinished save is gone once step 6 is saved.
    subprocess.run(['mount', '-o', 'remount,size=64m', str(disk)], check=True)
    again = _run('train', *args, '--config.total_steps=6')
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'Resumed from step 3 of' in again.stderr
    assert sorted(p.name for p in (workdir / 'checkpoints').iterdir()) == ['3', '6']


def test_evaluation_of_a_read_only_workdir_fails_before_evaluating_or_writes_elsewhere(
    tmp_path):
  workdir = tmp_path / 'trained'
  trained = _run('train', *SMOKE, '--config.total_steps=2', '--config.eval_every_steps=100',
                 f'--workdir={workdir}')
  assert trained.returncode == 0, trained.stderr[-3000:]
  with _tmpfs(tmp_path / 'disk', '16m') as disk:
    shutil.copytree(workdir, disk / 'work')
    subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
    failed = _run('evaluate', *SMOKE, f'--workdir={disk / "work"}')
    last = _one_line(failed, 'evaluate')
    assert last.startswith(f'evaluate.py: error: cannot write the reports to '
                           f'{disk}/work/eval/2 (--workdir): '), last
    assert last.endswith('; give another folder with --out'), last
    assert 'Evaluation ' not in failed.stderr  # nothing computed first
    out = tmp_path / 'reports'
    done = _run('evaluate', *SMOKE, f'--workdir={disk / "work"}', f'--out={out}')
    assert done.returncode == 0, done.stderr[-3000:]
    assert (out / '2' / 'synthetic_humans_wild_val.json').exists()

