"""Stopping training at a step boundary when the machine is about to be taken away.

TPU maintenance events, SLURM (``--signal``, ``scancel``) and Kubernetes (pod deletion,
then ``terminationGracePeriodSeconds``) send SIGTERM and wait a grace period before they
kill; Ctrl-C sends SIGINT. While ``Watch`` is active either signal only asks the training
loop to stop: every process finishes its current step, all agree on the step to stop at,
save it (``jaxpose.train``) and exit with ``EXIT_CODE`` and one line naming the step. A
second signal while that checkpoint is written changes nothing.

One process keeps the request in a flag set by its own handler. Several processes use
JAX's preemption sync point (``multihost_utils.reached_preemption_sync_point``): when any
of them gets SIGTERM, jax.distributed's coordination service tells the others and computes
the step after the furthest one's, where all stop. Its SIGTERM handler is installed in C++
by ``jax.distributed.initialize``, so here only SIGINT is caught, and passed on to it as a
SIGTERM.

Imports only the standard library at module level: ``jaxpose.cli`` imports it before JAX
may start.
"""

from __future__ import annotations

import os
import signal
import threading

# The exit status of a run stopped by a signal after saving its step: EX_TEMPFAIL of
# sysexits.h ("try again later"), apart from 1 (an error) and from 128 + the signal
# (killed without saving), so that a retry wrapper or a Kubernetes podFailurePolicy can
# tell a clean preemption from a failure.
EXIT_CODE = 75


class Preempted(Exception):
  """Training stopped on a signal, its step saved; the message names the step."""


class Watch:
  """While active (``with Watch() as watch``), SIGTERM and SIGINT only ask to stop; the
  loop calls ``reached(step)`` after each step. The previous handlers come back on exit.
  Off the main thread (a notebook's worker, a test's thread) Python cannot take signals:
  the watch then never stops the loop."""

  def __init__(self):
    self._requested = threading.Event()
    self._previous = {}
    self._multiprocess = False

  def __enter__(self) -> Watch:
    import jax  # pylint: disable=g-import-not-at-top
    self._multiprocess = jax.process_count() > 1
    if threading.current_thread() is not threading.main_thread():
      return self
    signals = (signal.SIGINT,) if self._multiprocess else (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
      self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, *exc) -> None:
    for signum, handler in self._previous.items():
      signal.signal(signum, handler)
    self._previous.clear()

  def _handle(self, signum, frame) -> None:
    del signum, frame
    # Only flags or forwards: it may run in the middle of a checkpoint's writing.
    if self._multiprocess:
      os.kill(os.getpid(), signal.SIGTERM)
    self._requested.set()

  def reached(self, step: int) -> bool:
    """Whether training must stop after ``step`` (the same answer on every process)."""
    if self._multiprocess:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested.is_set()
