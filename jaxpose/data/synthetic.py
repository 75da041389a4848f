"""Synthetic people: plausible H36M-17 poses rendered as shaded limbs, with exact labels.

Lets the quickstart train and evaluate with no download. A pose is drawn inside
anatomical joint limits on a per-subject skeleton (``synthetic_people``), placed 3–7 m in
front of a perspective camera with a ~1000 px frame, and rendered straight into its
stored crop (``jaxpose.data.crops``'s convention) with the crop's own intrinsics, so
projecting ``joints_3d`` with them gives ``joints_2d`` exactly.

The person's right limbs are dressed in warm colours and the left ones in cool colours
in both domains: a face and feet show which way such a simple body faces, but colour is
what tells its left from its right. Two domains mimic the paper's data mix: ``studio`` (plain
or green-screen backdrops, fixed lighting, one outfit per subject, everyday poses seen by
level cameras, like Human3.6M) and ``wild`` (random clutter, outfits, lighting, blur
and noise; activities, viewpoints, truncation and occlusion the studio lacks; for training,
2D labels of MPII's or LSP's joint sets with a human labeller's noise, like MPII/LSP).

  python -m jaxpose.data.synthetic --show 8 --out /tmp/synth
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jaxpose import geometry, skeleton, visualize
from jaxpose.data import crops
from jaxpose.data import synthetic_people as people

_J = skeleton.JOINT_INDEX


# --- Cameras -----------------------------------------------------------------------------

FRAME_SIZE = 1000            # px, square frames like Human3.6M's ~1000×1000
FOCAL_RANGE = (1.0, 1.5)     # × FRAME_SIZE
ROOT_DEPTH_RANGE = (3000.0, 7000.0)
ROOT_PIXEL_RANGE = (0.3, 0.7)  # where the root projects, × FRAME_SIZE


def sample_camera(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Full-frame focal (2,), principal point (2,) and the root's position (3,)."""
  focal = np.full(2, rng.uniform(*FOCAL_RANGE) * FRAME_SIZE)
  principal = FRAME_SIZE / 2 + rng.normal(0.0, 5.0, 2)
  depth = rng.uniform(*ROOT_DEPTH_RANGE)
  pixel = rng.uniform(*ROOT_PIXEL_RANGE, 2) * FRAME_SIZE
  return focal, principal, np.append((pixel - principal) / focal * depth, depth)


def crop_intrinsics(joints_3d: np.ndarray, focal: np.ndarray, principal: np.ndarray,
                    image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """Intrinsics of the stored crop (``jaxpose.data.crops``) of a person in a frame."""
  joints_2d = geometry.project(joints_3d, focal, principal)
  return _crop_of(joints_2d, np.ones(len(joints_2d), bool), focal, principal, image_size)[1:]


def _crop_of(points_2d, valid, focal, principal, image_size):
  """(matrix, focal, principal) of the stored crop around the frame pixels ``points_2d``
  that are ``valid``, as the benchmarks' builders cut it around their labels."""
  centre, side = crops.tight_box(points_2d, valid)
  matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, image_size)
  return (matrix, *geometry.transform_intrinsics(matrix, focal, principal))


# The studio's cameras stand level (Human3.6M's four at chest height); a photo in the wild
# looks down on a person more often than up, and is often tilted.
WILD_ELEVATION_RANGE = (-10.0, 45.0)  # degrees; + looks down on the person
WILD_ROLL_STD = 12.0                  # degrees, a normal truncated at ±35
# Wild photos whose edge cuts the person off (the part beyond is the crop's black
# padding), and the share of the person's extent the photo keeps.
TRUNCATED_SHARE = 0.25
TRUNCATION_KEPT = (0.45, 0.85)
# Wild photos where things in front of the person hide some of them (1 or 2 shapes, each
# side this share of the person's extent).
OCCLUDED_SHARE = 0.3
OCCLUDER_SIZE = (0.2, 0.45)


def wild_viewpoint(rng: np.random.Generator) -> np.ndarray:
  """(3, 3) rotation of a pose in the camera frame that a raised, tilted camera sees."""
  e = np.radians(rng.uniform(*WILD_ELEVATION_RANGE))
  r = np.radians(people.truncated_normal(rng, 0.0, WILD_ROLL_STD, -35.0, 35.0))
  # About the camera's x axis (+ brings the head towards a camera above), then its axis.
  elevation = np.array([[1, 0, 0], [0, np.cos(e), -np.sin(e)], [0, np.sin(e), np.cos(e)]])
  roll = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
  return roll @ elevation


def _truncation(rng: np.random.Generator, joints_2d: np.ndarray) -> tuple[np.ndarray, float]:
  """A photo edge across the person: its outward normal n (2,) and the share f of the
  joints' extent along n that stays in the photo (at least 6 joints)."""
  edges = ((0.0, 1.0), (0.0, -1.0), (-1.0, 0.0), (1.0, 0.0))  # bottom, top, left, right
  normal = np.array(edges[rng.choice(4, p=(0.5, 0.2, 0.15, 0.15))])
  along = joints_2d @ normal
  lo, hi = along.min(), along.max()
  kept = rng.uniform(*TRUNCATION_KEPT)
  kept = max(kept, (np.sort(along)[5] - lo) / (hi - lo) + 1e-3)
  return normal, kept


def _inside(points: np.ndarray, joints_2d: np.ndarray, edge) -> np.ndarray:
  """Which ``points`` (..., 2) the photo of ``edge`` (``_truncation``) keeps, the edge
  placed on ``joints_2d`` in the same pixels."""
  normal, kept = edge
  along = joints_2d @ normal
  return points @ normal < along.min() + kept * (along.max() - along.min())


# MPII's and LSP's labellers mark a hip at the outside of the hip, below and outside the
# joint centre that motion capture places (Human3.6M's): the label is the H36M hip moved
# outwards by HIP_LABEL_OUT × the pelvis-hip bone and down the thigh by HIP_LABEL_DOWN × its
# length. Neither dataset states its offset; these are our estimate.
HIP_LABEL_OUT = 0.25
HIP_LABEL_DOWN = 0.1
# Labellers' error: per coordinate, the std as a share of the person's extent in pixels;
# the hips, hidden under clothes, twice that.
LABEL_NOISE = 0.015
# The wild training images labelled like MPII, the rest like LSP (the paper's 2D data: MPII's
# ~25k people, LSP-extended's 10k and LSP's 1k).
MPII_SHARE = 0.7
LABEL_SETS = {'mpii': skeleton.MPII_TO_H36M, 'lsp': skeleton.LSP_TO_H36M}


def labeller_points(joints_3d: np.ndarray) -> np.ndarray:
  """(17, 3): where MPII's and LSP's labellers put each H36M-17 joint of a pose (the hips
  moved, the pelvis, MPII's, between them)."""
  points = np.array(joints_3d, np.float64)
  for side in 'lr':
    hip, knee = _J[f'{side}_hip'], _J[f'{side}_knee']
    points[hip] += (HIP_LABEL_OUT * (joints_3d[hip] - joints_3d[_J['pelvis']])
                    + HIP_LABEL_DOWN * (joints_3d[knee] - joints_3d[hip]))
  points[_J['pelvis']] = (points[_J['l_hip']] + points[_J['r_hip']]) / 2
  return points


def human_labels(rng: np.random.Generator, points_2d: np.ndarray, visible: np.ndarray,
                 label_set: str) -> tuple[np.ndarray, np.ndarray]:
  """(17, 2) labels and (17,) validity of ``labeller_points`` projected to ``points_2d``:
  written in ``label_set``'s joint order with a labeller's noise on the ``visible`` ones,
  then converted to H36M-17 as that dataset's builder converts it (``LABEL_SETS``)."""
  mapping = LABEL_SETS[label_set]
  present = mapping >= 0
  source = np.zeros((mapping.max() + 1, 2))
  source_valid = np.zeros(len(source), bool)
  source[mapping[present]] = points_2d[present]
  source_valid[mapping[present]] = visible[present]
  extent = np.max(points_2d.max(0) - points_2d.min(0))
  std = np.full(len(source), LABEL_NOISE * extent)
  std[mapping[[_J['l_hip'], _J['r_hip']]]] *= 2
  source += rng.normal(size=source.shape) * std[:, None]
  return skeleton.convert_joints(source, source_valid, mapping)


# --- Looks -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Lighting:
  to_light: np.ndarray  # unit vector from the surface towards the light, camera frame
  ambient: float
  diffuse: float
  tint: np.ndarray      # RGB gain


_STUDIO_LIGHT = _Lighting(to_light=np.array([-0.35, -0.55, -0.76]) / np.linalg.norm(
    [-0.35, -0.55, -0.76]), ambient=0.45, diffuse=0.6, tint=np.ones(3))


def _wild_lighting(rng: np.random.Generator) -> _Lighting:
  direction = rng.normal(size=3)
  direction[2] = -abs(direction[2]) - 0.3  # lit from the camera's side
  return _Lighting(to_light=direction / np.linalg.norm(direction),
                   ambient=rng.uniform(0.25, 0.6), diffuse=rng.uniform(0.35, 0.85),
                   tint=rng.uniform(0.8, 1.15, 3))


def _studio_background(rng: np.random.Generator, size: int) -> np.ndarray:
  kind = rng.integers(3)
  if kind == 0:    # green screen
    colour = people.hsv(rng.uniform(105, 140), rng.uniform(0.5, 0.8), rng.uniform(0.45, 0.75))
  elif kind == 1:  # light backdrop
    colour = rng.uniform(0.55, 0.9) * rng.uniform(0.95, 1.05, 3)
  else:            # dark room
    colour = rng.uniform(0.12, 0.35) * rng.uniform(0.9, 1.1, 3)
  # A soft vertical fall-off, as from ceiling lights.
  rows = 1.0 - rng.uniform(0.0, 0.2) * np.linspace(0.0, 1.0, size)
  column = np.clip(rows[:, None, None] * colour[None, None, :], 0, 1).astype(np.float32)
  return np.broadcast_to(column, (size, size, 3))


def _muted_colour(rng: np.random.Generator) -> tuple[int, int, int]:
  """An RGB colour of everyday scenes: mostly unsaturated, rarely vivid."""
  rgb = people.hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.8) ** 2, rng.uniform(0.1, 0.95))
  return tuple(int(c) for c in np.round(rgb * 255))


def _wild_background(rng: np.random.Generator, size: int) -> np.ndarray:
  cells = int(rng.integers(2, 6))
  base = np.array([[_muted_colour(rng) for _ in range(cells)] for _ in range(cells)], np.uint8)
  image = Image.fromarray(base).resize((size, size), Image.Resampling.BILINEAR)
  draw = ImageDraw.Draw(image)
  for _ in range(int(rng.integers(4, 16))):
    colour = _muted_colour(rng)
    x0, y0, w, h = (rng.uniform((-0.2, -0.2, 0.05, 0.05), (1.0, 1.0, 0.6, 0.6)) * size).tolist()
    kind = rng.integers(4)
    if kind == 0:
      draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
    elif kind == 1:
      draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
    elif kind == 2:
      points = rng.uniform(-0.1, 1.1, (int(rng.integers(3, 6)), 2)) * size
      draw.polygon([tuple(p) for p in points.tolist()], fill=colour)
    else:
      draw.line((x0, y0, x0 + w, y0 + h), fill=colour, width=int(rng.integers(1, 8)))
  background = np.asarray(image, np.float32) * (1 / 255)
  if rng.random() < 0.5:
    # A periodic texture (fabric, tiles, blinds) over the clutter.
    angle, period = rng.uniform(0, np.pi), rng.uniform(3, 30)
    coords = np.arange(size, dtype=np.float32) * (2 * np.pi / period)
    wave = np.sin(coords[None, :] * float(np.cos(angle))
                  + coords[:, None] * float(np.sin(angle)))
    background += (rng.uniform(0.05, 0.15) * wave)[..., None]
  return np.minimum(np.maximum(background, 0.0), 1.0)


# --- Rendering ---------------------------------------------------------------------------

class _Canvas:
  """A z-buffered, anti-aliased rasteriser of shaded capsules and spheres."""

  def __init__(self, background: np.ndarray, focal: np.ndarray, principal: np.ndarray,
               lighting: _Lighting):
    size = background.shape[0]
    self.rgb = np.array(background, np.float32)
    self.depth = np.full((size, size), np.inf, np.float32)
    self.cover = np.zeros((size, size), np.float32)
    self.focal, self.principal, self.lighting = focal, principal, lighting
    self._pixels = np.arange(size, dtype=np.float32) + 0.5  # pixel centres
    half = lighting.to_light - np.array([0.0, 0.0, 1.0])  # towards the light and the eye
    # Python floats keep the per-pixel arithmetic in float32.
    self._to_light = [float(x) for x in lighting.to_light]
    self._half = [float(x) for x in half / np.linalg.norm(half)]
    self._tint = lighting.tint.astype(np.float32)
    self._f = float(focal.mean())

  def _project(self, point: np.ndarray) -> tuple[float, float]:
    u, v = point[:2] / point[2] * self.focal + self.principal
    return float(u), float(v)

  def _window(self, x0: float, y0: float, x1: float, y1: float):
    size = len(self._pixels)
    x0, y0 = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
    x1, y1 = min(int(np.ceil(x1)) + 1, size), min(int(np.ceil(y1)) + 1, size)
    if x0 >= x1 or y0 >= y1:
      return None
    return slice(y0, y1), slice(x0, x1)

  def _shade(self, nx, ny, nz, colour: np.ndarray) -> np.ndarray:
    (lx, ly, lz), (hx, hy, hz) = self._to_light, self._half
    shade = np.maximum(nx * lx + ny * ly + nz * lz, 0.0)
    shade *= self.lighting.diffuse
    shade += self.lighting.ambient
    gloss = np.maximum(nx * hx + ny * hy + nz * hz, 0.0)
    for _ in range(4):  # ** 16, by squaring (np.power would not special-case it)
      gloss *= gloss
    gloss *= 0.15
    colour = np.asarray(colour * self._tint, np.float32)
    return colour * shade[..., None] + gloss[..., None]

  def _composite(self, window, cover, depth, colour):
    old_depth = self.depth[window]
    visible = depth < old_depth
    alpha = np.where(visible, cover, np.float32(0))
    rgb = self.rgb[window]
    colour -= rgb
    colour *= alpha[..., None]
    rgb += colour
    np.copyto(old_depth, depth, where=visible & (cover >= 0.5))
    np.maximum(self.cover[window], alpha, out=self.cover[window])

  def capsule(self, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float,
              colour: np.ndarray) -> None:
    """A cone with spherical ends (radii in mm) between two camera-frame points."""
    (ax, ay), (bx, by) = self._project(p0), self._project(p1)
    z0, z1 = float(p0[2]), float(p1[2])
    ra, rb = self._f * r0 / z0, self._f * r1 / z1
    reach = max(ra, rb) + 0.5
    window = self._window(min(ax, bx) - reach, min(ay, by) - reach,
                          max(ax, bx) + reach, max(ay, by) + reach)
    if window is None:
      return
    px = self._pixels[window[1]] - ax
    py = self._pixels[window[0]] - ay
    abx, aby = bx - ax, by - ay
    inv = 1.0 / max(abx * abx + aby * aby, 1e-6)
    t = np.add.outer(py * (aby * inv), px * (abx * inv))
    np.minimum(np.maximum(t, 0.0, out=t), 1.0, out=t)
    dx = px - t * abx
    dy = py[:, None] - t * aby
    dist = np.hypot(dx, dy)
    radius = t * (rb - ra)
    radius += ra
    cover = radius - dist
    np.minimum(np.maximum(cover + 0.5, 0.0, out=cover), 1.0, out=cover)
    inv_radius = 1.0 / radius
    across = np.minimum(dist * inv_radius, 1.0)
    bulge = np.sqrt(1.0 - across * across)
    depth = t * (z1 - z0)
    depth += z0
    depth -= (t * (r1 - r0) + r0) * bulge
    # The surface normal: (dx, dy) / radius across the axis, -bulge towards the camera.
    dx *= inv_radius
    dy *= inv_radius
    self._composite(window, cover, depth, self._shade(dx, dy, -bulge, colour))

  def sphere(self, centre: np.ndarray, radius: float, paint) -> None:
    """A sphere coloured by ``paint(normals (h, w, 3)) -> (h, w, 3) RGB``."""
    cx, cy = self._project(centre)
    reach = self._f * radius / float(centre[2])
    window = self._window(cx - reach, cy - reach, cx + reach, cy + reach)
    if window is None:
      return
    px = self._pixels[window[1]][None, :]
    py = self._pixels[window[0]][:, None]
    cover = np.sqrt((px - cx) ** 2 + (py - cy) ** 2)
    cover = np.minimum(np.maximum(reach - cover + 0.5, 0.0), 1.0)
    # Where each pixel's ray first meets the sphere.
    (fx, fy), (ux, uy) = self.focal.tolist(), self.principal.tolist()
    ox, oy, oz = centre.tolist()
    rx = np.broadcast_to((px - ux) / fx, cover.shape)
    ry = np.broadcast_to((py - uy) / fy, cover.shape)
    along = rx * ox + ry * oy + oz
    ray2 = rx * rx + ry * ry + 1.0
    disc = np.maximum(along * along - ray2 * (ox * ox + oy * oy + oz * oz - radius * radius),
                      0.0)
    depth = (along - np.sqrt(disc)) / ray2
    normal = np.stack([rx * depth - ox, ry * depth - oy, depth - oz], axis=-1) / radius
    colour = self._shade(normal[..., 0], normal[..., 1], normal[..., 2], paint(normal))
    self._composite(window, cover, depth, colour)


def _draw_person(canvas: _Canvas, joints: np.ndarray, frames: dict, subject: people.Subject,
                 outfit: dict) -> None:
  """Body parts as (depth, draw) pairs, drawn far to near (the z-buffer settles the rest)."""
  j = {name: joints[i] for name, i in _J.items()}
  k = subject.build
  parts = []

  def capsule(p0, p1, r0, r1, colour):
    parts.append(((p0[2] + p1[2]) / 2, lambda: canvas.capsule(p0, p1, r0, r1, colour)))

  chest = j['thorax'] + 0.35 * (j['spine'] - j['thorax'])
  capsule(j['pelvis'], j['spine'], 100 * k, 100 * k, outfit['torso'])
  capsule(j['spine'], chest, 100 * k, 105 * k, outfit['torso'])
  capsule(j['l_hip'], j['r_hip'], 92 * k, 92 * k, outfit['pelvis'])
  for side in ('l', 'r'):
    shoulder, hip = j[f'{side}_shoulder'], j[f'{side}_hip']
    capsule(shoulder + 0.15 * (j['thorax'] - shoulder), hip + 0.2 * (j['pelvis'] - hip),
            60 * k, 70 * k, outfit['torso'])
    capsule(j[f'{side}_shoulder'], j[f'{side}_elbow'], 58 * k, 46 * k,
            outfit[f'{side}_upper_arm'])
    capsule(j[f'{side}_elbow'], j[f'{side}_wrist'], 46 * k, 37 * k, outfit[f'{side}_forearm'])
    capsule(j[f'{side}_hip'], j[f'{side}_knee'], 80 * k, 62 * k, outfit[f'{side}_thigh'])
    capsule(j[f'{side}_knee'], j[f'{side}_ankle'], 60 * k, 45 * k, outfit[f'{side}_shank'])
    forearm, shank = frames[f'{side}_forearm'], frames[f'{side}_shank']
    wrist = j[f'{side}_wrist']
    capsule(wrist, wrist - 85 * forearm[:, 1], 38, 33, subject.skin)
    sole = j[f'{side}_ankle'] - 55 * shank[:, 1]
    capsule(sole - 40 * shank[:, 2], sole + 140 * shank[:, 2], 42, 36, outfit['shoes'])

  head_frame = frames['head']
  radius = 0.8 * np.linalg.norm(j['head'] - j['neck'])
  centre = j['head'] - radius * head_frame[:, 1] - 0.1 * radius * head_frame[:, 2]
  capsule(j['thorax'], centre, 48 * k, 45 * k, subject.skin)
  eyes = [head_frame @ np.array([s * 0.35, 0.15, 0.92]) for s in (-1, 1)]
  eyes = [e / np.linalg.norm(e) for e in eyes]

  def paint_head(normal):
    up, front = normal @ head_frame[:, 1], normal @ head_frame[:, 2]
    hair = (front < -0.15) | (up > 0.5)
    colour = np.where(hair[..., None], subject.hair, subject.skin)
    eye = (normal @ eyes[0] > 0.985) | (normal @ eyes[1] > 0.985)
    return np.where(eye[..., None], 0.1, colour)

  parts.append((centre[2], lambda: canvas.sphere(centre, radius, paint_head)))
  for _, draw in sorted(parts, key=lambda part: -part[0]):
    draw()


# Sensor noise is cut from one fixed bank: drawing fresh normals per image would cost
# more than rendering it.
_NOISE_BANK = np.random.default_rng((people.SEED, 2)).standard_normal((512, 512, 3), np.float32)


def _degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
  """Camera faults of photos in the wild: exposure, contrast, blur and noise."""
  image = (image - 0.5) * rng.uniform(0.7, 1.2) + (0.5 + rng.uniform(-0.12, 0.12))
  blur = rng.uniform(0.0, 1.2)
  if blur > 0.3:
    pil = Image.fromarray(np.round(np.minimum(np.maximum(image, 0.0), 1.0) * 255)
                          .astype(np.uint8))
    # A box blur: to the eye like a Gaussian at these radii, at a third of the cost.
    image = np.asarray(pil.filter(ImageFilter.BoxBlur(blur)), np.float32) * (1 / 255)
  size = image.shape[0]
  y, x = rng.integers(0, len(_NOISE_BANK) - size + 1, 2)
  return image + rng.uniform(0.0, 0.04) * _NOISE_BANK[y:y + size, x:x + size]


def _occlude(rng: np.random.Generator, canvas: _Canvas, joints_2d: np.ndarray) -> None:
  """Things in front of the person: one or two flat shapes of scene colours over the joints'
  box, taken out of the person's cover."""
  size = canvas.rgb.shape[0]
  lo, hi = joints_2d.min(0), joints_2d.max(0)
  extent = float(np.max(hi - lo))
  shapes = Image.new('L', (size, size))
  draw = ImageDraw.Draw(shapes)
  for _ in range(int(rng.integers(1, 3))):
    centre = lo + rng.uniform(0.0, 1.0, 2) * (hi - lo)
    half = rng.uniform(*OCCLUDER_SIZE, 2) * extent / 2
    box = tuple((centre - half).tolist() + (centre + half).tolist())
    (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=255)
  cover = np.asarray(shapes, np.float32)[..., None] * (1 / 255)
  colour = np.array(_muted_colour(rng), np.float32) * (1 / 255)
  # A vertical shading, as lit from above.
  shade = np.linspace(1.1, 0.8, size, dtype=np.float32)[:, None, None]
  canvas.rgb += (colour * shade - canvas.rgb) * cover
  canvas.cover *= 1 - cover[..., 0]


# --- Splits and examples -----------------------------------------------------------------

TRAIN_SUBJECTS = tuple(range(0, 40))
# The first test subjects were looked at while the quickstart was tuned (configs/synthetic.py):
# they are the validation subjects now, their studio split example for example, and the test
# splits have fresh subjects and draws of their own.
VALIDATION_SUBJECTS = tuple(range(40, 50))
TEST_SUBJECTS = tuple(range(50, 60))


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  domain: str        # 'studio' or 'wild'
  role: str          # 'train', 'validation' or 'test'
  labels_3d: bool    # whether examples carry 3D joints and intrinsics (and exact 2D)
  subjects: tuple[int, ...]
  stream: int        # which random stream draws it; a new split takes a new one


SPLITS = {
    'studio_train': SplitSpec('studio', 'train', True, TRAIN_SUBJECTS, 0),
    'wild_train': SplitSpec('wild', 'train', False, TRAIN_SUBJECTS, 1),
    'studio_val': SplitSpec('studio', 'validation', True, VALIDATION_SUBJECTS, 2),
    'wild_val': SplitSpec('wild', 'validation', True, VALIDATION_SUBJECTS, 3),
    'studio_test': SplitSpec('studio', 'test', True, TEST_SUBJECTS, 4),
    'wild_test': SplitSpec('wild', 'test', True, TEST_SUBJECTS, 5),
}
_SPLIT_NAMES = tuple(SPLITS)


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
  """A rendered example with everything known about it."""
  image: np.ndarray      # (S, S, 3) uint8
  mask: np.ndarray       # (S, S) bool, the person's visible pixels
  joints_2d: np.ndarray  # (17, 2) crop pixels, the exact projection of joints_3d
  joints_3d: np.ndarray  # (17, 3) camera frame, also where make_example withholds it
  labels_2d: np.ndarray  # (17, 2) the split's 2D labels: joints_2d, or a labeller's
  labels_valid: np.ndarray  # (17,) bool
  focal: np.ndarray      # (2,) crop intrinsics
  principal: np.ndarray  # (2,)
  subject: people.Subject
  angles: dict
  activity: str          # a key of people.WILD_ACTIVITIES; '' in the studio
  label_set: str         # 'h36m' (exact, all 17 joints), 'mpii' or 'lsp'


def render_sample(split: str, index: int, image_size: int = 192) -> Sample:
  """Renders example ``index`` of ``split`` (deterministic in both)."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {_SPLIT_NAMES}, got {split!r}')
  if index < 0:
    raise ValueError(f'index must be >= 0, got {index}')
  if not 16 <= image_size <= 512:
    raise ValueError(f'image_size must be in [16, 512], got {image_size}')
  spec = SPLITS[split]
  rng = np.random.default_rng((people.SEED, 0, spec.stream, index))
  subject = people.make_subject(int(rng.choice(spec.subjects)))
  if spec.domain == 'studio':
    activity = ''
    angles, pose, frames = people.sample_pose(rng, subject.bone_lengths)
  else:
    activity, angles, pose, frames = people.sample_wild_pose(rng, subject.bone_lengths)
  frame_focal, frame_principal, root = sample_camera(rng)
  if spec.domain == 'studio':
    joints_3d = pose + root
    focal, principal = crop_intrinsics(joints_3d, frame_focal, frame_principal, image_size)
    canvas = _Canvas(_studio_background(rng, image_size), focal, principal, _STUDIO_LIGHT)
    _draw_person(canvas, joints_3d, frames, subject, subject.outfit)
    image = canvas.rgb
    joints_2d = geometry.project(joints_3d, focal, principal)
    labels, valid, label_set = joints_2d, np.ones(skeleton.NUM_JOINTS, bool), 'h36m'
  else:
    view = wild_viewpoint(rng)
    joints_3d = pose @ view.T + root
    frames = {k: view @ v for k, v in frames.items()}
    frame_2d = geometry.project(joints_3d, frame_focal, frame_principal)
    edge = _truncation(rng, frame_2d) if rng.random() < TRUNCATED_SHARE else None
    if spec.labels_3d:  # exact labels of every joint, as MPI-INF-3DHP's test set has
      label_set = 'h36m'
      matrix, focal, principal = _crop_of(frame_2d, np.ones(len(frame_2d), bool),
                                          frame_focal, frame_principal, image_size)
    else:
      label_set = 'mpii' if rng.random() < MPII_SHARE else 'lsp'
      points = geometry.project(labeller_points(joints_3d), frame_focal, frame_principal)
      visible = (np.ones(len(points), bool) if edge is None
                 else _inside(points, frame_2d, edge))
      frame_labels, valid = human_labels(rng, points, visible, label_set)
      matrix, focal, principal = _crop_of(frame_labels, valid, frame_focal, frame_principal,
                                          image_size)
    canvas = _Canvas(_wild_background(rng, image_size), focal, principal, _wild_lighting(rng))
    _draw_person(canvas, joints_3d, frames, subject, people.outfit(rng))
    joints_2d = geometry.project(joints_3d, focal, principal)
    if rng.random() < OCCLUDED_SHARE:
      _occlude(rng, canvas, joints_2d)
    image = _degrade(rng, canvas.rgb)
    if spec.labels_3d:
      labels, valid = joints_2d, np.ones(skeleton.NUM_JOINTS, bool)
    else:
      labels = geometry.apply_affine(matrix, frame_labels)
    if edge is not None:
      pixels = np.arange(image_size) + 0.5
      grid = np.stack(np.meshgrid(pixels, pixels), -1)
      kept = _inside(grid, joints_2d, edge)
      image = image * kept[..., None]
      canvas.cover *= kept
  image = np.minimum(np.maximum(image, 0.0), 1.0)
  image *= 255
  image += 0.5  # rounds as astype truncates
  return Sample(
      image=image.astype(np.uint8),
      mask=canvas.cover >= 0.5,
      joints_2d=joints_2d, joints_3d=joints_3d,
      labels_2d=labels, labels_valid=valid,
      focal=focal, principal=principal,
      subject=subject, angles=angles, activity=activity, label_set=label_set)


def exit_with_parent() -> None:
  """Initialiser of a render worker: ends it once the process that started it is gone. A
  parent killed with SIGKILL cannot shut its pool down, and the workers would wait for work
  forever."""
  parent = os.getppid()

  def watch():
    while os.getppid() == parent:
      time.sleep(1.0)
    os._exit(1)  # pylint: disable=protected-access

  threading.Thread(target=watch, name='exit_with_parent', daemon=True).start()


def make_example(split: str, index: int, image_size: int = 192) -> dict:
  """Example ``index`` of ``split`` in ``jaxpose.data.features.example_features()`` form."""
  sample = render_sample(split, index, image_size)
  spec = SPLITS[split]

  def known(x):  # wild_train plays 2D-only data in the wild: no 3D, no intrinsics
    return np.asarray(x if spec.labels_3d else np.zeros_like(x), np.float32)

  return dict(
      image=sample.image,
      joints_2d=sample.labels_2d.astype(np.float32),
      joints_2d_valid=sample.labels_valid,
      joints_3d=known(sample.joints_3d),
      has_3d=spec.labels_3d,
      intrinsics=dict(focal=known(sample.focal), principal=known(sample.principal)),
      has_intrinsics=spec.labels_3d,
      subject=sample.subject.name,
      sequence=split,
      action=sample.activity,
      scene=spec.domain,
      camera='',
      frame=index,
  )


# --- Command line ------------------------------------------------------------------------

def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--show', type=int, default=8, help='samples per domain')
  parser.add_argument('--out', type=pathlib.Path, required=True, help='output folder')
  parser.add_argument('--image_size', type=int, default=192)
  args = parser.parse_args(argv)
  if args.show < 1:
    parser.error(f'--show must be >= 1, got {args.show}')
  images = []
  for split in ('studio_train', 'wild_train', 'wild_val'):
    for index in range(args.show):
      sample = render_sample(split, index, args.image_size)
      images.append(visualize.draw_skeleton_2d(sample.image, sample.labels_2d,
                                               sample.labels_valid))
  args.out.mkdir(parents=True, exist_ok=True)
  path = args.out / 'synthetic_samples.png'
  Image.fromarray(visualize.image_grid(images, cols=args.show)).save(path)
  print(f'wrote {path}')


if __name__ == '__main__':
  main()
