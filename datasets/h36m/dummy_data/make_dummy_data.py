"""Writes this folder: a tiny fake Human3.6M in the release's own on-disk formats.

Run once from the repository root (the output is committed):
  PYTHONPATH=. python datasets/h36m/dummy_data/make_dummy_data.py

Official form: S<k>/Videos/<Sequence>.<camera>.mp4 (64×64 instead of 1000×1002, 12 frames
at 50 fps) with S<k>/MyPoseFeatures/D3_Positions_mono/<Sequence>.<camera>.cdf (variable
Pose, one record of (N, 96), mm). Preprocessed form: annotations.npz and images/. Both
share cameras.json. Faults the builder must handle: an _ALL video, the corrupt S11
Directions.54138969 (garbage here), pose files shorter and longer than their videos, a
truncated JPEG.
"""

import json
import pathlib

import cdflib.cdfwrite
import cv2
import numpy as np
from PIL import Image

from jaxpose import geometry
from jaxpose import skeleton

ROOT = pathlib.Path(__file__).parent
SIZE = 64
FRAMES = 12
FPS = 50
# (subject, sequence, camera, number of poses in the CDF).
VIDEOS = (
    ('S1', 'Directions 1', '54138969', FRAMES),
    ('S5', 'SittingDown 2', '55011271', 8),  # Poses end first: 2 of 3 kept frames.
    ('S6', 'TakingPhoto 1', '58860488', FRAMES + 2),  # Video ends first.
    ('S7', 'WalkingDog', '60457274', FRAMES),
    ('S8', 'WalkTogether 1', '54138969', FRAMES),
    ('S9', 'Photo 1', '55011271', FRAMES),
    ('S11', 'Greeting 2', '60457274', FRAMES),
)
# Standing pose, H36M-17, camera axes (x right, y down), facing the camera, mm.
POSE_17 = np.array([
    (0, 0, 0), (-130, 0, 0), (-130, 450, 0), (-130, 880, 0), (130, 0, 0), (130, 450, 0),
    (130, 880, 0), (0, -230, 0), (0, -480, 0), (0, -570, -40), (0, -700, 0),
    (170, -470, 0), (210, -200, 0), (230, 30, -30), (-170, -470, 0), (-210, -200, 0),
    (-230, 30, -30)], np.float64)


def camera(subject, cam):
  rng = np.random.default_rng(int(cam) + int(subject[1:]))
  f = 1145.0 * SIZE / 1000 + rng.uniform(-1, 1, 2)
  c = SIZE / 2 + rng.uniform(-1, 1, 2)
  return dict(f=f.reshape(2, 1).tolist(), c=c.reshape(2, 1).tolist(),
              k=[[0.0]] * 3, p=[[0.0]] * 2, R=np.eye(3).tolist(), T=[[0.0]] * 3,
              w=SIZE, h=SIZE, name=f'camera{cam}', id=cam)


def poses_17(n, seed):
  """(n, 17, 3) camera-frame poses, turning slowly, about 5 m in front of the camera."""
  rng = np.random.default_rng(seed)
  out = []
  for t in range(n):
    a = 0.1 * t
    turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    out.append(POSE_17 @ turn.T + (rng.uniform(-300, 300), 50, 5000 + 20 * t))
  return np.array(out)


def to_32(p17):
  """(n, 17, 3) → (n, 32, 3): the release's extra joints copy the one listed before."""
  p32 = np.zeros((len(p17), 32, 3))
  p32[:, skeleton.H36M_32_TO_17] = p17
  for j in range(32):
    if j not in skeleton.H36M_32_TO_17:
      p32[:, j] = p32[:, j - 1]
  return p32


def render(joints_2d, t):
  """A frame: a gradient that changes with t and the skeleton drawn on it."""
  y, x = np.mgrid[:SIZE, :SIZE]
  image = np.stack([x * 3, y * 3, np.full_like(x, 20 * t)], -1).astype(np.uint8)
  for child, parent in enumerate(skeleton.PARENTS):
    if parent >= 0:
      cv2.line(image, tuple(int(v) for v in joints_2d[child]),
               tuple(int(v) for v in joints_2d[parent]), (255, 255, 255), 1)
  return image


def write_video(path, frames):
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), FPS, (SIZE, SIZE))
  for frame in frames:
    writer.write(frame[..., ::-1])
  writer.release()


def write_cdf(path, p32):
  path.unlink(missing_ok=True)
  cdf = cdflib.cdfwrite.CDF(str(path))
  cdf.write_var({'Variable': 'Pose', 'Data_Type': cdflib.cdfwrite.CDF.CDF_FLOAT,
                 'Num_Elements': 1, 'Rec_Vary': True, 'Dim_Sizes': [len(p32), 96],
                 'Compress': 0},
                var_data=p32.reshape(1, len(p32), 96).astype(np.float32))
  cdf.close()


def main():
  cameras = {}
  for seed, (subject, sequence, cam, n_poses) in enumerate(VIDEOS):
    entry = cameras[f'{subject}_{cam}'] = camera(subject, cam)
    p17 = poses_17(max(n_poses, FRAMES), seed)
    uv = geometry.project(p17, np.ravel(entry['f']), np.ravel(entry['c']))
    videos = ROOT / subject / 'Videos'
    videos.mkdir(parents=True, exist_ok=True)
    write_video(videos / f'{sequence}.{cam}.mp4', [render(uv[t], t) for t in range(FRAMES)])
    cdf_dir = ROOT / subject / 'MyPoseFeatures' / 'D3_Positions_mono'
    cdf_dir.mkdir(parents=True, exist_ok=True)
    write_cdf(cdf_dir / f'{sequence}.{cam}.cdf', to_32(p17[:n_poses]))
  # Skipped unopened: the concatenation of all actions, and the known corrupt video.
  write_video(ROOT / 'S1' / 'Videos' / '_ALL 1.54138969.mp4',
              [np.zeros((SIZE, SIZE, 3), np.uint8)])
  (ROOT / 'S11' / 'Videos' / 'Directions.54138969.mp4').write_bytes(b'\x00 corrupt' * 10)
  cameras['S11_54138969'] = camera('S11', '54138969')
  (ROOT / 'cameras.json').write_text(json.dumps(cameras, indent=1))

  # Preprocessed form: two frames of S1, one of S9, one truncated JPEG of S11.
  records = []
  for subject, sequence, cam, t in (('S1', 'Directions 1', '54138969', 0),
                                    ('S1', 'Directions 1', '54138969', 5),
                                    ('S9', 'Photo 1', '55011271', 0),
                                    ('S11', 'Greeting 2', '60457274', 0)):
    seed = [v[0] for v in VIDEOS].index(subject)
    entry = cameras[f'{subject}_{cam}']
    p17 = poses_17(FRAMES, seed)[t]
    uv = geometry.project(p17, np.ravel(entry['f']), np.ravel(entry['c']))
    stem = f'{subject}_{sequence.replace(" ", "_")}.{cam}'
    name = f'{subject}/{stem}/{stem}_{t + 1:06d}.jpg'
    path = ROOT / 'images' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render(uv, t)).save(path, quality=90)
    if subject == 'S11':
      path.write_bytes(path.read_bytes()[:200])
    records.append((name, uv, p17))
  uv = np.array([r[1] for r in records])
  np.savez(
      ROOT / 'annotations.npz',
      imgname=np.array([r[0] for r in records]),
      center=(uv.min(1) + uv.max(1)) / 2,
      scale=(uv.max(1) - uv.min(1)).max(-1) * 1.2 / 200,
      part=np.concatenate([uv, np.ones((len(records), 17, 1))], -1),
      S=np.concatenate([np.array([r[2] for r in records]) / 1000.0,
                        np.ones((len(records), 17, 1))], -1))


if __name__ == '__main__':
  main()
