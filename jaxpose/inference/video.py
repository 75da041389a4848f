"""3D poses along a video: frames, tracking, smoothing, and the JSONL and video written.

Tracking follows the paper's recipe for a photo without a box, frame to frame: the tight
box around a person's 2D joints in one frame is where the network looks in the next.
Frames go through the network in batches of ``predictor.BATCH``: the crops of a batch come
from the last frame before it, moved along the track's velocity (the joints' centre's mean
displacement per frame since the previous batch), so that a walking person stays inside the
crop while the network sees many frames at once. A new track's first batch is one frame,
which measures its velocity.

A track is *lost* when, in the last frame of a batch, its mean joint confidence (the peak
of each joint's res5a heatmap, trained towards 1 on a visible joint) is below
``lost_confidence``, or the middle of its 2D joints lies outside the frame, or their
extent is under ``MIN_EXTENT_PX`` (too small to pose, or a network that lost its person
and collapsed its 2D) or over ``boxes.MAX_BOX_TO_IMAGE`` times the frame's longer side
(a network whose 2D spread out: no box that large is posed). Without a boxes file the
next frame then gets the whole-frame pass of a photo without a box (the network on the
whole frame, then on the tight box of what it found), which starts a new track. With a
boxes file, its boxes start and renew tracks: a box continues the track whose box it
overlaps most (intersection over union above ``_SAME_TRACK_IOU``), so that a detector's
boxes on every frame keep each person's track and smoothing, lost or not; a lost track
that no box renews ends.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import sys
import time
from collections.abc import Iterator

import cv2
import ml_collections
import numpy as np

from jaxpose import fileio
from jaxpose.data import readers
from jaxpose.inference import boxes as box_lib
from jaxpose.inference import output
from jaxpose.inference import predictor as predictor_lib
from jaxpose.inference import smoothing

# A person whose joints span fewer pixels has no pose to give: the track is lost.
MIN_EXTENT_PX = 12.0
# Box overlap (intersection over union) above which a boxes file's box continues a track.
_SAME_TRACK_IOU = 0.3
# The frame rate assumed where the container gives none, for time stamps and the video.
_DEFAULT_FPS = 25.0


def read_frames(video: readers.Video) -> Iterator[tuple[int, float, np.ndarray]]:
  """(index in the file, time stamp in seconds, RGB frame) of every frame that decodes;
  the others are counted in ``video.skipped``."""
  fps = video.fps if video.fps > 0 else _DEFAULT_FPS
  for index, frame in video.frames(undecodable='skip'):
    yield index, video.time if np.isfinite(video.time) else index / fps, frame


@dataclasses.dataclass(eq=False)
class Track:
  """One person followed along the video: the box (x, y, w, h) of its 2D joints' extent in
  frame ``index``, their centre's velocity (px per frame; None until two frames measured
  it) and its smoothing filters."""
  id: int
  box: np.ndarray
  index: int
  velocity: np.ndarray | None
  filters: dict | None
  lost: bool = False

  def box_at(self, index: int, frame_size: tuple[int, int]) -> np.ndarray:
    """The box moved along the velocity to frame ``index``, its centre kept in the frame."""
    velocity = 0.0 if self.velocity is None else self.velocity
    centre = self.box[:2] + self.box[2:] / 2 + velocity * (index - self.index)
    centre = np.clip(centre, 0.0, np.asarray(frame_size) - 1e-3)
    return np.concatenate([centre - self.box[2:] / 2, self.box[2:]])


def extent_box(pose_2d: np.ndarray) -> np.ndarray:
  """(x, y, w, h) of the joints' extent, at least 1 px wide and high."""
  lo, hi = pose_2d.min(0), pose_2d.max(0)
  return np.concatenate([lo, np.maximum(hi - lo, 1.0)])


def iou(a, b) -> float:
  """Intersection over union of two (x, y, w, h) boxes."""
  lo, hi = np.maximum(a[:2], b[:2]), np.minimum(a[:2] + a[2:], b[:2] + b[2:])
  inter = float(np.prod(np.maximum(hi - lo, 0.0)))
  return inter / (a[2] * a[3] + b[2] * b[3] - inter)


class Tracker:
  """Poses of the people of a video's frames, batched, tracked and smoothed (module
  docstring). Arguments of ``__init__`` as ``predict_video``'s."""

  def __init__(self, predictor: predictor_lib.Predictor, frame_size: tuple[int, int], *,
               boxes: dict[int, list] | None = None, focal: float | None = None,
               fov: float | None = None, smoothing_params: smoothing.OneEuroParams | None = None,
               lost_confidence: float = 0.3, batch: int = predictor_lib.BATCH):
    self.predictor, self.size, self.given = predictor, frame_size, boxes
    self.focal, self.fov, self.params = focal, fov, smoothing_params
    self.lost_confidence, self.batch = lost_confidence, batch
    self.tracks: list[Track] = []
    self.lost = 0  # tracks lost so far
    self._next_id = 0

  def __call__(self, frames) -> Iterator[tuple[int, float, np.ndarray, list[dict]]]:
    """(index, time, frame, people) per frame of ``frames`` ((index, time, frame)
    triples); each person is a ``Predictor.predict`` dict plus ``track`` (its id)."""
    frames = iter(frames)
    ahead = None
    while (first := ahead or next(frames, None)) is not None:
      ahead = None
      if not self.tracks and self.given is None:
        # Nobody to follow: the whole-frame pass on one frame starts a track.
        yield from self._run([first], detect=True)
        continue
      # A frame is cropped where the last frame before its batch put each person, moved
      # along the person's velocity: a batch only grows past its first frame where all
      # velocities are known, or where the boxes file gives the frame's boxes.
      chunk = [first]
      known = all(t.velocity is not None for t in self.tracks)
      while len(chunk) < self.batch and (entry := next(frames, None)) is not None:
        if not (known or self.given is not None and entry[0] in self.given):
          ahead = entry
          break
        chunk.append(entry)
      yield from self._run(chunk, detect=False)

  def _run(self, chunk: list, detect: bool):
    plan = []  # per frame: [(track, box or None)]
    for index, _, _ in chunk:
      if detect:
        track = self._new_track(np.zeros(4), index)
        plan.append([(track, None)])
        continue
      if self.given is not None and index in self.given:
        self._renew(self.given[index], index)
      self._end_lost()
      plan.append([(t, t.box_at(index, self.size)) for t in self.tracks])
    people = self.predictor.predict_many(
        [frame for (_, _, frame), jobs in zip(chunk, plan) for _ in jobs],
        [box for jobs in plan for _, box in jobs], self.focal, self.fov)
    results = iter(people)
    last = {}
    for (index, stamp, frame), jobs in zip(chunk, plan):
      out = []
      for track, _ in jobs:
        person = next(results)
        last[track.id] = (track, index, person)
        out.append(dict(self._smooth(track, person, stamp), track=track.id))
      yield index, stamp, frame, out
    self._update(last.values())
    if self.given is None:
      self._end_lost()

  def _new_track(self, box, index: int) -> Track:
    filters = None if self.params is None else {
        k: smoothing.OneEuroFilter(self.params) for k in ('pose_2d', 'pose_3d', 'root')}
    track = Track(self._next_id, np.asarray(box, np.float64), index, None, filters)
    self._next_id += 1
    self.tracks.append(track)
    return track

  def _renew(self, boxes: list, index: int) -> None:
    """The file's boxes for frame ``index`` become the tracks: each continues the running
    track it overlaps most (above ``_SAME_TRACK_IOU``), or starts one."""
    running, self.tracks = self.tracks, []
    for box in boxes:
      box = np.asarray(box, np.float64)
      overlaps = [iou(box, t.box_at(index, self.size)) for t in running]
      best = int(np.argmax(overlaps)) if overlaps else -1
      if best >= 0 and overlaps[best] > _SAME_TRACK_IOU:
        track = running.pop(best)
        track.box, track.index, track.lost = box, index, False
        self.tracks.append(track)
      else:
        self._new_track(box, index)
    self.lost += sum(t.lost for t in running)

  def _update(self, lasts) -> None:
    """Each track moves to the extent of its last 2D joints, or is marked lost."""
    width, height = self.size
    for track, index, person in lasts:
      box = extent_box(person['pose_2d'])
      centre = box[:2] + box[2:] / 2
      track.lost = bool(np.mean(person['confidence']) < self.lost_confidence
                        or not (0 <= centre[0] < width and 0 <= centre[1] < height)
                        or box[2:].max() < MIN_EXTENT_PX
                        or box[2:].max() > box_lib.MAX_BOX_TO_IMAGE * max(width, height))
      if track.lost:
        continue
      if index > track.index and track.box[2:].any():
        track.velocity = (centre - track.box[:2] - track.box[2:] / 2) / (index - track.index)
      track.box, track.index = box, index

  def _end_lost(self) -> None:
    """Lost tracks end (with a boxes file, those its boxes did not renew)."""
    self.lost += sum(t.lost for t in self.tracks)
    self.tracks = [t for t in self.tracks if not t.lost]

  def _smooth(self, track: Track, person: dict, stamp: float) -> dict:
    if track.filters is None:
      return person
    # Speeds in m/s (smoothing's docstring): 2D px per metre at the root's depth.
    metres = {'pose_2d': person['camera']['scale'] * 1000, 'pose_3d': 1000.0, 'root': 1000.0}
    return {**person, **{k: f(person[k], stamp, metres[k]) for k, f in track.filters.items()}}


def predict_video(predictor: predictor_lib.Predictor, path, out_dir: str, *,
                  boxes: dict[int, list] | None = None, focal: float | None = None,
                  fov: float | None = None,
                  smoothing_params: smoothing.OneEuroParams | None = smoothing.OneEuroParams(),
                  lost_confidence: float = 0.3, progress=sys.stderr,
                  extra: dict | None = None) -> dict:
  """Writes ``out_dir/<stem>.jsonl`` and ``<stem>.mp4`` for the video at ``path``.

  Args:
    predictor: the network.
    path: the video file (anything OpenCV's FFmpeg decodes).
    out_dir: the output folder.
    boxes: person boxes (x, y, w, h) by frame index, or None to find and follow one person.
    focal, fov: the camera's focal length (px) or horizontal field of view (degrees); None
      for both: ``intrinsics.DEFAULT_FOV_DEG``.
    smoothing_params: One-Euro filter settings for 2D, 3D and root, or None for none.
    lost_confidence: the mean joint confidence under which a track is lost.
    progress: where the progress line goes (None: nowhere).
    extra: entries added to every JSONL line.

  Returns:
    A summary: the output paths, ``frames`` written, ``skipped`` (frames that failed to
    decode), ``lost`` (tracks lost), ``seconds`` and ``frames_per_second``.

  Each JSONL line holds ``frame`` (index in the file), ``time`` (seconds) and ``people``:
  per person ``output.to_json``'s layout and ``track``. The video shows the frames with
  the 2D skeletons beside the 3D skeletons (``output.prediction_picture``). Both files are
  written under temporary names and renamed when complete.
  """
  video = readers.Video(path)
  fps = video.fps if video.fps > 0 else _DEFAULT_FPS
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.join(out_dir, pathlib.Path(path).stem)
  jsonl_path, video_path = stem + '.jsonl', stem + '.mp4'
  tracker = Tracker(predictor, (video.width, video.height), boxes=boxes, focal=focal, fov=fov,
                    smoothing_params=smoothing_params, lost_confidence=lost_confidence)
  writer, written, start = None, 0, time.perf_counter()
  partial_jsonl, partial_video = jsonl_path + '.partial', stem + '.partial.mp4'
  try:
    with open(partial_jsonl, 'w') as lines:
      for index, stamp, frame, people in tracker(read_frames(video)):
        line = dict(frame=index, time=stamp, people=[output.to_json(p) for p in people],
                    **(extra or {}))
        lines.write(json.dumps(line) + '\n')
        picture = output.prediction_picture(frame, people)
        # MPEG-4 needs even sides.
        picture = np.pad(picture, ((0, picture.shape[0] % 2), (0, picture.shape[1] % 2),
                                   (0, 0)))
        if writer is None:
          writer = cv2.VideoWriter(partial_video, cv2.VideoWriter_fourcc(*'mp4v'), fps,
                                   picture.shape[1::-1])
          if not writer.isOpened():
            raise OSError(f'OpenCV cannot write an MPEG-4 video to {partial_video}')
        writer.write(picture[..., ::-1])
        written += 1
        if progress is not None:
          _report(progress, video, index + 1, written, time.perf_counter() - start)
    if writer is None:
      raise ValueError(f'cannot read video {path}: none of its frames decodes')
    writer.release()
    writer = None
    os.replace(partial_jsonl, jsonl_path)
    os.replace(partial_video, video_path)
  finally:
    video.close()
    if writer is not None:
      writer.release()
    for leftover in (partial_jsonl, partial_video):
      if os.path.exists(leftover):
        os.remove(leftover)
  seconds = time.perf_counter() - start
  if progress is not None:
    progress.write('\n')
  return dict(jsonl=jsonl_path, video=video_path, frames=written, skipped=video.skipped,
              lost=tracker.lost, seconds=seconds, frames_per_second=written / seconds)


def _report(stream, video: readers.Video, position: int, written: int,
            elapsed: float) -> None:
  """One progress line, rewritten in place: frames, rate, and the time left."""
  rate = written / max(elapsed, 1e-9)
  total = max(video.frame_count, position)
  eta = datetime.timedelta(seconds=round((total - position) / rate))
  bar = '#' * int(20 * position / total)
  stream.write(f'\r{video.path.name} [{bar:<20}] {position}/{total} frames, '
               f'{rate:.1f} frames/s, ETA {eta}, {video.skipped} skipped')
  stream.flush()


def predict_video_file(workdir: str, path: str, out_dir: str, *, step: int | None = None,
                       config: ml_collections.ConfigDict | None = None, backend: str = 'jax',
                       boxes_file: str | None = None, min_box_score: float = 0.5,
                       **options) -> dict:
  """``predict_video`` with the Predictor of ``workdir``'s checkpoint (``step``, ``config``,
  ``backend`` as ``Predictor``'s) and the boxes of ``boxes_file`` (``boxes.load``), both
  checked before the (slower) restore so that a bad file or box fails at once;
  ``options`` are ``predict_video``'s. Every JSONL line names the checkpoint."""
  table = None if boxes_file is None else box_lib.load(boxes_file, min_box_score)
  if not fileio.is_local(out_dir):
    raise ValueError(f'--out={out_dir}: a video\'s outputs are written by OpenCV, which needs '
                     'a local folder')
  with readers.Video(path) as video:
    size = (video.width, video.height)
  frame_boxes = None
  if table is not None:
    frame_boxes = box_lib.for_frames(table, boxes_file)
    for index, boxes in frame_boxes.items():
      for i, box in enumerate(boxes):
        box_lib.check_box(box, size, f'--boxes={boxes_file}, box {i} of frame {index} of {path}')
  predictor = predictor_lib.Predictor(workdir, step, config, backend)
  return predict_video(
      predictor, path, out_dir, boxes=frame_boxes,
      extra=dict(checkpoint=dict(workdir=fileio.absolute(workdir), step=predictor.step)),
      **options)
