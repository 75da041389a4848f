"""One of the processes that tests/test_multiprocess.py starts (not a test itself).

Takes the shared flags (``--config``, ``--workdir`` and the process flags), trains
``STEPS`` steps on its share of the fixed batches in ``WORKDIR/batches.npz``, saves an Orbax
checkpoint from every process, evaluates the ``studio_val`` split and (process 0) writes
the report to ``WORKDIR/eval.json``.
"""

import json
import os

import jax
import numpy as np

from jaxpose import checkpoint
from jaxpose import cli
from jaxpose import evaluate
from jaxpose import parallel
from jaxpose import train

STEPS = 10
EVAL_SOURCE = 'studio_val'


def main(argv):
  del argv
  config, workdir = cli.FLAGS.config, cli.FLAGS.workdir
  mesh = parallel.make_mesh()
  model, state, shardings, step = train.setup(config, mesh)
  # This process's devices hold consecutive rows of the global batch, in process order.
  local = config.batch_size // jax.process_count()
  rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
  with np.load(os.path.join(workdir, 'batches.npz')) as batches:
    for i in range(STEPS):
      state, _ = step(state, parallel.to_global({k: v[i, rows] for k, v in batches.items()},
                                                mesh))
  ckpt = checkpoint.Checkpointer(workdir)
  ckpt.save(STEPS, state, {'config': checkpoint.config_to_json(config)})
  ckpt.wait()
  ckpt.close()

  predict_fn = evaluate.make_predict_fn(config, model, mesh, shardings.variables())
  report, _ = evaluate.evaluate_split(EVAL_SOURCE, config.data.eval[EVAL_SOURCE], config,
                                      predict_fn, state.variables(), mesh)
  if jax.process_index() == 0:
    with open(os.path.join(workdir, 'eval.json'), 'w') as f:
      json.dump(report, f)


if __name__ == '__main__':
  cli.run(main)
