"""What every command-line entry point shares: the config and workdir flags, and the
process set-up that must happen before JAX starts its backend.

Several processes (one per host, or several on one machine) join with either
``--distributed``, where ``jax.distributed`` finds the coordinator, the process count and
this process's id itself (TPU pods, SLURM, Open MPI: the ``launch/`` scripts pass it), or
``--coordinator_address --num_processes --process_id`` anywhere else. Without them the
process runs alone.

A user error (a bad flag, a config file that is missing or fails to load, an override of a
key the config lacks, or a ``ValueError``/``OSError``/``FloatingPointError`` or file-system
error of the run, which name the flag, field or file at fault) ends the process with one
line on stderr and exit status 1; ``--verbosity=1`` logs its traceback too. A training run
stopped by SIGTERM or SIGINT after saving its step ends with one line and status
``preemption.EXIT_CODE`` (75).
"""

from __future__ import annotations

import functools
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from jaxpose import preemption
from jaxpose import runtime

FLAGS = flags.FLAGS
_EXPLICIT = ('coordinator_address', 'num_processes', 'process_id')


def define_common_flags() -> None:
  """The flags every entry point shares. Defined when a program starts (``run``), never on
  import, so that every module imports cleanly into a notebook or a test."""
  config_flags.DEFINE_config_file(
      'config', None,
      'Experiment config, e.g. configs/synthetic.py or configs/synthetic.py:smoke.',
      lock_config=True)
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, logs and evaluation output.')
  flags.DEFINE_integer('step', None, 'Checkpoint step to restore (evaluate, predict, export; '
                       'default: the latest) or to resume training from (default: the newest '
                       'that restores completely; newer ones are kept aside).')
  flags.DEFINE_bool('distributed', False,
                    'One of several processes on a TPU pod, a SLURM allocation or under Open '
                    'MPI: jax.distributed detects the coordinator, process count and process '
                    'id.')
  flags.DEFINE_string('coordinator_address', None,
                      'host:port of process 0, which serves the coordinator (elsewhere than '
                      'TPU pods and SLURM; with --num_processes and --process_id).')
  flags.DEFINE_integer('num_processes', None, 'Number of processes (with '
                       '--coordinator_address).', lower_bound=1)
  flags.DEFINE_integer('process_id', None, 'This process, 0 … num_processes - 1 (with '
                       '--coordinator_address).', lower_bound=0)
  flags.DEFINE_integer('heartbeat_timeout_s', 100, 'Seconds after which JAX\'s coordination '
                       'service takes a silent process for dead and ends the others (status '
                       '134, launch/README.md; JAX\'s default): lower ends a broken run '
                       'sooner, higher tolerates hosts that stall.', lower_bound=1)
  flags.DEFINE_bool('cpu_xla_flag', True, 'Add CPU_XLA_FLAG (see jaxpose/runtime.py) to '
                    'XLA_FLAGS and, with JAX on the CPU only, keep freed memory for the next '
                    'step (runtime.configure_cpu); --nocpu_xla_flag measures XLA:CPU without '
                    'either.')
  flags.register_multi_flags_validator(('distributed',) + _EXPLICIT, _check_process_flags)


def _check_process_flags(values) -> bool:
  given = [k for k in _EXPLICIT if values[k] is not None]
  if values['distributed'] and given:
    raise flags.ValidationError(f'--distributed detects the cluster itself; drop '
                                f'{", ".join("--" + k for k in given)}')
  if given and len(given) < len(_EXPLICIT):
    missing = [k for k in _EXPLICIT if k not in given]
    raise flags.ValidationError(f'{", ".join("--" + k for k in given)} also needs '
                                f'{", ".join("--" + k for k in missing)}')
  if given and values['process_id'] >= values['num_processes']:
    raise flags.ValidationError(f'--process_id={values["process_id"]} is not below '
                                f'--num_processes={values["num_processes"]}')
  return True


def cpu_setup() -> int | None:
  """The ``configure_cpu`` argument the run's flags ask for: the config's train activations
  (0 without a config), or None with ``--nocpu_xla_flag``."""
  if not FLAGS.cpu_xla_flag:
    return None
  return 0 if FLAGS.config is None else runtime.train_activation_bytes(FLAGS.config)


def initialize_distributed() -> None:
  """Joins the other processes of the run, as the flags say (see the module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  heartbeat = dict(heartbeat_timeout_seconds=FLAGS.heartbeat_timeout_s)
  if FLAGS.distributed:
    try:
      jax.distributed.initialize(**heartbeat)
    except ValueError as e:
      raise ValueError(f'--distributed: no TPU pod, SLURM or Open MPI environment detected '
                       f'({e}); elsewhere pass --coordinator_address, --num_processes and '
                       f'--process_id') from e
  elif FLAGS.coordinator_address is not None:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id, **heartbeat)
  else:
    return
  logging.info('Process %d of %d: %d local devices of %d', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


# Errors of the run that name what the user got wrong (config fields, files, flags, a
# non-finite loss) rather than a bug of jaxpose; file-system errors of TensorFlow's file
# layer too (``is_file_system_error``).
USER_ERRORS = (ValueError, OSError, FloatingPointError)


def is_file_system_error(error: BaseException) -> bool:
  """Whether ``error`` is an error of a file system: an OSError (Python's, fsspec's and
  gcsfs's, etils.epath's and Orbax's are), or TensorFlow's ``tf.errors.OpError``
  (tf.io.gfile, which TFDS and etils.epath use for gs:// where TensorFlow is installed),
  recognised only if TensorFlow is imported already (it is never imported for this)."""
  if isinstance(error, OSError):
    return True
  tf = sys.modules.get('tensorflow')
  return tf is not None and isinstance(error, tf.errors.OpError)


def run(main, required=('config', 'workdir'), define_flags=None) -> None:
  """Defines the common flags and the program's own (``define_flags()``), then runs
  ``main`` under absl with the process set up."""
  define_common_flags()
  if define_flags is not None:
    define_flags()
  flags.mark_flags_as_required(list(required))
  app.run(functools.partial(_set_up_and_run, main), flags_parser=_parse_flags)


def _set_up_and_run(main, argv) -> None:
  try:
    # Both must happen before JAX starts its backend, and both read flags. (A model config
    # the network rejects fails here, as a user error.)
    if (setup := cpu_setup()) is not None:
      runtime.configure_cpu(setup)
    initialize_distributed()
    main(argv)
  except preemption.Preempted as e:
    sys.stderr.write(f'{_program()}: {_describe(e)}\n')
    sys.exit(preemption.EXIT_CODE)
  except Exception as e:  # pylint: disable=broad-except
    if _lost_a_process(e):
      _exit_without_the_others(e)
    if not isinstance(e, USER_ERRORS) and not is_file_system_error(e):
      raise
    logging.debug('The error in full:', exc_info=True)
    _exit(_describe(e))


# What XLA's collectives say when a process they wait for is gone (killed, crashed, its host
# lost): Gloo's on CPU, NCCL's on GPU.
_LOST_PROCESS = re.compile(r'closed by peer|reset by peer|broken pipe|Gloo|NCCL', re.I)


def _lost_a_process(error: BaseException) -> bool:
  jax = sys.modules.get('jax')
  return (jax is not None and jax.process_count() > 1 and
          isinstance(error, jax.errors.JaxRuntimeError) and
          _LOST_PROCESS.search(str(error)) is not None)


def _exit_without_the_others(error: BaseException) -> None:
  """Ends this process with one line and status 1 at once: JAX's exit handler would wait
  for the lost process at its shutdown barrier until the heartbeat timeout, then abort."""
  import jax  # pylint: disable=g-import-not-at-top  (imported by now: _lost_a_process)
  logging.debug('The error in full:', exc_info=True)
  sys.stderr.write(_error_line(
      f'process {jax.process_index()} of {jax.process_count()} lost another process in a '
      f'collective ({_describe(error)}); its log says why it stopped: start all processes '
      f'again to resume from the last checkpoint') + '\n')
  sys.stderr.flush()
  logging.flush()
  os._exit(1)  # pylint: disable=protected-access


def _parse_flags(argv: list[str]) -> list[str]:
  """``app.parse_flags_with_usage`` with one line for any error, the config's included."""
  try:
    rest = FLAGS(argv)
  except flags.Error as e:
    _exit(_config_file_problem(argv) or _describe_flag_error(e))
  # An override of a key the config lacks (ml_collections raises it while parsing).
  except AttributeError as e:
    text = _describe(e)
    # ml_collections names only the last part of the key: name the flag that holds it.
    key = re.match(r"'([^']*)'", text)
    given = [a.split('=')[0] for a in argv if key and a.startswith('--config.')
             and key.group(1) in a.split('=')[0].split('.')]
    _exit(f'{" ".join(given) or "a --config.* override"}: the config has no key {text}')
  except (KeyError, TypeError, ValueError, OSError) as e:
    _exit(_config_file_problem(argv) or f'--config: {_describe(e)}')
  if 'config' in FLAGS and FLAGS['config'].present:
    # A config file that fails to load stands in as an object raising on first use.
    try:
      FLAGS.config.get('seed')
    except OSError as e:
      _exit(_config_file_problem(argv) or f'--config: {_describe(e)}')
  return rest


def _config_file_problem(argv: list[str]) -> str | None:
  """Names a ``--config`` file that does not exist (None if it exists or is not given)."""
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      value = arg.split('=', 1)[1]
    elif arg == '--config' and i + 1 < len(argv):
      value = argv[i + 1]
    else:
      continue
    path = value.split(':', 1)[0]
    if not os.path.isfile(path):
      return (f'--config={value}: no file {path} (from {os.getcwd()}); expected a config '
              'file, e.g. --config=configs/synthetic.py:smoke')
  return None


def _describe_flag_error(error: flags.Error) -> str:
  """absl's message, or for a config file whose ``get_config`` raised (which absl gets as
  the traceback in text) the flag and the first error of the chain."""
  text = str(error)
  if 'Traceback (most recent call last)' not in text:
    return _describe(error)
  first = error
  while (first.__cause__ or first.__context__) is not None:
    first = first.__cause__ or first.__context__
  return f'{text.split(": ", 1)[0]}: {_describe(first)}'


def _describe(error: BaseException) -> str:
  """``error``'s message and notes on one line (unwrapping an error that wraps another as
  its message, as ml_collections does with a KeyError, whose text is quoted)."""
  while len(error.args) == 1 and isinstance(error.args[0], BaseException):
    error = error.args[0]
  text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
  text = ' '.join([str(text), *getattr(error, '__notes__', ())])
  return ' '.join(text.split()) or type(error).__name__


def _program() -> str:
  return os.path.basename(sys.argv[0])


def _error_line(message: str) -> str:
  return f'{_program()}: error: {message}'


def _exit(message: str) -> None:
  sys.exit(_error_line(message))
