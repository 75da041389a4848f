"""Trains on this machine: one process, or several joined over 127.0.0.1.

    python launch/local.py --config=configs/x.py --workdir=workdirs/x [--num_processes=N]
        [--config.x=y ...] [--dry-run]

One process uses every local device. Several processes rehearse a multi-host run on a CPU
machine (each sees every local device, so do not use them on GPUs); give each process
several CPU devices with XLA_FLAGS=--xla_force_host_platform_device_count=K.
"""

import shlex
import socket
import subprocess
import sys
import time

import common


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def main(argv=None) -> int:
  p = common.parser(__doc__.splitlines()[0])
  p.add_argument('--num_processes', type=common.positive_int, default=1)
  p.add_argument('--python', default=sys.executable)
  args, extra = common.parse(p, argv)
  if args.num_processes == 1:
    return common.run(common.train_command(args.python, args, extra), args.dry_run)
  address = f'127.0.0.1:{_free_port()}'
  commands = [common.train_command(args.python, args, extra, f'--coordinator_address={address}',
                                   f'--num_processes={args.num_processes}', f'--process_id={i}')
              for i in range(args.num_processes)]
  for command in commands:
    print(shlex.join(command), flush=True)
  if args.dry_run:
    return 0
  processes = [subprocess.Popen(command) for command in commands]
  failed = None  # the first process to fail on its own, whose status this run returns
  with common.forwarding_signals(processes):
    while any(process.poll() is None for process in processes):
      failed = failed or next((p for p in processes if p.poll()), None)
      if failed:
        # The others would wait for it until jax.distributed's timeout.
        for process in processes:
          if process.poll() is None:
            process.terminate()
      time.sleep(1)
  failed = failed or next((p for p in processes if p.returncode), None)
  return failed.returncode if failed else 0


if __name__ == '__main__':
  sys.exit(main())
