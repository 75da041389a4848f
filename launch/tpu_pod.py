"""Trains on every host of a Cloud TPU pod slice at once.

    python launch/tpu_pod.py --tpu=NAME --zone=ZONE --config=configs/x.py \
        --workdir=/mnt/shared/run [--config.x=y ...] [--dry-run]

Runs ``python -m jaxpose.train --distributed ...`` in ``--remote_dir`` on every worker over
``gcloud compute tpus tpu-vm ssh --worker=all``; jax.distributed finds the other hosts
itself. Every worker needs the repository and its environment there already, and
``--workdir`` must be a directory all workers share (Orbax checkpoints are written by all).
"""

import shlex
import sys

import common


def main(argv=None) -> int:
  p = common.parser(__doc__.splitlines()[0])
  p.add_argument('--tpu', required=True, help='TPU VM (pod slice) name')
  p.add_argument('--zone', required=True)
  p.add_argument('--project', help='GCP project (default: gcloud\'s)')
  p.add_argument('--remote_dir', default='jaxpose',
                 help='the repository on every worker, relative to the home directory')
  p.add_argument('--python', default='python3', help='Python on the workers')
  args, extra = common.parse(p, argv)
  train = common.train_command(args.python, args, extra, '--distributed')
  remote = f'cd {shlex.quote(args.remote_dir)} && {shlex.join(train)}'
  command = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', args.tpu, f'--zone={args.zone}',
             *([f'--project={args.project}'] if args.project else []), '--worker=all',
             f'--command={remote}']
  return common.run(command, args.dry_run)


if __name__ == '__main__':
  sys.exit(main())
