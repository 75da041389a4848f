"""What the launch scripts share: their arguments and the jaxpose.train command line."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import subprocess


def parser(description: str) -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      description=description, allow_abbrev=False,
      epilog='Other arguments (e.g. --config.batch_size=64) go to jaxpose.train unchanged.')
  p.add_argument('--config', required=True, help='e.g. configs/synthetic.py[:variant]')
  p.add_argument('--workdir', required=True, help="jaxpose.train's --workdir")
  p.add_argument('--dry-run', action='store_true', help='Print the commands; run nothing.')
  return p


def parse(p: argparse.ArgumentParser, argv=None):
  """(arguments, the extra flags for jaxpose.train)."""
  args, extra = p.parse_known_args(argv)
  stray = [a for a in extra if not a.startswith('--')]
  if stray:
    p.error(f'unexpected {" ".join(stray)}: flags for jaxpose.train look like --config.x=y')
  return args, extra


def positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f'{value} is not a positive integer')
  return value


def train_command(python: str, args, extra, *process_flags: str) -> list[str]:
  return [python, '-m', 'jaxpose.train', f'--config={args.config}',
          f'--workdir={args.workdir}', *process_flags, *extra]


def run(command: list[str], dry_run: bool) -> int:
  """Runs ``command`` (or prints it, with ``dry_run``); returns its exit status."""
  print(shlex.join(command), flush=True)
  if dry_run:
    return 0
  process = subprocess.Popen(command)
  with forwarding_signals([process]):
    return process.wait()


@contextlib.contextmanager
def forwarding_signals(processes: list):
  """Passes SIGTERM and SIGINT on to ``processes`` while the body runs (a scheduler
  signals this launcher, not its children): jaxpose.train then saves the step it reached
  and exits with status 75 (jaxpose/preemption.py)."""
  def forward(signum, frame):
    del frame
    for process in processes:
      if process.poll() is None:
        process.send_signal(signum)
  previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
