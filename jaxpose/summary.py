"""TensorBoard summaries and progress reports without TensorFlow.

CLU's metric writers and progress hook import TensorFlow (``clu.metric_writers`` loads its
``tf.summary`` writer on import), which the accelerator images JAX users run do not carry.
This writer keeps their interface (``write_scalars``, ``write_images``,
``write_hparams``, ``flush``) and writes TensorBoard's event files itself: TFRecord framing
of ``Event`` protocol buffers (TensorBoard's own, from the ``tensorboard`` package) through
``jaxpose.fileio`` (local or gs://), and logs the scalars as CLU's ``LoggingWriter`` does.
"""

from __future__ import annotations

import io
import os
import socket
import struct
import time

import numpy as np
from absl import logging
from PIL import Image
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.proto import summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import summary_v2 as hparams_summary

from jaxpose import fileio


def _record(data: bytes) -> bytes:
  """``data`` framed as one TFRecord (length, its CRC, data, its CRC; little-endian)."""
  header = struct.pack('<Q', len(data))
  return (header + struct.pack('<I', masked_crc32c(header)) + data +
          struct.pack('<I', masked_crc32c(data)))


class Writer:
  """Scalars, images and hyperparameters to the log and, unless ``just_logging`` (the
  processes other than the first), to an event file in ``logdir``.

  On an object store (``gs://``) a file appears when it is closed: every ``flush`` ends
  one there and the next write starts another, so each window's values can be read while
  the run goes on. Locally one file is appended to and flushed.
  """

  def __init__(self, logdir: str, just_logging: bool = False):
    self.logdir, self.just_logging = logdir, just_logging
    self._file = None
    self._segment = 0

  def _write(self, event: event_pb2.Event) -> None:
    if self.just_logging:
      return
    if self._file is None:
      fileio.gfile.makedirs(self.logdir)
      name = (f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.'
              f'{os.getpid()}.{self._segment}')
      self._segment += 1
      self._file = fileio.gfile.GFile(os.path.join(self.logdir, name), 'wb')
      self._file.write(_record(event_pb2.Event(
          wall_time=time.time(), file_version='brain.Event:2').SerializeToString()))
    self._file.write(_record(event.SerializeToString()))

  def _summary(self, step: int, values: list[summary_pb2.Summary.Value]) -> None:
    self._write(event_pb2.Event(wall_time=time.time(), step=int(step),
                                summary=summary_pb2.Summary(value=values)))

  def write_scalars(self, step: int, scalars: dict) -> None:
    logging.info('[%d] %s', step, ', '.join(f'{k}={float(v):.6g}' for k, v in scalars.items()))
    self._summary(step, [summary_pb2.Summary.Value(tag=k, simple_value=float(v))
                         for k, v in scalars.items()])

  def write_images(self, step: int, images: dict) -> None:
    """``images``: name → (N, H, W, C) uint8, written as ``name/image/i``."""
    values = []
    for name, batch in images.items():
      for i, image in enumerate(np.asarray(batch, np.uint8)):
        png = io.BytesIO()
        Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image).save(png, 'PNG')
        values.append(summary_pb2.Summary.Value(tag=f'{name}/image/{i}', image=(
            summary_pb2.Summary.Image(height=image.shape[0], width=image.shape[1],
                                      colorspace=image.shape[2],
                                      encoded_image_string=png.getvalue()))))
    self._summary(step, values)

  def write_hparams(self, hparams: dict) -> None:
    logging.info('Hyperparameters: %s', hparams)
    summary = hparams_summary.hparams_pb(hparams)
    self._summary(0, list(summary.value))

  def flush(self) -> None:
    if self._file is None:
      return
    if fileio.is_local(self.logdir):
      self._file.flush()
    else:
      self.close()

  def close(self) -> None:
    if self._file is not None:
      self._file.close()
      self._file = None


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
  """The scalars of every event file in ``logdir``: tag → [(step, value)], in the order
  written (TFRecord framing; CRCs not checked)."""
  scalars: dict[str, list[tuple[int, float]]] = {}
  for path in fileio.gfile.glob(os.path.join(logdir, 'events.out.tfevents.*')):
    with fileio.gfile.GFile(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset + 12 <= len(data):
      length = struct.unpack('<Q', data[offset:offset + 8])[0]
      event = event_pb2.Event.FromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        if value.WhichOneof('value') == 'simple_value':
          scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
  return scalars


class Progress:
  """Logs steps/s, the share done and the time left every ``every_secs`` (and at the last
  step), and writes ``steps_per_sec`` and ``uptime`` (CLU's ``ReportProgress``)."""

  def __init__(self, num_train_steps: int, writer: Writer, every_secs: float = 60.0):
    self.num_train_steps, self.writer, self.every_secs = num_train_steps, writer, every_secs
    self._start = time.monotonic()
    self._last = None  # (step, time) of the last report

  def __call__(self, step: int) -> None:
    now = time.monotonic()
    if self._last is None:
      self._last = step, now
      return
    if now - self._last[1] < self.every_secs and step != self.num_train_steps:
      return
    rate = (step - self._last[0]) / max(now - self._last[1], 1e-9)
    logging.info('%.1f steps/s, %.1f%% (%d/%d), ETA: %.0f min', rate,
                 100 * step / self.num_train_steps, step, self.num_train_steps,
                 (self.num_train_steps - step) / max(rate, 1e-9) / 60)
    self.writer.write_scalars(step, {'steps_per_sec': rate, 'uptime': now - self._start})
    self._last = step, now
