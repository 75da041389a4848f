"""The launch scripts: the commands they print with --dry-run, parsed by jaxpose.train's
own flags against the real config; what they do with the processes they start."""

import pathlib
import shlex
import signal
import subprocess
import sys
import time
import types

import pytest

from conftest import REPO
from conftest import run_main
from jaxpose import cli
from jaxpose import config as config_lib

COMMON = ['--config=configs/synthetic.py:smoke', '--workdir=/shared/run 1', '--dry-run']
EXTRA = ['--config.batch_size=64', '--config.optim.learning_rate=0.5']


def _dry_run(script, *args):
  """The printed commands, each split into its arguments."""
  out = subprocess.run([sys.executable, str(REPO / 'launch' / script), *args],
                       capture_output=True, text=True, check=True).stdout
  return [shlex.split(line) for line in out.splitlines()]


def _train_flags(command: list[str], monkeypatch) -> dict:
  """What ``python -m jaxpose.train`` makes of ``command``: its flags parsed by jaxpose's
  command line (cli's validators included), the config file loaded with the overrides and
  validated for training on this process's devices."""
  python, dash_m, module, *argv = command
  assert (dash_m, module) == ('-m', 'jaxpose.train'), command
  seen = {}

  def main(_):
    config_lib.validate(cli.FLAGS.config)
    seen.update({name: cli.FLAGS[name].value for name in (
        'config', 'workdir', 'distributed', 'coordinator_address', 'num_processes',
        'process_id')}, python=python)

  before = set(cli.FLAGS)
  # ml_collections reads the config's overrides from sys.argv, and defines a flag for each.
  try:
    with monkeypatch.context() as patch:
      patch.setattr(sys, 'argv', [module, *argv])
      run_main(types.SimpleNamespace(__name__=module, define_flags=lambda: None, main=main),
               argv)
  finally:
    for name in set(cli.FLAGS) - before:
      delattr(cli.FLAGS, name)
  return seen


def _assert_extra_applied(flags: dict) -> None:
  assert flags['workdir'] == '/shared/run 1'
  assert flags['config'].batch_size == 64 and flags['config'].optim.learning_rate == 0.5
  assert flags['config'].total_steps < 100  # the smoke variant


def test_tpu_pod_runs_the_trainer_on_every_worker(monkeypatch):
  monkeypatch.chdir(REPO)
  [command] = _dry_run('tpu_pod.py', '--tpu=pod-v4-32', '--zone=us-central2-b', *COMMON,
                       *EXTRA)
  remote = command.pop()
  assert command == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', 'pod-v4-32',
                     '--zone=us-central2-b', '--worker=all']
  assert remote.startswith('--command=cd jaxpose && ')
  flags = _train_flags(shlex.split(remote.split(' && ', 1)[1]), monkeypatch)
  assert flags['python'] == 'python3' and flags['distributed']
  _assert_extra_applied(flags)


def test_slurm_starts_one_process_per_gpu_with_srun(monkeypatch):
  monkeypatch.chdir(REPO)
  [command] = _dry_run('slurm.py', '--nodes=2', '--gpus_per_node=4', '--partition=gpu',
                       '--time=1:00:00', '--python=/opt/venv/bin/python', *COMMON, *EXTRA)
  wrapped = command.pop()
  assert command == ['sbatch', '--job-name=jaxpose', '--nodes=2', '--ntasks-per-node=4',
                     '--gpus-per-node=4', '--partition=gpu', '--time=1:00:00',
                     '--signal=TERM@120']
  assert wrapped.startswith('--wrap=srun ')
  flags = _train_flags(shlex.split(wrapped[len('--wrap=srun '):]), monkeypatch)
  assert flags['python'] == '/opt/venv/bin/python' and flags['distributed']
  _assert_extra_applied(flags)


def test_local_runs_one_process(monkeypatch):
  monkeypatch.chdir(REPO)
  [command] = _dry_run('local.py', *COMMON, *EXTRA)
  flags = _train_flags(command, monkeypatch)
  assert flags['python'] == sys.executable
  assert not flags['distributed'] and flags['coordinator_address'] is None
  _assert_extra_applied(flags)


def test_local_joins_several_processes_over_loopback(monkeypatch):
  monkeypatch.chdir(REPO)
  commands = _dry_run('local.py', '--num_processes=3', *COMMON, *EXTRA)
  assert len(commands) == 3
  processes = [_train_flags(command, monkeypatch) for command in commands]
  address = processes[0]['coordinator_address']
  assert address.startswith('127.0.0.1:')
  for i, flags in enumerate(processes):
    assert (flags['coordinator_address'], flags['num_processes'], flags['process_id']) == (
        address, 3, i)
    _assert_extra_applied(flags)


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


def test_local_stops_the_others_when_one_training_process_fails(tmp_path):
  """Process 1 fails at once: the launcher ends the others, which would wait for it until
  jax.distributed's timeout, and fails with process 1's status (not that of one it ended)."""
  fake = tmp_path / 'python'
  fake.write_text('#!/bin/sh\ncase "$*" in *--process_id=1*) exit 3;; esac\n'
                  'echo $$ >> "$0.pids"\nwhile :; do sleep 0.05; done\n')
  fake.chmod(0o755)
  launcher = subprocess.run([sys.executable, str(REPO / 'launch' / 'local.py'),
                             f'--python={fake}', '--num_processes=3', '--config=c.py',
                             '--workdir=w'], stdout=subprocess.DEVNULL, timeout=60)
  # It returned (the others never stop by themselves), failing, with none of them left.
  assert launcher.returncode == 3
  pids = tmp_path / 'python.pids'
  started = pids.read_text().split() if pids.exists() else []
  assert not any(pathlib.Path(f'/proc/{pid}').exists() for pid in started)
