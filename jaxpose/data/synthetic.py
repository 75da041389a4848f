"""Synthetic people: plausible H36M-17 poses rendered as shaded limbs, with exact labels.

Lets the quickstart train and evaluate with no download. A pose is drawn inside
anatomical joint limits (``JOINT_LIMITS``) on a per-subject skeleton, placed 3–7 m in
front of a perspective camera with a ~1000 px frame, and rendered straight into its
stored crop (``jaxpose.data.crops``'s convention) with the crop's own intrinsics, so
projecting ``joints_3d`` with them gives ``joints_2d`` exactly.

The person's right limbs are dressed in warm colours and the left ones in cool colours
in both domains: a face and feet show which way such a simple body faces, but colour is
what tells its left from its right. Two domains mimic the paper's data mix: ``studio`` (plain or green-screen
backdrops, fixed lighting, one outfit per subject, like Human3.6M) and ``wild`` (random
clutter, outfits, lighting, blur and noise, like MPII/LSP).

  python -m jaxpose.data.synthetic --show 8 --out /tmp/synth
"""

from __future__ import annotations

import argparse
import colorsys
import dataclasses
import functools
import os
import pathlib
import threading
import time
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from jaxpose import geometry, skeleton, visualize
from jaxpose.data import crops

_J = skeleton.JOINT_INDEX
_SEED = 20190616  # any fixed number; changing it changes every dataset

# --- Skeletons ---------------------------------------------------------------------------

# Mean bone lengths of the four real Human3.6M frames in the MMPose test fixtures (S1, S5,
# S7, S8; their `S` joints), in skeleton.BONES order; H36M's skeletons are left/right
# symmetric.
TEMPLATE_BONE_LENGTHS = np.array([
    133.7, 443.0, 443.3,  # pelvis-r_hip, r_hip-r_knee, r_knee-r_ankle
    133.7, 443.0, 443.3,  # pelvis-l_hip, l_hip-l_knee, l_knee-l_ankle
    236.3, 254.4,         # pelvis-spine, spine-thorax
    116.5, 115.0,         # thorax-neck, neck-head
    150.8, 277.2, 248.0,  # thorax-l_shoulder, l_shoulder-l_elbow, l_elbow-l_wrist
    150.8, 277.2, 248.0,  # thorax-r_shoulder, r_shoulder-r_elbow, r_elbow-r_wrist
])
# A subject is the template times one height factor times one factor per bone pair (the
# same for both sides).
HEIGHT_SCALE = (0.88, 1.12)
BONE_JITTER = 0.06

_BONE_GROUPS = [name.replace('l_', '').replace('r_', '') for name in skeleton.BONE_NAMES]
_BONE_GROUP_INDEX = np.unique(_BONE_GROUPS, return_inverse=True)[1]


def bone_length_bounds() -> tuple[np.ndarray, np.ndarray]:
  """(16,) least and greatest length of each bone over all synthetic subjects."""
  return (TEMPLATE_BONE_LENGTHS * HEIGHT_SCALE[0] * (1 - BONE_JITTER),
          TEMPLATE_BONE_LENGTHS * HEIGHT_SCALE[1] * (1 + BONE_JITTER))


@dataclasses.dataclass(frozen=True, eq=False)
class Subject:
  """A synthetic person: proportions and the looks that stay with them."""
  index: int
  bone_lengths: np.ndarray  # (16,) in skeleton.BONES order
  build: float              # limb thickness relative to an average build
  skin: np.ndarray          # RGB in [0, 1]
  hair: np.ndarray
  outfit: dict              # part name → RGB: what they wear in the studio

  @property
  def name(self) -> str:
    return f'synth_{self.index:03d}'


_SKIN_TONES = np.array([(0.98, 0.84, 0.72), (0.93, 0.75, 0.61), (0.84, 0.63, 0.48),
                        (0.70, 0.50, 0.36), (0.53, 0.36, 0.24), (0.38, 0.25, 0.17)])
_HAIR_COLOURS = np.array([(0.08, 0.06, 0.05), (0.22, 0.13, 0.07), (0.42, 0.27, 0.13),
                          (0.72, 0.56, 0.33), (0.55, 0.53, 0.50)])


@functools.lru_cache(maxsize=None)
def make_subject(index: int) -> Subject:
  """The synthetic subject ``index`` (deterministic)."""
  if index < 0:
    raise ValueError(f'index must be >= 0, got {index}')
  rng = np.random.default_rng((_SEED, 1, index))
  height = rng.uniform(*HEIGHT_SCALE)
  jitter = rng.uniform(1 - BONE_JITTER, 1 + BONE_JITTER, _BONE_GROUP_INDEX.max() + 1)
  skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05)
  return Subject(
      index=index,
      bone_lengths=TEMPLATE_BONE_LENGTHS * height * jitter[_BONE_GROUP_INDEX],
      build=float(rng.uniform(0.85, 1.2)),
      skin=np.clip(skin, 0, 1),
      hair=_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))],
      outfit=_outfit(rng))


# --- Poses -------------------------------------------------------------------------------
# Angles are in degrees. Segment frames have axes (left, up, forward) of the person; a
# neutral pose stands upright, arms hanging, facing the camera.

_LIMB_LIMITS = {
    'hip_flexion': (-20.0, 115.0),        # thigh forwards (+) or backwards
    'hip_abduction': (-15.0, 45.0),       # thigh outwards (+) or across the midline
    'hip_rotation': (-30.0, 40.0),        # external (+): the knee turns outwards
    'knee_flexion': (0.0, 140.0),         # the shank swings backwards only
    'shoulder_elevation': (0.0, 170.0),   # upper arm's angle from hanging down
    'shoulder_plane': (-40.0, 130.0),     # direction it rises in: 0 sideways, 90 forwards
    'shoulder_rotation': (-70.0, 90.0),   # external (+) rotation of the upper arm
    'elbow_flexion': (0.0, 145.0),        # the forearm swings to the upper arm's front only
}
# Every angle of a pose and its (least, greatest) value.
JOINT_LIMITS = {
    'yaw': (-180.0, 180.0),               # the whole body about the vertical; 0 faces the camera
    'pitch': (-15.0, 15.0),               # the whole body leaning forwards (+)
    'roll': (-10.0, 10.0),                # ... and to its right (+)
    'spine_flexion': (-20.0, 60.0),       # bending forwards, shared by both spine bones
    'spine_lateral': (-25.0, 25.0),       # bending to the left (+)
    'spine_twist': (-35.0, 35.0),         # shoulders turning to the left (+)
    'neck_flexion': (-35.0, 50.0),
    'neck_lateral': (-30.0, 30.0),
    'neck_twist': (-60.0, 60.0),
    **{f'{side}_{name}': limits for side in ('l', 'r') for name, limits in _LIMB_LIMITS.items()},
}

# The rest directions of the bones that are not limbs, in their segment's frame, from the
# same four Human3.6M frames: the upper spine leans ~10° forwards, the neck/nose joint
# sits ~35° forwards of vertical above the thorax, the head top ~30° behind vertical above
# it, and the shoulders ~20° below the horizontal through the thorax.
_UP = np.array([0.0, 1.0, 0.0])
_DOWN = -_UP


def _unit_in_sagittal_plane(degrees_forward: float) -> np.ndarray:
  a = np.radians(degrees_forward)
  return np.array([0.0, np.cos(a), np.sin(a)])


_UPPER_SPINE = _unit_in_sagittal_plane(10.0)
_NECK = _unit_in_sagittal_plane(35.0)
_HEAD = _unit_in_sagittal_plane(-30.0)
_SHOULDER_DROP = np.radians(20.0)

# The camera frame is (x right, y down, z forward); a person facing the camera has their
# left on the image's right, up along -y and their front along -z.
_BODY_TO_CAMERA = np.diag([1.0, -1.0, -1.0])
_SIDES = (('l', 1.0), ('r', -1.0))


def _rotation(axis: int, degrees: float) -> np.ndarray:
  """Right-handed rotation about axis 0 (left), 1 (up) or 2 (forward)."""
  c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
  i, j = ((1, 2), (2, 0), (0, 1))[axis]
  m = np.eye(3)
  m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
  return m


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
  k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
  return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _arm_swing(elevation: float, plane: float, side: float) -> np.ndarray:
  """The least rotation taking a hanging arm to ``elevation`` in ``plane``."""
  e, p = np.radians(elevation), np.radians(plane)
  # (-up) × (the arm's direction), normalised.
  return _axis_angle(np.array([-np.sin(p), 0.0, side * np.cos(p)]), e)


def forward_kinematics(angles: dict, bone_lengths: np.ndarray) -> tuple[np.ndarray, dict]:
  """The pose that ``angles`` give a skeleton.

  Args:
    angles: a value for every key of ``JOINT_LIMITS``.
    bone_lengths: (16,) in ``skeleton.BONES`` order.

  Returns:
    (17, 3) root-relative joints, and each segment's rotation (its local axes as columns:
    left, up, forward) keyed 'pelvis', 'thorax', 'head', '<side>_shank', '<side>_forearm';
    both in camera axes.
  """
  missing = set(JOINT_LIMITS) - set(angles)
  if missing:
    raise ValueError(f'angles lacks {sorted(missing)}')
  lengths = np.asarray(bone_lengths, np.float64)
  if lengths.shape != (skeleton.NUM_BONES,):
    raise ValueError(f'bone_lengths must have shape ({skeleton.NUM_BONES},), got {lengths.shape}')
  a = angles
  joints = np.zeros((skeleton.NUM_JOINTS, 3))
  frames = {}

  def attach(child, parent, frame, direction):
    # Bone b ends at joint b + 1 (skeleton.BONES is ordered by child).
    joints[child] = joints[parent] + frame @ direction * lengths[child - 1]

  pelvis = _rotation(1, a['yaw']) @ _rotation(0, a['pitch']) @ _rotation(2, a['roll'])
  half_spine = (_rotation(0, a['spine_flexion'] / 2) @ _rotation(2, -a['spine_lateral'] / 2)
                @ _rotation(1, a['spine_twist'] / 2))
  lower_spine = pelvis @ half_spine
  thorax = lower_spine @ half_spine
  head = (thorax @ _rotation(0, a['neck_flexion']) @ _rotation(2, -a['neck_lateral'])
          @ _rotation(1, a['neck_twist']))
  attach(_J['spine'], _J['pelvis'], lower_spine, _UP)
  attach(_J['thorax'], _J['spine'], thorax, _UPPER_SPINE)
  attach(_J['neck'], _J['thorax'], head, _NECK)
  attach(_J['head'], _J['neck'], head, _HEAD)
  frames.update(pelvis=pelvis, thorax=thorax, head=head)

  for side, s in _SIDES:
    # Mirroring a left limb's rotations through the sagittal plane gives the right one's:
    # rotations about the left axis stay, the others change sign.
    thigh = (pelvis @ _rotation(2, s * a[f'{side}_hip_abduction'])
             @ _rotation(0, -a[f'{side}_hip_flexion'])
             @ _rotation(1, s * a[f'{side}_hip_rotation']))
    shank = thigh @ _rotation(0, a[f'{side}_knee_flexion'])
    upper_arm = (thorax @ _arm_swing(a[f'{side}_shoulder_elevation'],
                                     a[f'{side}_shoulder_plane'], s)
                 @ _rotation(1, s * a[f'{side}_shoulder_rotation']))
    forearm = upper_arm @ _rotation(0, -a[f'{side}_elbow_flexion'])
    attach(_J[f'{side}_hip'], _J['pelvis'], pelvis, np.array([s, 0.0, 0.0]))
    attach(_J[f'{side}_knee'], _J[f'{side}_hip'], thigh, _DOWN)
    attach(_J[f'{side}_ankle'], _J[f'{side}_knee'], shank, _DOWN)
    attach(_J[f'{side}_shoulder'], _J['thorax'], thorax,
           np.array([s * np.cos(_SHOULDER_DROP), -np.sin(_SHOULDER_DROP), 0.0]))
    attach(_J[f'{side}_elbow'], _J[f'{side}_shoulder'], upper_arm, _DOWN)
    attach(_J[f'{side}_wrist'], _J[f'{side}_elbow'], forearm, _DOWN)
    frames[f'{side}_shank'] = shank
    frames[f'{side}_forearm'] = forearm

  return joints @ _BODY_TO_CAMERA.T, {k: _BODY_TO_CAMERA @ v for k, v in frames.items()}


# The torso that arms must stay out of: an elliptic cylinder around each spine bone, its
# half-width and half-depth in units of the thorax-shoulder bone (about 113 and 90 mm on
# the template); the lower one reaches below the pelvis by half a pelvis-hip bone.
TORSO_HALF_WIDTH = 0.75
TORSO_HALF_DEPTH = 0.6


def arms_clear_of_torso(joints_3d: np.ndarray) -> bool:
  """Whether no elbow or wrist of a (17, 3) pose lies inside its torso."""
  j = np.asarray(joints_3d, np.float64)
  if j.shape != (skeleton.NUM_JOINTS, 3):
    raise ValueError(f'joints_3d must have shape ({skeleton.NUM_JOINTS}, 3), got {j.shape}')
  shoulder = np.linalg.norm(j[_J['l_shoulder']] - j[_J['thorax']])
  hip = np.linalg.norm(j[_J['l_hip']] - j[_J['pelvis']])
  hands = j[[_J['l_elbow'], _J['l_wrist'], _J['r_elbow'], _J['r_wrist']]]
  segments = (
      (j[_J['pelvis']], j[_J['spine']], j[_J['l_hip']] - j[_J['r_hip']], 0.5 * hip),
      (j[_J['spine']], j[_J['thorax']], j[_J['l_shoulder']] - j[_J['r_shoulder']], 0.0),
  )
  for start, end, lateral, below in segments:
    length = np.linalg.norm(end - start)
    up = (end - start) / length
    left = lateral - lateral @ up * up
    left /= np.linalg.norm(left)
    forward = np.cross(left, up)
    rel = hands - start
    height, x, z = rel @ up, rel @ left, rel @ forward
    inside = ((height >= -below) & (height <= length)
              & ((x / (TORSO_HALF_WIDTH * shoulder)) ** 2
                 + (z / (TORSO_HALF_DEPTH * shoulder)) ** 2 < 1))
    if inside.any():
      return False
  return True


# How angles are drawn inside their limits: (mean, standard deviation) of a truncated
# normal, or None for uniform. Legs share a posture so that both stand or both sit.
_LEG_POSTURES = (
    (0.6, dict(hip_flexion=(5, 20), hip_abduction=(4, 7), hip_rotation=(5, 12),
               knee_flexion=(8, 20))),        # standing, walking
    (0.25, dict(hip_flexion=(85, 15), hip_abduction=(10, 10), hip_rotation=(10, 15),
                knee_flexion=(95, 25))),      # sitting, crouching
    (0.15, dict(hip_flexion=None, hip_abduction=None, hip_rotation=None,
                knee_flexion=None)),          # anything the limits allow
)
_BODY_PRIORS = dict(yaw=None, pitch=(0, 5), roll=(0, 4), spine_flexion=(5, 15),
                    spine_lateral=(0, 8), spine_twist=(0, 15), neck_flexion=(5, 15),
                    neck_lateral=(0, 10), neck_twist=(0, 25))


def _draw(rng: np.random.Generator, name: str, prior) -> float:
  lo, hi = JOINT_LIMITS[name]
  if prior is None:
    return float(rng.uniform(lo, hi))
  while True:
    value = rng.normal(*prior)
    if lo <= value <= hi:
      return float(value)


def sample_angles(rng: np.random.Generator) -> dict:
  """A random set of angles (every key of ``JOINT_LIMITS``, each inside its limits)."""
  angles = {name: _draw(rng, name, prior) for name, prior in _BODY_PRIORS.items()}
  weights = [w for w, _ in _LEG_POSTURES]
  legs = _LEG_POSTURES[rng.choice(len(_LEG_POSTURES), p=weights)][1]
  for side, _ in _SIDES:
    for name, prior in legs.items():
      angles[f'{side}_{name}'] = _draw(rng, f'{side}_{name}', prior)
    arm = dict(shoulder_elevation=(20, 20) if rng.random() < 0.55 else None,
               shoulder_plane=(40, 50), shoulder_rotation=(10, 40),
               elbow_flexion=(15, 20) if rng.random() < 0.5 else None)
    for name, prior in arm.items():
      angles[f'{side}_{name}'] = _draw(rng, f'{side}_{name}', prior)
  return angles


def sample_pose(rng: np.random.Generator,
                bone_lengths: np.ndarray) -> tuple[dict, np.ndarray, dict]:
  """Angles and ``forward_kinematics`` of a random pose with the arms outside the torso."""
  for _ in range(1000):
    angles = sample_angles(rng)
    joints, frames = forward_kinematics(angles, bone_lengths)
    if arms_clear_of_torso(joints):
      return angles, joints, frames
  raise RuntimeError('no pose with the arms outside the torso in 1000 draws')


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
  centre, side = crops.tight_box(joints_2d, np.ones(len(joints_2d), bool))
  matrix = geometry.crop_matrix(centre, side * crops.STORE_MARGIN, image_size)
  return geometry.transform_intrinsics(matrix, focal, principal)


# --- Looks -------------------------------------------------------------------------------

def _hsv(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb((hue_degrees / 360.0) % 1.0, saturation, value))


def _outfit(rng: np.random.Generator) -> dict:
  """Clothing colours: right limbs warm (red to yellow), left limbs cool (cyan to blue)."""
  colours = {
      'torso': _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.95)),
      'pelvis': _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.45)),
      'shoes': _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.05, 0.3)),
  }
  for side, hues in (('r', (-20.0, 50.0)), ('l', (170.0, 250.0))):
    for upper, lower in (('upper_arm', 'forearm'), ('thigh', 'shank')):
      colour = _hsv(rng.uniform(*hues), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
      colours[f'{side}_{upper}'] = colour
      colours[f'{side}_{lower}'] = colour * rng.uniform(0.7, 0.9)
  return colours


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
    colour = _hsv(rng.uniform(105, 140), rng.uniform(0.5, 0.8), rng.uniform(0.45, 0.75))
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
  rgb = _hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.8) ** 2, rng.uniform(0.1, 0.95))
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


def _draw_person(canvas: _Canvas, joints: np.ndarray, frames: dict, subject: Subject,
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
_NOISE_BANK = np.random.default_rng((_SEED, 2)).standard_normal((512, 512, 3), np.float32)


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


# --- Splits and examples -----------------------------------------------------------------

TRAIN_SUBJECTS = tuple(range(0, 40))
TEST_SUBJECTS = tuple(range(40, 50))


@dataclasses.dataclass(frozen=True)
class SplitSpec:
  domain: str        # 'studio' or 'wild'
  train: bool
  labels_3d: bool    # whether examples carry 3D joints and intrinsics
  subjects: tuple[int, ...]


SPLITS = {
    'studio_train': SplitSpec('studio', True, True, TRAIN_SUBJECTS),
    'wild_train': SplitSpec('wild', True, False, TRAIN_SUBJECTS),
    'studio_test': SplitSpec('studio', False, True, TEST_SUBJECTS),
    'wild_test': SplitSpec('wild', False, True, TEST_SUBJECTS),
}
_SPLIT_NAMES = tuple(SPLITS)


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
  """A rendered example with everything known about it."""
  image: np.ndarray      # (S, S, 3) uint8
  mask: np.ndarray       # (S, S) bool, the person's pixels
  joints_2d: np.ndarray  # (17, 2) crop pixels
  joints_3d: np.ndarray  # (17, 3) camera frame, also where make_example withholds it
  focal: np.ndarray      # (2,) crop intrinsics
  principal: np.ndarray  # (2,)
  subject: Subject
  angles: dict


def render_sample(split: str, index: int, image_size: int = 192) -> Sample:
  """Renders example ``index`` of ``split`` (deterministic in both)."""
  if split not in SPLITS:
    raise ValueError(f'split must be one of {_SPLIT_NAMES}, got {split!r}')
  if index < 0:
    raise ValueError(f'index must be >= 0, got {index}')
  if not 16 <= image_size <= 512:
    raise ValueError(f'image_size must be in [16, 512], got {image_size}')
  spec = SPLITS[split]
  rng = np.random.default_rng((_SEED, 0, _SPLIT_NAMES.index(split), index))
  subject = make_subject(int(rng.choice(spec.subjects)))
  angles, pose, frames = sample_pose(rng, subject.bone_lengths)
  frame_focal, frame_principal, root = sample_camera(rng)
  joints_3d = pose + root
  focal, principal = crop_intrinsics(joints_3d, frame_focal, frame_principal, image_size)

  if spec.domain == 'studio':
    canvas = _Canvas(_studio_background(rng, image_size), focal, principal, _STUDIO_LIGHT)
    _draw_person(canvas, joints_3d, frames, subject, subject.outfit)
    image = canvas.rgb
  else:
    canvas = _Canvas(_wild_background(rng, image_size), focal, principal, _wild_lighting(rng))
    _draw_person(canvas, joints_3d, frames, subject, _outfit(rng))
    image = _degrade(rng, canvas.rgb)
  image = np.minimum(np.maximum(image, 0.0), 1.0)
  image *= 255
  image += 0.5  # rounds as astype truncates
  return Sample(
      image=image.astype(np.uint8),
      mask=canvas.cover >= 0.5,
      joints_2d=geometry.project(joints_3d, focal, principal),
      joints_3d=joints_3d, focal=focal, principal=principal,
      subject=subject, angles=angles)


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
      joints_2d=sample.joints_2d.astype(np.float32),
      joints_2d_valid=np.ones(skeleton.NUM_JOINTS, bool),  # the crop holds every joint
      joints_3d=known(sample.joints_3d),
      has_3d=spec.labels_3d,
      intrinsics=dict(focal=known(sample.focal), principal=known(sample.principal)),
      has_intrinsics=spec.labels_3d,
      subject=sample.subject.name,
      sequence=split,
      action='',
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
  for split in ('studio_train', 'wild_train'):
    for index in range(args.show):
      sample = render_sample(split, index, args.image_size)
      images.append(visualize.draw_skeleton_2d(sample.image, sample.joints_2d))
  args.out.mkdir(parents=True, exist_ok=True)
  path = args.out / 'synthetic_samples.png'
  Image.fromarray(visualize.image_grid(images, cols=args.show)).save(path)
  print(f'wrote {path}')


if __name__ == '__main__':
  main()
