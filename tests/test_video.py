"""Video: frames, tracking, smoothing, and the files written, on a rendered walking person.

conftest's smoke checkpoint has trained two steps: its 2D does not find a person.
So the track's geometry is checked with the renderer's 2D standing in for a network that
does (``_TrueTwoD``: the real pipeline around it, only the network's 2D replaced), and the
files, the per-frame crops and the smoothing with the real network.
"""

import json

import cv2
import numpy as np
import pytest

from jaxpose import predict
from jaxpose.data import synthetic
from jaxpose.inference import intrinsics
from jaxpose.inference import predictor as predictor_lib
from jaxpose.inference import smoothing
from jaxpose.inference import video
from conftest import run_main

FRAMES = 24
SIZE = (320, 240)  # width, height
STEP = np.array([6.0, 2.0])  # the person's motion, px per frame


def _walk(frames: int = FRAMES, absent=()) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """Frames of a rendered person moving across a fixed background, and their 2D joints;
  in the frames of ``absent`` the person is not there."""
  sample = synthetic.render_sample('studio_test', 0, image_size=128)
  rng = np.random.default_rng(0)
  background = rng.integers(60, 90, (SIZE[1], SIZE[0], 3), np.uint8)
  images, joints = [], []
  for t in range(frames):
    offset = np.array([20.0, 50.0]) + STEP * t
    x, y = np.round(offset).astype(int)
    frame = background.copy()
    if t not in absent:
      window = frame[y:y + 128, x:x + 128]
      window[sample.mask] = sample.image[sample.mask]
    images.append(frame)
    joints.append(sample.joints_2d + [x, y])
  return images, joints


def _write_mp4(path, images, fps=25.0):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), fps, SIZE)
  for image in images:
    writer.write(image[..., ::-1])
  writer.release()


def _frame_count(path) -> int:
  capture = cv2.VideoCapture(str(path))
  count = 0
  while capture.grab():
    count += 1
  capture.release()
  return count


class _TrueTwoD(predictor_lib.Predictor):
  """The checkpoint's network with its 2D replaced by the rendered person's (confidence 1,
  or 0 in frames without the person), as a network that finds the person would give."""

  def __init__(self, base, frames, joints, absent=()):
    self.__dict__.update(base.__dict__)
    self._truth = {id(f): (j, t not in absent) for t, (f, j) in enumerate(zip(frames, joints))}
    self.regions = []

  def _run(self, images, regions):
    outputs = super()._run(images, regions)
    for image, region, out in zip(images, regions, outputs):
      joints, present = self._truth[id(image)]
      out.update(pose_2d=joints, confidence=np.full(len(joints), float(present)))
      self.regions.append(region)
    return outputs


def test_track_follows_a_moving_person_and_recovers_when_lost(predictor):
  absent = {16, 17}
  frames, joints = _walk(absent=absent)
  truth = _TrueTwoD(predictor, frames, joints, absent)
  tracker = video.Tracker(truth, SIZE, lost_confidence=0.5)
  results = list(tracker((t, t / 25, f) for t, f in enumerate(frames)))
  assert [index for index, *_ in results] == list(range(FRAMES))
  boxes = [people[0]['box'] for *_, people in results]
  # Frame 0: the whole-frame pass (no box); frame 1 alone, cropped on frame 0's 2D, measures
  # the speed; then batches of predictor.BATCH frames, cropped where the last frame before
  # them put the person, moved along its velocity: a steady motion is followed exactly.
  assert boxes[0] is None
  np.testing.assert_allclose(boxes[1], video.extent_box(joints[0]), atol=1e-9)
  for t in range(2, 18):
    np.testing.assert_allclose(boxes[t], video.extent_box(joints[t]), atol=1e-9)
  # The person is gone in frames 16 and 17, the last of a batch: the track is lost, and
  # the whole-frame pass finds the person again in frame 18.
  assert tracker.lost == 1 and boxes[18] is None
  np.testing.assert_allclose(boxes[19], video.extent_box(joints[18]), atol=1e-9)
  for t in range(20, FRAMES):
    np.testing.assert_allclose(boxes[t], video.extent_box(joints[t]), atol=1e-9)
  # Every tracked crop holds all joints of its frame.
  for t, (*_, people) in enumerate(results):
    if t not in absent:
      x, y, side, _ = people[0]['crop_box']
      assert np.all(joints[t] >= [x, y]) and np.all(joints[t] <= [x + side, y + side])
  # The whole-frame passes are the only network calls on the whole frame.
  whole = [side for _, side in truth.regions if side == max(SIZE)]
  assert len(whole) == 2


def test_video_with_detections_files_and_smoothing(trained_smoke_workdir, predictor, tmp_path):
  """A detector's boxes on every frame (COCO-style, image_id = frame index): one person per
  frame on one track, the files, and smoothing that lowers the real network's jitter."""
  frames, joints = _walk()
  clip = tmp_path / 'clip.mp4'
  _write_mp4(clip, frames)
  detections = [dict(image_id=t, category_id=1, score=0.9, bbox=video.extent_box(j).tolist())
                for t, j in enumerate(joints)]
  detections.append(dict(image_id=3, category_id=1, score=0.2, bbox=[0, 0, 50, 50]))
  boxes_file = tmp_path / 'detections.json'
  boxes_file.write_text(json.dumps(detections))
  argv = [f'--workdir={trained_smoke_workdir}', f'--video={clip}',
          f'--boxes={boxes_file}', f'--out={tmp_path / "out"}', '--fov=60']
  run_main(predict, argv)
  lines = [json.loads(line) for line in (tmp_path / 'out' / 'clip.jsonl').read_text()
           .splitlines()]
  assert [line['frame'] for line in lines] == list(range(FRAMES))
  np.testing.assert_allclose([line['time'] for line in lines], np.arange(FRAMES) / 25,
                             atol=1e-6)
  assert [[p['track'] for p in line['people']] for line in lines] == [[0]] * FRAMES
  for line, detection in zip(lines, detections):
    np.testing.assert_allclose(line['people'][0]['box'], detection['bbox'])
  person = lines[3]['people'][0]
  assert np.shape(person['pose_3d']) == (17, 3)
  assert person['intrinsics']['focal_source'] == 'fov'
  assert person['intrinsics']['focal'] == pytest.approx(intrinsics.fov_focal(60, SIZE[0]))
  assert lines[0]['checkpoint']['step'] == 2
  assert _frame_count(tmp_path / 'out' / 'clip.mp4') == FRAMES
  assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['clip.jsonl', 'clip.mp4']

  runs = {}
  frame_boxes = {t: [d['bbox']] for t, d in enumerate(detections[:FRAMES])}
  for name, params in (('none', None), ('one_euro', smoothing.OneEuroParams())):
    video.predict_video(predictor, clip, str(tmp_path / name), boxes=frame_boxes,
                        smoothing_params=params, progress=None)
    runs[name] = np.array([json.loads(line)['people'][0]['pose_3d'] for line in
                           (tmp_path / name / 'clip.jsonl').read_text().splitlines()])
  raw, smooth = runs.values()
  # Jitter: the mean joint displacement from frame to frame; spread: the joints' standard
  # deviation over the frames, which a shift of the mean is measured against (a low-pass
  # filter lags a drifting signal by a few frames, so the mean moves a little).
  jitter = [np.linalg.norm(np.diff(x, axis=0), axis=-1).mean() for x in (raw, smooth)]
  shift = np.linalg.norm(smooth.mean(0) - raw.mean(0), axis=-1).mean()
  spread = np.linalg.norm(raw.std(0), axis=-1).mean()
  print(f'3D jitter {jitter[0]:.2f} -> {jitter[1]:.2f} mm per frame; mean moved '
        f'{shift:.2f} mm against a spread of {spread:.2f} mm')
  assert jitter[1] < 0.5 * jitter[0]
  assert shift < 0.5 * spread
  np.testing.assert_allclose(raw[0], smooth[0])  # the first frame passes unchanged


def test_undecodable_frames_are_skipped_and_bad_files_named(predictor, tmp_path):
  frames, _ = _walk(frames=10)
  clip = tmp_path / 'clip.avi'
  writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*'MJPG'), 25.0, SIZE)
  for image in frames:
    writer.write(image[..., ::-1])
  writer.release()
  data = bytearray(clip.read_bytes())
  starts = [i for i in range(len(data) - 1) if data[i:i + 2] == b'\xff\xd8']
  assert len(starts) == 10
  data[starts[4]:starts[4] + 600] = bytes(600)  # frame 4's JPEG header
  clip.write_bytes(bytes(data))
  summary = video.predict_video(predictor, clip, str(tmp_path / 'out'), progress=None)
  assert summary['frames'] == 9 and summary['skipped'] == 1
  lines = [json.loads(line) for line in (tmp_path / 'out' / 'clip.jsonl').read_text()
           .splitlines()]
  assert [line['frame'] for line in lines] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
  # Without boxes every frame has its person; this network collapses its 2D (under
  # video.MIN_EXTENT_PX), so every frame loses the track and gets the whole-frame pass.
  assert all(len(line['people']) == 1 and line['people'][0]['box'] is None for line in lines)
  assert summary['lost'] == 9
  assert _frame_count(tmp_path / 'out' / 'clip.mp4') == 9

  with pytest.raises(FileNotFoundError, match='video .*missing.mp4 does not exist'):
    video.predict_video(predictor, tmp_path / 'missing.mp4', str(tmp_path))
  garbage = tmp_path / 'garbage.mp4'
  garbage.write_bytes(b'not a video' * 100)
  with pytest.raises(ValueError, match='cannot read video .*garbage.mp4'):
    video.predict_video(predictor, garbage, str(tmp_path / 'garbage'))
  assert not (tmp_path / 'garbage').exists() or not any((tmp_path / 'garbage').iterdir())


def test_a_track_whose_2d_spreads_past_4_times_the_frame_is_lost(predictor):
  frames, joints = _walk(frames=4)
  centre = (joints[1].min(0) + joints[1].max(0)) / 2
  # 2000 px across about the same centre, over 4 times the frame's 320: no box that large
  # may be posed.
  joints[1] = centre + (joints[1] - centre) * 2000 / np.ptp(joints[1], axis=0).max()
  tracker = video.Tracker(_TrueTwoD(predictor, frames, joints), SIZE, lost_confidence=0.5)
  boxes = [people[0]['box'] for *_, people in tracker((t, t / 25, f)
                                                      for t, f in enumerate(frames))]
  # Frame 1 is cropped on frame 0's 2D; its spread 2D loses the track, and frame 2 gets the
  # whole-frame pass.
  np.testing.assert_allclose(boxes[1], video.extent_box(joints[0]), atol=1e-9)
  assert tracker.lost == 1 and boxes[2] is None


def test_a_boxes_file_with_a_huge_box_is_refused_before_restoring(tmp_path):
  """``tmp_path`` has no checkpoint: the box is checked first, naming the file's entry."""
  frames, _ = _walk(frames=3)
  clip = tmp_path / 'clip.mp4'
  _write_mp4(clip, frames)
  boxes = tmp_path / 'boxes.json'
  boxes.write_text(json.dumps({'0': [[0, 0, 100, 100]], '2': [[0, 0, 100, 100],
                                                              [0, 0, 1e9, 1e9]]}))
  with pytest.raises(ValueError, match=r'of --boxes=.*boxes.json, box 1 of frame 2 of '
                                       r'.*clip.mp4 is larger than 4 times the image of size '
                                       r'320x240 .*expected w, h <= 1280 pixels'):
    run_main(predict, [f'--workdir={tmp_path}', f'--video={clip}', f'--boxes={boxes}',
                       f'--out={tmp_path / "out"}'])
  assert not (tmp_path / 'out').exists()
