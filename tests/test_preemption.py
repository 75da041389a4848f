"""SIGTERM (a preemption notice) and SIGINT between checkpoints: the run saves the step it
reached, exits with preemption.EXIT_CODE and one line, and resumes to the state of a run
never interrupted; in one process and in two."""

import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np

from jaxpose import checkpoint
from jaxpose import parallel
from jaxpose import preemption
from jaxpose import train
from jaxpose.data import tfds_io
from conftest import DATA_DIR, REPO, load_config, multiprocess_env

# Checkpoints at 40 and 80 only; the signal goes at the log of step 50, between them.
RUN = dict(total_steps=80, checkpoint_every_steps=40, eval_every_steps=80,
           image_every_steps=0, log_every_steps=10)
SIGNAL_AT = 50
GRACE_S = 60


def _command(workdir, *extra):
  return [sys.executable, '-m', 'jaxpose.train', '--config=configs/synthetic.py:smoke',
          f'--config.data.data_dir={DATA_DIR}', *(f'--config.{k}={v}' for k, v in RUN.items()),
          f'--workdir={workdir}', *extra]


def _start(command, log, env=None):
  return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL,
                          stderr=open(log, 'w'), env=env or dict(os.environ,
                                                                 JAX_PLATFORMS='cpu'))


def _wait_for(condition, processes, timeout_s=600):
  deadline = time.monotonic() + timeout_s
  while not condition():
    assert all(p.poll() is None for p in processes), 'the run ended before the moment'
    assert time.monotonic() < deadline, f'not reached in {timeout_s} s'
    time.sleep(0.01)


def _writing(workdir) -> bool:
  return any((workdir / 'checkpoints').glob(f'*{checkpoint.TMP_SUFFIX}*'))


def _preempt(processes, logs, workdir, targets):
  """Sends SIGTERM to ``targets`` once process 0 logged step ``SIGNAL_AT``, SIGTERM and
  SIGINT again while the preemption checkpoint is written; returns the step each process
  names in its one-line message."""
  _wait_for(lambda: f'] [{SIGNAL_AT}] ' in logs[0].read_text(), processes)
  sent = time.monotonic()
  for p in targets:
    p.send_signal(signal.SIGTERM)
  # A second notice (and a Ctrl-C) while the checkpoint is written must not disturb it.
  deadline = time.monotonic() + GRACE_S
  while not _writing(workdir) and all(p.poll() is None for p in processes):
    assert time.monotonic() < deadline
    time.sleep(0.002)
  for p in processes:
    if p.poll() is None:
      p.send_signal(signal.SIGTERM)
      p.send_signal(signal.SIGINT)
  steps = []
  for p, log in zip(processes, logs):
    p.wait(timeout=max(1.0, sent + GRACE_S - time.monotonic()))
    text = log.read_text()
    assert p.returncode == preemption.EXIT_CODE, text[-3000:]
    last = text.strip().splitlines()[-1]
    found = re.fullmatch(r'train\.py: stopped at step (\d+) by SIGTERM or SIGINT, the '
                         rf'checkpoint of step \1 saved in {re.escape(str(workdir))}/'
                         'checkpoints: run the same command again to resume from it', last)
    assert found, last
    steps.append(int(found.group(1)))
  assert time.monotonic() - sent < GRACE_S
  return steps


def _final_state(config, workdir):
  ckpt = checkpoint.Checkpointer(str(workdir))
  try:
    state, meta = ckpt.restore(train.setup(config, parallel.make_mesh()).state)
    return jax.device_get(state), meta
  finally:
    ckpt.close()


def _assert_same(a, b):
  for part in ('params', 'batch_stats'):
    diff = jax.tree.map(lambda x, y: float(np.abs(np.asarray(x) - np.asarray(y)).max()),
                        getattr(a, part), getattr(b, part))
    assert max(jax.tree.leaves(diff)) <= 1e-6, part
  assert int(a.step) == int(b.step)


def test_sigterm_saves_the_step_reached_and_resumes_to_the_uninterrupted_state(tmp_path):
  config = load_config('synthetic')
  config.update(RUN)
  tfds_io.ensure_built(tfds_io.get_builder('synthetic_humans', DATA_DIR, 'smoke'))
  workdir = tmp_path / 'preempted'
  process = _start(_command(workdir), tmp_path / 'first.log')
  try:
    step, = _preempt([process], [tmp_path / 'first.log'], workdir, [process])
  finally:
    if process.poll() is None:
      process.kill()
  assert SIGNAL_AT <= step < config.total_steps
  assert checkpoint.Checkpointer(str(workdir)).latest_step() == step

  again = _start(_command(workdir), tmp_path / 'again.log')
  assert again.wait(timeout=600) == 0, (tmp_path / 'again.log').read_text()[-3000:]
  assert f'Resumed from step {step} of' in (tmp_path / 'again.log').read_text()
  resumed, meta = _final_state(config, workdir)
  full = jax.device_get(train.train_and_evaluate(config, str(tmp_path / 'full')))
  _, full_meta = _final_state(config, tmp_path / 'full')
  _assert_same(resumed, full)
  assert meta['data_position'] == full_meta['data_position']


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _two_processes(workdir, log_stem, *extra):
  env = multiprocess_env(2)
  command = _command(workdir, f'--coordinator_address=127.0.0.1:{_free_port()}',
                     '--num_processes=2', *extra)
  logs = [workdir.parent / f'{log_stem}_{i}.log' for i in range(2)]
  return [_start(command + [f'--process_id={i}'], log, env)
          for i, log in enumerate(logs)], logs


def _finish(processes, logs):
  try:
    for p in processes:
      p.wait(timeout=600)
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  for p, log in zip(processes, logs):
    assert p.returncode == 0, log.read_text()[-3000:]


def test_two_processes_agree_on_the_step_when_one_is_preempted(tmp_path):
  """SIGTERM to process 1 only (one host's maintenance event): both stop at the same step
  through JAX's preemption sync point, save it and resume to the state of two processes
  never interrupted."""
  config = load_config('synthetic')
  config.update(RUN)
  tfds_io.ensure_built(tfds_io.get_builder('synthetic_humans', DATA_DIR, 'smoke'))
  workdir, full = tmp_path / 'preempted', tmp_path / 'full'
  processes, logs = _two_processes(workdir, 'first')
  try:
    steps = _preempt(processes, logs, workdir, processes[1:])
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert steps[0] == steps[1] and SIGNAL_AT <= steps[0] < config.total_steps, steps
  _finish(*_two_processes(workdir, 'again'))
  _finish(*_two_processes(full, 'full'))
  _assert_same(_final_state(config, workdir)[0], _final_state(config, full)[0])


def test_a_process_that_loses_the_other_ends_with_a_line_naming_why(tmp_path):
  """kill -9 of process 1 (a crash, a lost host): process 0 ends within the grace period in
  one of the two ways launch/README.md documents. Its next collective fails: status 1 and
  jaxpose's one line, at once (as with jaxlib 0.10.2 here). Or nothing it waits for fails
  (seen with jaxlib 0.12.1): JAX's coordination service ends it after --heartbeat_timeout_s,
  status 134 with JAX's line naming the dead task."""
  tfds_io.ensure_built(tfds_io.get_builder('synthetic_humans', DATA_DIR, 'smoke'))
  workdir = tmp_path / 'lost'
  processes, logs = _two_processes(workdir, 'lost', '--config.total_steps=100000',
                                   '--heartbeat_timeout_s=10')
  try:
    # Mid-run, past the first checkpoint.
    _wait_for(lambda: f'] [{SIGNAL_AT}] ' in logs[0].read_text(), processes)
    processes[1].kill()
    killed = time.monotonic()
    processes[0].wait(timeout=GRACE_S)
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
  assert time.monotonic() - killed < GRACE_S
  text = logs[0].read_text()
  if processes[0].returncode == -signal.SIGABRT:
    assert ('Terminating process because the JAX distributed service detected fatal errors'
            in text), text[-3000:]
    assert re.search(r'Task 1 heartbeat timeout|stopped sending heartbeats\):\s*1\b',
                     text), text[-3000:]
    return
  assert processes[0].returncode == 1, text[-3000:]
  last = text.strip().splitlines()[-1]
  assert re.fullmatch(r'train\.py: error: process 0 of 2 lost another process in a collective '
                      r'\(.*(closed|reset) by peer.*\); its log says why it stopped: start all '
                      r'processes again to resume from the last checkpoint', last), last
