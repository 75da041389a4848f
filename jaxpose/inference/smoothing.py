"""Temporal smoothing of poses along a video: the One-Euro filter.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a first-order low-pass filter
whose cut-off frequency rises with the signal's speed: ``cutoff = min_cutoff + beta ×
|speed|``. A joint at rest is smoothed hard (jitter goes), a joint that moves fast is
followed with little lag. The speed is itself low-passed at ``d_cutoff``. Every element of
the array is filtered on its own.

Speeds here are in metres per second, whatever unit the values have: the caller passes the
size of one metre in the values' unit (1000 for mm; the weak-perspective camera's pixels per
metre for 2D), so that one ``beta`` suits 2D and 3D alike.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class OneEuroParams:
  """The filter's settings.

  Attributes:
    min_cutoff: cut-off frequency at rest, Hz. Lower: smoother, more lag when slow.
    beta: cut-off increase per m/s of speed, Hz / (m/s). Higher: less lag when fast.
    d_cutoff: cut-off frequency of the speed estimate, Hz.
  """
  min_cutoff: float = 1.0
  beta: float = 1.0
  d_cutoff: float = 1.0

  def __post_init__(self):
    for name in ('min_cutoff', 'beta', 'd_cutoff'):
      value = getattr(self, name)
      if not (math.isfinite(value) and (value > 0 or name == 'beta' and value == 0)):
        raise ValueError(f'one_euro {name} must be a positive number'
                         f'{" or 0" if name == "beta" else ""}, got {value}')


def _alpha(cutoff, dt: float):
  """The smoothing factor of a first-order low-pass at ``cutoff`` Hz sampled every ``dt`` s."""
  tau = 1.0 / (2 * np.pi * cutoff)
  return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
  """Filters one signal (an array of fixed shape) sample by sample."""

  def __init__(self, params: OneEuroParams):
    self.params = params
    self._value = self._speed = self._time = None

  def __call__(self, value, time: float, metre: float = 1.0) -> np.ndarray:
    """The filtered ``value`` at ``time`` (seconds, increasing); ``metre``: one metre in the
    values' unit. The first sample passes unchanged."""
    value = np.asarray(value, np.float64)
    if self._value is None:
      self._value, self._speed, self._time = value, np.zeros_like(value), time
      return value
    dt = time - self._time
    if not dt > 0:
      raise ValueError(f'one_euro: times must increase, got {time} after {self._time}')
    p = self.params
    speed = (value - self._value) / dt / metre
    self._speed = self._speed + _alpha(p.d_cutoff, dt) * (speed - self._speed)
    alpha = _alpha(p.min_cutoff + p.beta * np.abs(self._speed), dt)
    self._value = self._value + alpha * (value - self._value)
    self._time = time
    return self._value
