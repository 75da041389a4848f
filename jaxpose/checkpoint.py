"""Orbax checkpoints of the train state, with the config and the input position beside it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import socket
import time

import jax
from etils import epath
from flax import traverse_util
from jax.experimental import multihost_utils
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from jaxpose import fileio
from jaxpose import parallel


# Files every complete checkpoint of a step holds (Orbax's layout; the array data under
# ``state/`` is named by hashes): checked before a checkpoint is read, so that a damaged one
# is named by the file at fault instead of by the error Orbax meets further on. (Orbax
# writes ``_CHECKPOINT_METADATA`` after the step's folder appears, and reads without it.)
REQUIRED_FILES = ('state/_METADATA', 'state/manifest.ocdbt', 'meta/metadata')
# The suffix of the folder Orbax writes a checkpoint into before renaming it to its step.
TMP_SUFFIX = '.orbax-checkpoint-tmp'
# Readers list the steps, then read one, while training may delete it (max_to_keep): a step
# gone between the two is looked up again this many times.
READ_ATTEMPTS = 5


class DamagedCheckpointError(ValueError):
  """A checkpoint that cannot be read whole: names its step and the file at fault."""


def _damaged(directory: str, step: int, path: str, problem: str) -> DamagedCheckpointError:
  return DamagedCheckpointError(f'the checkpoint of step {step} in {directory} is damaged: '
                                f'{path}: {problem}')


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """Orbax's handler of the train state, with replica-parallel saving off: that default (off
  GPU) cuts every replicated array into one slice per device, compiling a program for each
  slice shape (10 s at the first save on 8 CPU devices), for no gain at this model's size."""
  scalar = ocp.type_handlers.ScalarHandler()
  registry = ocp.type_handlers.create_type_handler_registry(
      (int, scalar), (float, scalar), (np.number, scalar),
      (np.ndarray, ocp.type_handlers.NumpyHandler()),
      (jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False)))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


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
        item_handlers={'state': _state_handler(), 'meta': ocp.JsonCheckpointHandler()})
    self._pending = None  # the step of the last save started

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: dict) -> None:
    """Starts saving in the background (``wait`` blocks until it is on disk).

    Raises:
      OSError: naming the step, the folder and its free space, if this save or the one
        before it failed (a full disk).
    """
    self.wait()
    with self._writing(step):
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeSave(state), meta=ocp.args.JsonSave(meta)), force=True)
    self._pending = step

  @contextlib.contextmanager
  def _writing(self, step: int):
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      # Orbax and TensorStore raise many types, naming neither the step nor the folder.
      free = ''
      if fileio.is_local(self.directory):
        free = f' ({shutil.disk_usage(self.directory).free / 2**20:.0f} MiB free there)'
      raise OSError(f'saving the checkpoint of step {step} in {self.directory} failed'
                    f'{free}: {" ".join(str(e).split())}') from e

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
    shardings, so a checkpoint restores into any mesh). Returns (state, meta).

    Raises:
      DamagedCheckpointError: naming the step and the file that is missing or unreadable.
      ValueError: if the saved state holds other arrays than ``abstract_state`` (other
        optimiser settings).
    """
    step = self.resolve_step(step)
    abstract = abstract_arrays(abstract_state)
    with self._reading(step, abstract):
      restored = self.manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.PyTreeRestore(
              item=abstract,
              restore_args=ocp.checkpoint_utils.construct_restore_args(abstract)),
          meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def check_complete(self, step: int) -> None:
    """Raises ``DamagedCheckpointError`` naming the first of ``REQUIRED_FILES`` that the
    checkpoint of ``step`` lacks."""
    for name in REQUIRED_FILES:
      path = epath.Path(self.directory) / str(step) / name
      if not path.exists():
        raise _damaged(self.directory, step, str(path), 'missing')

  @contextlib.contextmanager
  def _reading(self, step: int, abstract=None):
    """Turns whatever reading the checkpoint of ``step`` raises into a
    ``DamagedCheckpointError`` naming the file (Orbax and TensorStore raise many types, some
    naming no file); a state that does not fit ``abstract`` is a ValueError of its own."""
    self.check_complete(step)
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      if abstract is not None:
        try:
          saved = sorted(jax.tree.leaves(self.saved_shapes(step),
                                         is_leaf=lambda x: isinstance(x, tuple)))
        except Exception:  # pylint: disable=broad-except
          saved = None  # The metadata is damaged too.
        wanted = sorted(tuple(x.shape) for x in jax.tree.leaves(abstract))
        if saved is not None and saved != wanted:
          raise ValueError(f'the train state saved at step {step} in {self.directory} holds '
                           f'other arrays ({len(saved)}) than this config\'s ({len(wanted)}): '
                           'were the optimiser settings changed? Start a fresh run from its '
                           'weights with --config.init.checkpoint') from e
      step_dir = re.escape(os.path.join(self.directory, str(step)))
      # The first error of the chain says what is wrong (TensorStore's names the array and
      # the byte range), the deepest path in the chain where.
      chain = [e]
      while (chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 10:
        chain.append(chain[-1].__cause__ or chain[-1].__context__)
      named = max(re.findall(step_dir + r'[^\s\'",:;]*', ' '.join(map(str, chain))),
                  key=len, default=os.path.join(self.directory, str(step)))
      problem = ' '.join(str(chain[-1]).split())
      raise _damaged(
          self.directory, step, named, f'{type(chain[-1]).__name__}: {problem[:300]}'
          f'{"…" if len(problem) > 300 else ""}') from e

  def resume(self, abstract_state, check_meta, step: int | None = None):
    """The train state and meta of the newest checkpoint that restores completely (or of
    ``step``), restored into ``abstract_state``; None if there is none. ``check_meta(meta)``
    raises for a checkpoint of another model (before its arrays are read).

    A damaged checkpoint is skipped with a warning and kept, renamed ``<step>.damaged``
    (beside the steps, which Orbax then no longer lists: the run saves that step again);
    with ``step`` the newer checkpoints are kept as ``<step>.superseded`` likewise. Unfinished
    saves (``*.orbax-checkpoint-tmp*``) of steps older than the one resumed are removed.

    Raises:
      DamagedCheckpointError: if ``step`` is damaged, or every checkpoint is.
      FileNotFoundError: if there is no checkpoint of ``step``.
    """
    steps = sorted(self.manager.all_steps(), reverse=True)
    if step is not None:
      if step not in steps:
        raise FileNotFoundError(f'--step={step}: no checkpoint of that step in '
                                f'{self.directory}; steps there: {sorted(steps)}')
      newer = [s for s in steps if s > step]
      if newer:
        logging.warning('Resuming from step %d as --step asks: the newer checkpoints (steps '
                        '%s) are kept as %s', step, newer,
                        self._set_aside(newer, 'superseded'))
      steps = [step]
    for candidate in steps:
      try:
        meta = self.read_meta(candidate)
        check_meta(meta)
        state, meta = self.restore(abstract_state, candidate)
      except DamagedCheckpointError as e:
        if step is not None:
          raise
        if candidate == steps[-1]:
          e.add_note('(and no older checkpoint is left to resume from)')
          raise
        kept = self._set_aside([candidate], 'damaged')
        logging.warning('%s. Skipped (kept as %s); resuming from the next older checkpoint',
                        e, kept[0])
        continue
      self._remove_unfinished(candidate)
      return state, meta
    return None

  def _set_aside(self, steps: list[int], why: str) -> list[str]:
    """Renames the checkpoints of ``steps`` to ``<step>.<why>`` (numbered if taken) so that
    Orbax no longer lists them; returns the new paths."""
    paths = []
    for s in steps:
      target = epath.Path(self.directory) / f'{s}.{why}'
      while target.exists():
        target = epath.Path(self.directory) / f'{s}.{why}-{time.time_ns()}'
      paths.append(str(target))
      if jax.process_index() == 0:
        (epath.Path(self.directory) / str(s)).rename(target)
    self._sync(f'set aside {steps}')
    return paths

  def _remove_unfinished(self, resumed: int) -> None:
    """Removes the temporary folders of saves of steps before ``resumed`` that never
    finished (a killed or full-disk run leaves them, holding space)."""
    for path in sorted(epath.Path(self.directory).glob(f'*{TMP_SUFFIX}*')):
      step = path.name.split('.', 1)[0]
      if step.isdigit() and int(step) < resumed:
        logging.info('Removing %s: an unfinished save of step %s, older than the checkpoint '
                     'of step %d resumed from', path, step, resumed)
        if jax.process_index() == 0:
          path.rmtree()
    self._sync('removed unfinished saves')

  def _sync(self, what: str) -> None:
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'jaxpose checkpoints: {what}')
    self.manager.reload()

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
    with self._reading(step):
      saved = traverse_util.flatten_dict(self.saved_shapes(step), sep='/')
    wanted = {name: tuple(leaf.shape) for name, leaf in
              traverse_util.flatten_dict(abstract_variables, sep='/').items()}
    found = {name: tuple(saved[name]) for name in wanted if name in saved}
    differences = shape_differences(wanted, found, 'checkpoint')
    if differences:
      raise ValueError(f'the checkpoint of step {step} in {self.directory} does not fit the '
                       f'model: {differences}')
    item = abstract_arrays(abstract_variables)
    with self._reading(step):
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
    path = os.path.join(self.directory, str(step), 'state')
    metadata = ocp.PyTreeCheckpointer().metadata(path).item_metadata
    if metadata is None:  # Orbax's answer when it cannot read it
      raise ValueError(f'the tree metadata in {path}/ is unreadable')
    return jax.tree.map(lambda leaf: tuple(leaf.shape), dict(metadata.tree))

  def read_meta(self, step: int | None = None) -> dict:
    step = self.resolve_step(step)
    with self._reading(step):
      return self.manager.restore(step, args=ocp.args.Composite(
          meta=ocp.args.JsonRestore())).meta

  def wait(self):
    """Blocks until the last save is on disk; raises as ``save``."""
    with self._writing(self._pending):
      self.manager.wait_until_finished()

  def close(self):
    self.manager.close()


def read(workdir: str, step: int | None, reader):
  """``reader(checkpointer, step)`` on ``workdir``'s checkpoint of ``step``, or of the
  latest step; ``state.load_model`` reads checkpoints through this. A
  training run may delete steps (``keep_checkpoints``, once it has saved newer ones) while
  Orbax lists them, or the latest while it is read: then the steps are listed again (up to
  ``READ_ATTEMPTS`` times)."""
  require_checkpoints(workdir)
  for attempt in range(1, READ_ATTEMPTS + 1):
    try:
      ckpt = Checkpointer(workdir)
    except (FileNotFoundError, NotADirectoryError):
      # Orbax lists a step, then finds it gone (its exists/is_dir check says "not a
      # directory" when the deletion falls between the two).
      if attempt == READ_ATTEMPTS:
        raise
      continue
    try:
      chosen = ckpt.resolve_step(step)
    except FileNotFoundError:
      ckpt.close()
      # Listed while the run swapped its oldest step for a new one: list again.
      if step is not None or attempt == READ_ATTEMPTS:
        raise
      continue
    try:
      return reader(ckpt, chosen)
    except Exception as e:  # pylint: disable=broad-except
      # A deletion removes files one by one: a newer step on disk tells it from damage.
      newer = [p for p in epath.Path(ckpt.directory).iterdir()
               if p.name.isdigit() and int(p.name) > chosen]
      if step is not None or not newer or attempt == READ_ATTEMPTS:
        if isinstance(e, DamagedCheckpointError):
          e.add_note(f'(choose another step with --step; steps there: '
                     f'{sorted(ckpt.manager.all_steps())})')
        raise
      logging.info('The checkpoint of step %d in %s was deleted while being read (by the '
                   'training run); reading the latest one again', chosen, ckpt.directory)
    finally:
      ckpt.close()


def abstract_arrays(tree, sharding=None):
  """ShapeDtypeStructs of ``tree``'s arrays placed by ``sharding``: one sharding for all, a
  tree of them like ``tree``, or None for each array's own."""
  if sharding is None:
    sharding = jax.tree.map(lambda x: x.sharding, tree)
  elif isinstance(sharding, jax.sharding.Sharding):
    sharding = jax.tree.map(lambda _: sharding, tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree,
                      sharding)


def shape_differences(wanted: dict, found: dict, where: str) -> str:
  """The names ('collection/module/…/leaf') whose shape differs between ``wanted`` (the
  model's) and ``found`` (in ``where``: the checkpoint, the file), or that only one side
  has, with both shapes, by collection as ``wanted`` orders them (params first) and by name
  within; the first 8 named (one mismatch often brings many), '' where they agree."""
  collections = list(dict.fromkeys(n.split('/', 1)[0] for n in [*wanted, *found]))
  problems = []
  for name in sorted(set(wanted) | set(found),
                     key=lambda n: (collections.index(n.split('/', 1)[0]), n)):
    if name not in found:
      problems.append(f'{name}: not in the {where} (model {wanted[name]})')
    elif name not in wanted:
      problems.append(f'{name}: not in the model ({where} {found[name]})')
    elif wanted[name] != found[name]:
      problems.append(f'{name}: {where} {found[name]} vs model {wanted[name]}')
  return '; '.join(problems[:8]) + (f'; … {len(problems) - 8} more' if len(problems) > 8
                                    else '')


def config_to_json(config: ml_collections.ConfigDict) -> dict:
  return json.loads(config.to_json())


def config_from_json(saved: dict) -> ml_collections.ConfigDict:
  """A checkpoint's config (``meta['config']``) as a ConfigDict; JSON lists back to tuples,
  as the config files write sequences."""
  def tuples(x):
    if isinstance(x, dict):
      return {k: tuples(v) for k, v in x.items()}
    return tuple(tuples(v) for v in x) if isinstance(x, list) else x
  return ml_collections.ConfigDict(tuples(saved))


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
