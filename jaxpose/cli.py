"""What every command-line entry point shares: the config and workdir flags, and the
process set-up that must happen before JAX starts its backend.

Several processes (one per host, or several on one machine) join with either
``--distributed``, where ``jax.distributed`` finds the coordinator, the process count and
this process's id itself (TPU pods, SLURM, Open MPI: the ``launch/`` scripts pass it), or
``--coordinator_address --num_processes --process_id`` anywhere else. Without them the
process runs alone.

A user error (a bad flag, a config file that is missing or fails to load, an override of a
key the config lacks, or a ``ValueError``/``OSError``/``FloatingPointError`` of the run,
which name the flag, field or file at fault) ends the process with one line on stderr and
exit status 1; ``--verbosity=1`` logs its traceback too.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import mmap
import os
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

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
  flags.DEFINE_integer('step', None, 'Checkpoint step to restore (evaluate, predict; default: '
                       'the latest).')
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
  flags.DEFINE_bool('cpu_xla_flag', True, 'Add CPU_XLA_FLAG (see jaxpose/cli.py) to '
                    'XLA_FLAGS and, with JAX on the CPU only, keep freed memory for the next '
                    'step (cli.configure_cpu); --nocpu_xla_flag measures XLA:CPU without '
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


# XLA:CPU hands convolutions to YNNPACK, which is slow on weight-gradient convolutions.
# Without it the paper's network (256 px, batch 8, 2 cores) trains at 2.5 instead of 1.4
# images/s and infers at 13.5 instead of 9.0, with gradients equal to 3e-6 (jaxlib 0.10.2,
# `python -m jaxpose.benchmark --config=configs/synthetic.py:paper_model --config.batch_size=8
# [--nocpu_xla_flag]`). The concurrency-optimised scheduler orders the step so that
# independent operations (a weight gradient beside the next input gradient) run side by
# side on the thread pool: the same train step at 1.30 and 1.25 instead of 0.92 and 0.69
# images/s, alternating runs on the 2 cores while other work loaded them; gradients
# unchanged (tests/test_cpu_xla_flag.py). Both flags are experimental: recheck them when
# jaxlib changes.
CPU_XLA_FLAG = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution '
                '--xla_cpu_enable_concurrency_optimized_scheduler=true')


# XLA:CPU allocates a step's temporary buffers afresh on every call (1.5 GB for the paper's
# network at batch 8) and glibc's malloc maps big blocks from the kernel and unmaps them
# after, so each step page-faults every one of those pages in again, zeroed (390 000 faults
# a step). Never mapping blocks separately nor trimming the heap hands the same memory back
# each step: no faults once the heap has settled (a few steps). That alone serves a block
# no bigger than a thread's arena heap; XLA runs steps on its worker threads, whose arenas
# map any bigger block whatever M_MMAP_MAX says, so a step with bigger temporaries also
# needs every thread on the one main arena, whose heap grows without bound. One arena costs
# where its lock is contended (tf.data's threads, XLA's), and the process keeps its peak
# heap. Measured on 2 cores, jaxlib 0.10.2, medians of alternating runs
# (`python -m jaxpose.benchmark --what=loop`), images/s of the training loop:
#
#   config                    none     no maps, no trim   + one arena
#   synthetic (96 px, 16)     248-254  319-320            227-228
#   paper_model (256 px, 8)   3.73     3.76-3.78          4.15-4.24 (peak RSS 9.0 GB, not 4.4)
#
# glibc's mallopt parameters (malloc.h); a trim threshold of -1 is read as SIZE_MAX: never.
_M_ARENA_MAX, _M_MMAP_MAX, _M_TRIM_THRESHOLD = -8, -4, -1
# The most one heap of a thread's arena holds (glibc's HEAP_MAX_SIZE on 64-bit systems).
THREAD_HEAP_BYTES = 64 << 20


def malloc_settings(train_bytes: int) -> tuple[tuple[int, int], ...]:
  """The ``mallopt`` calls for a run whose train step keeps about ``train_bytes`` of
  activations (see above)."""
  keep = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
  return ((_M_ARENA_MAX, 1),) + keep if train_bytes > THREAD_HEAP_BYTES else keep


def train_activation_bytes(config) -> int:
  """About what ``config``'s train step keeps for its backward pass (the global batch's
  module outputs; nothing computed)."""
  from jaxpose.models import posenet  # pylint: disable=g-import-not-at-top
  return config.batch_size * posenet.activation_bytes(posenet.create(config.model),
                                                      config.data.input_size)


def cpu_setup() -> int | None:
  """The ``configure_cpu`` argument the run's flags ask for: the config's train activations
  (0 without a config), or None with ``--nocpu_xla_flag``."""
  if not FLAGS.cpu_xla_flag:
    return None
  return 0 if FLAGS.config is None else train_activation_bytes(FLAGS.config)


def _only_cpu() -> bool:
  """Whether JAX can only run on the CPU here (decided before it starts its backend)."""
  platforms = os.environ.get('JAX_PLATFORMS', '')
  if platforms:
    return platforms.split(',')[0] == 'cpu'
  return not any(importlib.util.find_spec(name) for name in
                 ('jax_plugins', 'jax_cuda12_plugin', 'jax_cuda13_plugin', 'libtpu'))


@functools.cache
def _jaxlib_libraries() -> tuple[str, ...]:
  jaxlib = importlib.util.find_spec('jaxlib')
  return tuple(sorted(glob.glob(os.path.join(jaxlib.submodule_search_locations[0], '*.so'))))


def xla_knows(flag: str) -> bool:
  """Whether the installed jaxlib's XLA defines ``flag`` (``--name``): its name is one of
  the library's strings. XLA aborts the process on an unknown flag in XLA_FLAGS, so the
  flag cannot be tried; reading the strings takes about 0.1 s."""
  name = flag.lstrip('-').encode() + b'\0'
  for path in _jaxlib_libraries():
    with open(path, 'rb') as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
      if data.find(name) >= 0:
        return True
  return False


def configure_cpu(train_bytes: int = 0) -> None:
  """Adds each flag of ``CPU_XLA_FLAG`` that the installed XLA knows (``xla_knows``) and
  XLA_FLAGS does not set already to XLA_FLAGS and, where JAX only has the CPU and the C
  library is glibc, keeps freed memory in the process for the next step
  (``malloc_settings(train_bytes)``); before JAX starts its backend and its threads."""
  current = os.environ.get('XLA_FLAGS', '')
  missing = [f for f in CPU_XLA_FLAG.split() if f.split('=')[0] not in current
             and xla_knows(f.split('=')[0])]
  os.environ['XLA_FLAGS'] = ' '.join([current, *missing]).strip()
  if not sys.platform.startswith('linux'):
    return
  libc = ctypes.CDLL(None)
  # glibc only (musl lacks the call); a GPU or TPU host leaves the CPU to tf.data's threads,
  # which want their own arenas.
  if hasattr(libc, 'gnu_get_libc_version') and _only_cpu():
    for param, value in malloc_settings(train_bytes):
      libc.mallopt(param, value)


def initialize_distributed() -> None:
  """Joins the other processes of the run, as the flags say (see the module docstring)."""
  import jax  # pylint: disable=g-import-not-at-top
  if FLAGS.distributed:
    try:
      jax.distributed.initialize()
    except ValueError as e:
      raise ValueError(f'--distributed: no TPU pod, SLURM or Open MPI environment detected '
                       f'({e}); elsewhere pass --coordinator_address, --num_processes and '
                       f'--process_id') from e
  elif FLAGS.coordinator_address is not None:
    jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes,
                               FLAGS.process_id)
  else:
    return
  logging.info('Process %d of %d: %d local devices of %d', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


# Errors of the run that name what the user got wrong (config fields, files, flags, a
# non-finite loss) rather than a bug of jaxpose.
USER_ERRORS = (ValueError, OSError, FloatingPointError)


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
      configure_cpu(setup)
    initialize_distributed()
    # tf.data only feeds the host: keep TensorFlow off any accelerator JAX is using.
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.set_visible_devices([], 'GPU')
    main(argv)
  except USER_ERRORS as e:
    logging.debug('The error in full:', exc_info=True)
    _exit(_describe(e))


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


def _exit(message: str) -> None:
  sys.exit(f'{os.path.basename(sys.argv[0])}: error: {message}')
