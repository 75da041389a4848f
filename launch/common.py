"""What the launch scripts share: their arguments and the jaxpose.train command line."""

from __future__ import annotations

import argparse
import shlex
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
  return 0 if dry_run else subprocess.run(command, check=False).returncode
