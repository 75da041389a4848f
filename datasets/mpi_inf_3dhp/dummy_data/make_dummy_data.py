"""Writes this folder: a tiny fake MPI-INF-3DHP in the release's own on-disk formats.

Run once from the repository root (the output is committed):
  PYTHONPATH=. python datasets/mpi_inf_3dhp/dummy_data/make_dummy_data.py

Training set: S1..S8/Seq1|Seq2 with annot.mat (MATLAB v5: cells of 14 cameras, (F, 56)
and (F, 84)), camera.calibration (14 cameras) and MJPEG videos of the default config's
cameras, 48×48 instead of 2048×2048, 2 frames (annotations have 3 rows). S1/Seq1 camera 0
has 12 frames and a corrupt frame 10. Beside each imageSequence video, FGmasks and
ChairMasks videos of the same frames, in the release's channels: FGmasks red bright on the
person (the skeleton drawn 5 px wide), green and blue (the clothing masks) dark;
ChairMasks red dark on the chair (a box under the pelvis), bright elsewhere. Test set: TS1..TS6 with annot_data.mat (MATLAB v7.3:
HDF5 with a MATLAB header, axes reversed), JPEG frames numbered from 1 (48×48 for TS1-4,
64×36 for TS5-6, one truncated in TS3), and fake .calib files in the real layout.
"""

import pathlib

import cv2
import h5py
import numpy as np
from PIL import Image
import scipy.io

from jaxpose import geometry
from jaxpose import skeleton

ROOT = pathlib.Path(__file__).parent
SIZE = 48
CAMERAS = (0, 1, 2, 4, 5, 6, 7, 8)
ANNOTATION_ROWS = 3
# The 28 joints of 3DHP standing, facing -z, y down, mm.
POSE_28 = np.array([
    (0, -350, 0), (0, -450, 0), (0, -250, 0), (0, -150, 0), (0, 0, 0), (0, -500, 0),
    (0, -600, -20), (0, -720, 0), (60, -480, 0), (170, -470, 0), (210, -200, 0),
    (230, 30, -30), (235, 100, -30), (-60, -480, 0), (-170, -470, 0), (-210, -200, 0),
    (-230, 30, -30), (-235, 100, -30), (130, 0, 0), (130, 450, 0), (130, 880, 0),
    (130, 920, -80), (130, 930, -150), (-130, 0, 0), (-130, 450, 0), (-130, 880, 0),
    (-130, 920, -80), (-130, 930, -150)], np.float64)
H36M_FROM_28 = skeleton.MPI_INF_3DHP_28_TO_17[skeleton.MPI_INF_3DHP_17_TO_H36M]


def turning(pose, t):
  a = 0.15 * t
  turn = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
  return pose @ turn.T


def draw_skeleton(image, uv_h36m, colour, width):
  for child, parent in enumerate(skeleton.PARENTS):
    if parent >= 0:
      cv2.line(image, tuple(int(v) for v in uv_h36m[child]),
               tuple(int(v) for v in uv_h36m[parent]), colour, width)
  return image


def render(uv_h36m, size, t):
  """A frame: a gradient that changes with t and the H36M-17 skeleton drawn on it."""
  w, h = size
  y, x = np.mgrid[:h, :w]
  image = np.stack([x * 4, y * 4, np.full_like(x, 30 * t)], -1).astype(np.uint8)
  return draw_skeleton(image, uv_h36m, (255, 255, 255), 1)


def person_mask(uv_h36m, size):
  """An FGmasks frame: red 255 on the person (the skeleton drawn 5 px wide), else 0."""
  return draw_skeleton(np.zeros((size, size, 3), np.uint8), uv_h36m, (255, 0, 0), 5)


def chair_mask(uv_h36m, size):
  """A ChairMasks frame: red 0 on the chair (a box below the pelvis), 255 elsewhere."""
  image = np.zeros((size, size, 3), np.uint8)
  image[..., 0] = 255
  x, y = (int(v) for v in uv_h36m[skeleton.ROOT])
  image[y + 2:y + 12, max(x - 8, 0):x + 8, 0] = 0
  return image


def look_at(angle):
  """World-to-camera R, t of a camera 4 m from the origin, at azimuth ``angle``."""
  centre = np.array([4000 * np.sin(angle), -300.0, -4000 * np.cos(angle)])
  z = -centre / np.linalg.norm(centre)
  x = np.cross([0.0, 1.0, 0.0], z)
  x /= np.linalg.norm(x)
  r = np.stack([x, np.cross(z, x), z])
  return r, -r @ centre


def avi_without_junk(data, corrupt_frame=None):
  """The AVI without its JUNK padding chunks (OpenCV pads the header to ~6 KB), and
  optionally with the payload of one video frame replaced by noise."""
  frames = [0]

  def chunks(d):
    out = b''
    offset = 0
    while offset < len(d):
      fourcc = d[offset:offset + 4]
      size = int.from_bytes(d[offset + 4:offset + 8], 'little')
      body = d[offset + 8:offset + 8 + size]
      offset += 8 + size + (size & 1)
      if fourcc == b'JUNK':
        continue
      if fourcc in (b'RIFF', b'LIST'):
        body = body[:4] + chunks(body[4:])
      elif fourcc == b'00dc':
        if frames[0] == corrupt_frame:
          body = np.random.default_rng(0).integers(0, 256, size, np.uint8).tobytes()
        frames[0] += 1
      out += fourcc + len(body).to_bytes(4, 'little') + body + b'\0' * (len(body) & 1)
    return out

  return chunks(data)


def write_avi(path, images, corrupt_frame=None):
  h, w = images[0].shape[:2]
  writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 25, (w, h))
  for image in images:
    writer.write(image[..., ::-1])
  writer.release()
  path.write_bytes(avi_without_junk(path.read_bytes(), corrupt_frame))


def cell(arrays):
  out = np.empty((len(arrays), 1), object)
  for i, a in enumerate(arrays):
    out[i, 0] = a
  return out


def write_training():
  rng = np.random.default_rng(0)
  for s in range(1, 9):
    for q in (1, 2):
      folder = ROOT / f'S{s}' / f'Seq{q}'
      (folder / 'imageSequence').mkdir(parents=True, exist_ok=True)
      long = (s, q) == (1, 1)
      rows = 13 if long else ANNOTATION_ROWS
      world = [turning(POSE_28, t) + (0, 100, rng.uniform(-200, 200)) for t in range(rows)]
      annot2, annot3, calibration = [], [], ['Skeletool Camera Calibration File V1.0']
      for camera in range(14):
        r, t = look_at(2 * np.pi * camera / 14)
        f = 1500.0 * SIZE / 2048 + rng.uniform(-1, 1, 2)
        c = SIZE / 2 + rng.uniform(-1, 1, 2)
        extrinsic = np.eye(4)
        extrinsic[:3, :3], extrinsic[:3, 3] = r, t
        calibration += [
            f'name          {camera}', '  sensor      10 10',
            f'  size        {SIZE} {SIZE}',
            '  animated    0',
            f'  intrinsic   {f[0]:.3f} 0 {c[0]:.3f} 0 0 {f[1]:.3f} {c[1]:.3f} 0 '
            '0 0 1 0 0 0 0 1 ',
            '  extrinsic   ' + ' '.join(f'{v:.6g}' for v in extrinsic.ravel()) + ' ',
            '  radial      0']
        if camera not in CAMERAS:  # Not read by the builder: left empty.
          annot2.append(np.zeros((rows, 56)))
          annot3.append(np.zeros((rows, 84)))
          continue
        # Whole mm and 1/8 px keep the fake .mat small when compressed.
        cam3 = np.round(np.array(world) @ r.T + t)
        uv = np.round(geometry.project(cam3, f, c) * 8) / 8
        annot2.append(uv.reshape(rows, 56))
        annot3.append(cam3.reshape(rows, 84))
        frames = 12 if long and camera == 0 else 2
        write_avi(folder / 'imageSequence' / f'video_{camera}.avi',
                  [render(uv[k, H36M_FROM_28], (SIZE, SIZE), k) for k in range(frames)],
                  corrupt_frame=10 if frames == 12 else None)
        for masks, draw in (('FGmasks', person_mask), ('ChairMasks', chair_mask)):
          (folder / masks).mkdir(exist_ok=True)
          write_avi(folder / masks / f'video_{camera}.avi',
                    [draw(uv[k, H36M_FROM_28], SIZE) for k in range(frames)])
      (folder / 'camera.calibration').write_text('\n'.join(calibration) + '\n')
      scipy.io.savemat(folder / 'annot.mat', dict(
          annot2=cell(annot2), annot3=cell(annot3), univ_annot3=cell(annot3),
          frames=np.arange(rows)[:, None], cameras=np.arange(14)[None]),
          do_compression=True)


def write_mat73(path, arrays):
  """An HDF5 file laid out as MATLAB writes v7.3 .mat files (512-byte header block)."""
  with h5py.File(path, 'w', userblock_size=512) as h5:
    for name, array in arrays.items():
      h5.create_dataset(name, data=array).attrs['MATLAB_class'] = np.bytes_('double')
  header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .'.ljust(116)
  with open(path, 'r+b') as f:
    f.write(header + b'\0' * 8 + b'\x00\x02IM')


def write_test():
  rng = np.random.default_rng(1)
  calib_dir = ROOT / 'mpi_inf_3dhp_test_set' / 'test_util' / 'camera_calibration'
  calib_dir.mkdir(parents=True, exist_ok=True)
  calibs = {
      'ts1-4cameras.calib': ((10, 10), 7.31, (-0.03, 0.09), (SIZE, SIZE), ''),
      'ts5-6cameras.calib': ((10, 5.625), 8.77, (-0.1, 0.1), (64, 36),
                             '\tcolorCorrection\n\t\tred   0 1 2 3\n\t\tgreen 0 1 2 3\n'
                             '\t\tblue  0 1 2 3\n'),
  }
  for name, (sensor, focal, offset, _, extra) in calibs.items():
    (calib_dir / name).write_text(
        'tc camera calibration v0.3\ncamera\t0\tfake\n' + extra +
        f'\tframe\t0\n\t\tsensorSize\t{sensor[0]}\t{sensor[1]}\t# in mm\n'
        f'\t\tfocalLength\t{focal}\t# in mm\n\t\tpixelAspect\t1.0\n'
        f'\t\tcenterOffset\t{offset[0]}\t{offset[1]}\t# in mm (positive values move right '
        'and down)\n\t\tdistortionModel\tOpenCV\n\t\tdistortion\t0.0 0.0 0.0 0.0 0.0\n'
        '\t\t\torigin\t0 0 0\n\t\t\tup\t0 1 0\n\t\t\tright\t1 0 0\n')
  for i in range(1, 7):
    name = 'ts1-4cameras.calib' if i <= 4 else 'ts5-6cameras.calib'
    sensor, focal, offset, size, _ = calibs[name]
    px_per_mm = np.array(size) / sensor
    f, c = focal * px_per_mm, np.array(size) / 2 + np.array(offset) * px_per_mm
    folder = ROOT / 'mpi_inf_3dhp_test_set' / f'TS{i}'
    (folder / 'imageSequence').mkdir(parents=True, exist_ok=True)
    n = 4
    pose = POSE_28[skeleton.MPI_INF_3DHP_28_TO_17]
    annot3 = np.round(np.array([turning(pose, t) + (rng.uniform(-300, 300), 100, 4500)
                                for t in range(n)]))
    root = annot3[:, 14:15]
    univ = root + 0.95 * (annot3 - root)
    annot2 = geometry.project(annot3, f, c)
    for t in range(n):
      path = folder / 'imageSequence' / f'img_{t + 1:06d}.jpg'
      Image.fromarray(render(annot2[t, skeleton.MPI_INF_3DHP_17_TO_H36M], size, t)).save(
          path, quality=90)
      if i == 3 and t == 1:
        path.write_bytes(path.read_bytes()[:200])
    write_mat73(folder / 'annot_data.mat', dict(
        annot2=annot2[:, None], annot3=annot3[:, None], univ_annot3=univ[:, None],
        valid_frame=np.array([[1.0], [1.0], [0.0], [1.0]]),
        activity_annotation=((np.arange(n) + i) % 7 + 1.0)[:, None]))


if __name__ == '__main__':
  write_training()
  write_test()
