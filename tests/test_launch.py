"""The launch scripts, through --dry-run: the exact commands they would run."""

import shlex
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO

COMMON = ['--config=configs/synthetic.py:smoke', '--workdir=/shared/run 1', '--dry-run']
EXTRA = ['--config.batch_size=64', '--config.optim.learning_rate=0.5']
TRAIN = ['-m', 'jaxpose.train', '--config=configs/synthetic.py:smoke',
         '--workdir=/shared/run 1']


def _dry_run(script, *args):
  """The printed commands, each split into its arguments."""
  out = subprocess.run([sys.executable, str(REPO / 'launch' / script), *args],
                       capture_output=True, text=True, check=True).stdout
  return [shlex.split(line) for line in out.splitlines()]


def test_tpu_pod_runs_the_trainer_on_every_worker():
  [command] = _dry_run('tpu_pod.py', '--tpu=pod-v4-32', '--zone=us-central2-b', *COMMON,
                       *EXTRA)
  remote = command.pop()
  assert command == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'pod-v4-32',
                     '--zone=us-central2-b', '--worker=all']
  assert remote.startswith('--command=cd jaxpose && ')
  assert shlex.split(remote.split(' && ', 1)[1]) == ['python3', *TRAIN, '--distributed', *EXTRA]


def test_slurm_starts_one_process_per_gpu_with_srun():
  [command] = _dry_run('slurm.py', '--nodes=2', '--gpus_per_node=4', '--partition=gpu',
                       '--time=1:00:00', '--python=/opt/venv/bin/python', *COMMON, *EXTRA)
  wrapped = command.pop()
  assert command == ['sbatch', '--job-name=jaxpose', '--nodes=2', '--ntasks-per-node=4',
                     '--gpus-per-node=4', '--partition=gpu', '--time=1:00:00',
                     '--signal=TERM@120']
  assert wrapped.startswith('--wrap=')
  assert shlex.split(wrapped[len('--wrap='):]) == [
      'srun', '/opt/venv/bin/python', *TRAIN, '--distributed', *EXTRA]


def test_local_runs_one_process():
  assert _dry_run('local.py', *COMMON, *EXTRA) == [[sys.executable, *TRAIN, *EXTRA]]


def test_local_joins_several_processes_over_loopback():
  commands = _dry_run('local.py', '--num_processes=3', *COMMON, *EXTRA)
  assert len(commands) == 3
  address = commands[0][len(TRAIN) + 1]
  assert address.startswith('--coordinator_address=127.0.0.1:')
  for i, command in enumerate(commands):
    assert command == [sys.executable, *TRAIN, address, '--num_processes=3',
                       f'--process_id={i}', *EXTRA]


@pytest.mark.parametrize('args, message', [
    (['--config=c.py', '--workdir=w', 'stray'], 'unexpected stray'),
    (['--workdir=w'], 'the following arguments are required: --config'),
    (['--config=c.py', '--workdir=w', '--num_processes=0'], '--num_processes: 0 is not'),
])
def test_bad_arguments_are_named(args, message):
  result = subprocess.run([sys.executable, str(REPO / 'launch' / 'local.py'), *args],
                          capture_output=True, text=True)
  assert result.returncode == 2
  assert message in result.stderr


@pytest.mark.parametrize('processes', [1, 2])
def test_local_passes_sigterm_on_to_the_training_processes(tmp_path, processes):
  """A scheduler signals the launcher: each training process must get the notice (here a
  stand-in for python that exits as jaxpose.train does after saving)."""
  fake = tmp_path / 'python'
  fake.write_text('#!/bin/sh\necho started >> "$0.log"\ntrap "exit 75" TERM\n'
                  'while :; do sleep 0.05; done\n')
  fake.chmod(0o755)
  launcher = subprocess.Popen([sys.executable, str(REPO / 'launch' / 'local.py'),
                               f'--python={fake}', f'--num_processes={processes}',
                               '--config=c.py', '--workdir=w'], stdout=subprocess.DEVNULL)
  deadline = time.monotonic() + 60
  log = tmp_path / 'python.log'
  while not log.exists() or log.read_text().count('started') < processes:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  launcher.send_signal(signal.SIGTERM)
  assert launcher.wait(timeout=30) == 75
