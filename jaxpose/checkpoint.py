"""Orbax checkpoints of the train state, with the config and the input position beside it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxpose import fileio
from jaxpose import parallel


class Checkpointer:
  """``workdir/checkpoints/<step>/{state, meta}``; ``meta`` is JSON: the config and the
  input stream's position."""

  def __init__(self, workdir: str, keep: int = 3):
    fileio.check_checkpoint_directory(workdir)
    self.directory = os.path.join(fileio.absolute(workdir), 'checkpoints')
    # The train loop decides when to save (after the step's loss is known to be finite).
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                             enable_async_checkpointing=True),
        item_names=('state', 'meta'))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    """Starts saving in the background (``wait`` blocks until it is on disk)."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def resolve_step(self, step: int | None = None) -> int:
    """``step``, or the latest one; raises if there is no such checkpoint."""
    if step is None:
      step = self.latest_step()
      if step is None:
        raise FileNotFoundError(f'no checkpoint in {self.directory}')
    if step not in self.manager.all_steps():
      raise FileNotFoundError(f'no checkpoint for step {step} in {self.directory}; '
                              f'steps there: {sorted(self.manager.all_steps())}')
    return step

  def restore(self, abstract_state, step: int | None = None):
    """Restores into ``abstract_state`` (arrays or ShapeDtypeStructs carrying the target
    shardings, so a checkpoint restores into any mesh). Returns (state, meta)."""
    step = self.resolve_step(step)
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def restore_variables(self, abstract_variables: dict, step: int | None = None) -> dict:
    """Restores only the model variables of the saved train state: the ``params`` and
    ``batch_stats`` subtrees that ``abstract_variables`` names (ShapeDtypeStructs carrying
    the target shardings; any subset of the top-level modules). The optimiser state is not
    read, so a checkpoint restores whatever the optimiser settings are now.

    Raises:
      ValueError: naming every leaf that the checkpoint lacks or holds in another shape,
        with both shapes; or if it holds non-finite values.
    """
    step = self.resolve_step(step)
    saved = self.saved_shapes(step)
    problems = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(abstract_variables)[0]:
      name = '/'.join(str(getattr(k, 'key', k)) for k in path)
      node = saved
      for k in path:
        node = node.get(getattr(k, 'key', k)) if isinstance(node, dict) else None
      if node is None or isinstance(node, dict):
        problems.append(f'{name}: not in the checkpoint (model {tuple(leaf.shape)})')
      elif tuple(node) != tuple(leaf.shape):
        problems.append(f'{name}: checkpoint {tuple(node)} vs model {tuple(leaf.shape)}')
    if problems:
      shown = '; '.join(problems[:8]) + (f'; … {len(problems) - 8} more'
                                         if len(problems) > 8 else '')
      raise ValueError(f'the checkpoint of step {step} in {self.directory} does not fit the '
                       f'model: {shown}')
    item = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        abstract_variables)
    variables = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.PyTreeRestore(
            item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
            partial_restore=True))).state
    # Training saves no non-finite state, but older or foreign checkpoints may hold one;
    # named here, it would otherwise surface as NaN predictions far from its cause.
    if not parallel.all_finite(variables):
      raise ValueError(f'the checkpoint of step {step} in {self.directory} holds non-finite '
                       f'parameters (the run diverged); choose an earlier step with --step '
                       f'(steps there: {sorted(self.manager.all_steps())})')
    return variables

  def saved_shapes(self, step: int) -> dict:
    """The saved train state's tree with each leaf's shape, read from its metadata."""
    metadata = ocp.PyTreeCheckpointer().metadata(
        os.path.join(self.directory, str(step), 'state')).item_metadata
    return jax.tree.map(lambda leaf: tuple(leaf.shape), dict(metadata.tree))

  def read_meta(self, step: int | None = None) -> dict:
    step = self.resolve_step(step)
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def restore_variables(workdir: str, abstract_variables: dict,
                      step: int | None = None) -> tuple[dict, dict, int]:
  """The model variables of ``workdir``'s checkpoint (the latest, or ``step``), restored into
  ``abstract_variables`` (see ``Checkpointer.restore_variables``): evaluation, prediction
  and warm starts read checkpoints through this. Returns (variables, meta, step)."""
  require_checkpoints(workdir)
  ckpt = Checkpointer(workdir)
  try:
    step = ckpt.resolve_step(step)
    return ckpt.restore_variables(abstract_variables, step), ckpt.read_meta(step), step
  finally:
    ckpt.close()


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def check_model_config(saved: dict, config: ml_collections.ConfigDict, where: str) -> None:
  """Raises if the checkpoint's model config differs from ``config.model``, naming keys.

  A key the checkpoint predates counts as its default (configs gain keys over time).
  """
  from jaxpose import config as base  # pylint: disable=g-import-not-at-top
  current = config_to_json(config)
  defaults = config_to_json(base.base_config())['model']
  saved_model = {**defaults, **saved['model']}
  differing = {
      f'model.{k}': (saved_model.get(k), current['model'].get(k))
      for k in sorted(set(saved_model) | set(current['model']))
      if saved_model.get(k) != current['model'].get(k)
  }
  if saved['data']['input_size'] != current['data']['input_size']:
    differing['data.input_size'] = (saved['data']['input_size'], current['data']['input_size'])
  if differing:
    lines = ', '.join(f'{k}: checkpoint {a!r} vs config {b!r}' for k, (a, b) in differing.items())
    raise ValueError(f'the checkpoint in {where} was trained with a different model: {lines}')


def require_checkpoints(workdir: str) -> str:
  """The checkpoint folder of ``workdir``; raises (creating nothing) if there is none."""
  fileio.check_checkpoint_directory(workdir)
  directory = os.path.join(fileio.absolute(workdir), 'checkpoints')
  if not fileio.gfile.isdir(directory) or not fileio.gfile.listdir(directory):
    raise FileNotFoundError(f'no checkpoint in {directory}: train first with '
                            f'`python -m jaxpose.train --config=... --workdir={workdir}`')
  return directory


class WorkdirLockedError(OSError):
  """Another training run holds the workdir."""


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds ``workdir/train.lock`` while the body runs, so that a second training run on
  the same workdir stops at once instead of racing the first one's checkpoints.

  The lock is the OS's (``flock``), taken by process 0 for the whole run: the OS drops it
  when that process ends, however it ends, so a crashed run leaves nothing stuck. The file
  names the holder's host and pid for the message the other run gets.

  An object store (gs://) has no lock that the OS drops when its holder dies, so there the
  run goes unlocked, with a warning: keeping two runs off one gs:// workdir is the user's.

  Raises:
    WorkdirLockedError: on every process, if another run holds the lock.
  """
  if not fileio.is_local(workdir):
    logging.warning('%s is not on a local file system: no lock keeps a second training run '
                    'out of it (an OS file lock needs one); start one run per workdir',
                    workdir)
    yield
    return
  path = os.path.join(workdir, 'train.lock')
  error = None
  with contextlib.ExitStack() as stack:
    if jax.process_index() == 0:
      f = stack.enter_context(open(path, 'a+'))
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        f.seek(0)
        f.truncate()
        f.write(f'host {socket.gethostname()}, pid {os.getpid()}\n')
        f.flush()
      except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or 'holder unknown'
        error = WorkdirLockedError(f'{workdir} is in use by another training run ({holder}, '
                                   f'holding {path}); wait for it to end or train in another '
                                   '--workdir')
    if jax.process_count() > 1:
      locked = multihost_utils.broadcast_one_to_all(np.int32(error is None))
      if not locked and error is None:
        error = WorkdirLockedError(f'{workdir} is in use by another training run (process 0 '
                                   f'could not lock {path}; its log names the holder)')
    if error is not None:
      raise error
    yield
