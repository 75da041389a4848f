"""Trains on a SLURM GPU cluster: one process per GPU, on as many nodes as asked.

    python launch/slurm.py --nodes=2 --gpus_per_node=8 --config=configs/x.py \
        --workdir=/shared/run [--partition=P] [--time=24:00:00] [--grace_s=120]
        [--config.x=y ...] [--dry-run]

Submits a batch job whose ``srun`` starts ``python -m jaxpose.train --distributed ...`` in
every task, in the current directory; jax.distributed reads the coordinator, the process
count and each process's id and GPU from SLURM's environment. ``--workdir`` must be on a
file system all nodes share. SLURM signals the tasks ``--grace_s`` seconds before the time
limit, and the run saves the step it reached (launch/README.md, "Preemption").
"""

import shlex
import sys

import common


def main(argv=None) -> int:
  p = common.parser(__doc__.splitlines()[0])
  p.add_argument('--nodes', type=common.positive_int, default=1)
  p.add_argument('--gpus_per_node', type=common.positive_int, default=8)
  p.add_argument('--partition')
  p.add_argument('--time', help='time limit, e.g. 24:00:00')
  p.add_argument('--job_name', default='jaxpose')
  p.add_argument('--grace_s', type=common.positive_int, default=120,
                 help='SLURM sends SIGTERM this many seconds before the time limit: the run '
                      'saves the step it reached and exits with status 75')
  p.add_argument('--python', default=sys.executable, help='Python on the nodes')
  args, extra = common.parse(p, argv)
  train = common.train_command(args.python, args, extra, '--distributed')
  command = ['sbatch', f'--job-name={args.job_name}', f'--nodes={args.nodes}',
             f'--ntasks-per-node={args.gpus_per_node}', f'--gpus-per-node={args.gpus_per_node}',
             *([f'--partition={args.partition}'] if args.partition else []),
             *([f'--time={args.time}'] if args.time else []),
             f'--signal=TERM@{args.grace_s}',
             f'--wrap={shlex.join(["srun", *train])}']
  return common.run(command, args.dry_run)


if __name__ == '__main__':
  sys.exit(main())
