"""The process set-up for JAX on the CPU, before JAX starts its backend: XLA:CPU's flags and
glibc's allocator. ``cli`` calls ``configure_cpu`` for every entry point (``--nocpu_xla_flag``
turns it off); tests and benchmarks call it too."""

from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import mmap
import os
import sys

# XLA:CPU hands convolutions to YNNPACK, which is slow on weight-gradient convolutions; the
# concurrency-optimised scheduler runs independent operations (a weight gradient beside the
# next input gradient) side by side on the thread pool. Both speed up the train step with
# the gradients unchanged (tests/test_cpu_xla_flag.py; figures in docs/performance.md). Both
# flags are experimental: XLA versions that lack one get only the others (``xla_knows``).
CPU_XLA_FLAG = ('--xla_cpu_experimental_ynn_fusion_type=-individual_convolution '
                '--xla_cpu_enable_concurrency_optimized_scheduler=true')


# XLA:CPU allocates a step's temporary buffers afresh on every call and glibc's malloc maps
# big blocks from the kernel and unmaps them after, so each step page-faults every page in
# again. Never mapping blocks separately nor trimming the heap hands the same memory back
# each step. That serves blocks up to a thread arena's heap; XLA runs steps on its worker
# threads, whose arenas map bigger blocks whatever M_MMAP_MAX says, so a step with bigger
# temporaries also needs every thread on the one main arena, which costs where its lock is
# contended and keeps the peak heap (figures in docs/performance.md).
# glibc's mallopt parameters (malloc.h); a trim threshold of -1 is read as SIZE_MAX: never.
_M_ARENA_MAX, _M_MMAP_MAX, _M_TRIM_THRESHOLD = -8, -4, -1
# The most one heap of a thread's arena holds (glibc's HEAP_MAX_SIZE on 64-bit systems).
THREAD_HEAP_BYTES = 64 << 20


def malloc_settings(train_bytes: int) -> tuple[tuple[int, int], ...]:
  """The ``mallopt`` calls for a run whose train step keeps about ``train_bytes`` of
  activations (see the comment above ``_M_ARENA_MAX``)."""
  keep = ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1))
  return ((_M_ARENA_MAX, 1),) + keep if train_bytes > THREAD_HEAP_BYTES else keep


def train_activation_bytes(config) -> int:
  """About what ``config``'s train step keeps for its backward pass (the global batch's
  module outputs; nothing computed)."""
  from jaxpose.models import posenet  # pylint: disable=g-import-not-at-top
  return config.batch_size * posenet.activation_bytes(posenet.create(config.model),
                                                      config.data.input_size)


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
