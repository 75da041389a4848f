"""The synthetic people (``jaxpose.data.synthetic`` renders them): subjects (proportions,
skin, hair, studio outfit), poses drawn inside anatomical joint limits and placed by forward
kinematics, and the wild domain's activities beyond the studio's limits.
"""

from __future__ import annotations

import colorsys
import dataclasses
import functools

import numpy as np

from jaxpose import skeleton

_J = skeleton.JOINT_INDEX
SEED = 20190616  # any fixed number; changing it changes every synthetic dataset


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


def hsv(hue_degrees: float, saturation: float, value: float) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb((hue_degrees / 360.0) % 1.0, saturation, value))


def outfit(rng: np.random.Generator) -> dict:
  """Clothing colours: right limbs warm (red to yellow), left limbs cool (cyan to blue)."""
  colours = {
      'torso': hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.45), rng.uniform(0.3, 0.95)),
      'pelvis': hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.15, 0.45)),
      'shoes': hsv(rng.uniform(0, 360), rng.uniform(0.0, 0.3), rng.uniform(0.05, 0.3)),
  }
  for side, hues in (('r', (-20.0, 50.0)), ('l', (170.0, 250.0))):
    for upper, lower in (('upper_arm', 'forearm'), ('thigh', 'shank')):
      colour = hsv(rng.uniform(*hues), rng.uniform(0.55, 1.0), rng.uniform(0.55, 1.0))
      colours[f'{side}_{upper}'] = colour
      colours[f'{side}_{lower}'] = colour * rng.uniform(0.7, 0.9)
  return colours


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
  rng = np.random.default_rng((SEED, 1, index))
  height = rng.uniform(*HEIGHT_SCALE)
  jitter = rng.uniform(1 - BONE_JITTER, 1 + BONE_JITTER, _BONE_GROUP_INDEX.max() + 1)
  skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.95, 1.05)
  return Subject(
      index=index,
      bone_lengths=TEMPLATE_BONE_LENGTHS * height * jitter[_BONE_GROUP_INDEX],
      build=float(rng.uniform(0.85, 1.2)),
      skin=np.clip(skin, 0, 1),
      hair=_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))],
      outfit=outfit(rng))


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


def truncated_normal(rng: np.random.Generator, mean: float, std: float, lo: float,
                      hi: float) -> float:
  while True:
    value = rng.normal(mean, std)
    if lo <= value <= hi:
      return float(value)


def _draw(rng: np.random.Generator, name: str, prior) -> float:
  lo, hi = JOINT_LIMITS[name]
  if prior is None:
    return float(rng.uniform(lo, hi))
  return truncated_normal(rng, *prior, lo, hi)


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


# --- The wild domain's poses -------------------------------------------------------------
# Photos in the wild show what a capture studio's scripted actions (Human3.6M's: walking,
# sitting, greeting, phoning, ...) rarely do. A wild pose is one of these activities, drawn
# as the studio's everyday poses (``sample_angles``) with the angles an activity sets
# redrawn: (mean, std) of a truncated normal inside the limits. Lying takes the whole body
# beyond the studio's ±15° pitch and ±10° roll (``WILD_BODY_LIMITS``); every limb angle
# stays inside ``JOINT_LIMITS``.
WILD_BODY_LIMITS = {'pitch': (-105.0, 105.0), 'roll': (-105.0, 105.0)}
WILD_ACTIVITIES = {  # name: share of the wild images
    'everyday': 0.3,     # the studio's poses
    'crouching': 0.15,   # deep squats, kneeling-like folds
    'wide_stance': 0.1,  # legs apart: martial arts, goalkeeping, dancing
    'lunge': 0.1,        # one leg forwards and bent, the other behind: running, fencing
    'kick': 0.1,         # one leg raised high: football, martial arts
    'overhead': 0.1,     # arms up: throwing, volleyball, cheering
    'lying': 0.15,       # on the back, the front or a side
}


def _set(rng: np.random.Generator, angles: dict, name: str, mean: float, std: float) -> None:
  angles[name] = truncated_normal(rng, mean, std,
                                   *WILD_BODY_LIMITS.get(name, JOINT_LIMITS[name]))


def sample_wild_angles(rng: np.random.Generator) -> tuple[str, dict]:
  """A wild activity and its angles (every key of ``JOINT_LIMITS``)."""
  names = list(WILD_ACTIVITIES)
  activity = names[rng.choice(len(names), p=list(WILD_ACTIVITIES.values()))]
  a = sample_angles(rng)
  side = 'lr'[rng.integers(2)]  # the leading leg or arm
  other = 'r' if side == 'l' else 'l'
  if activity == 'crouching':
    for s in 'lr':
      _set(rng, a, f'{s}_hip_flexion', 108, 6)
      _set(rng, a, f'{s}_knee_flexion', 132, 6)
      _set(rng, a, f'{s}_hip_abduction', 20, 10)
    _set(rng, a, 'spine_flexion', 35, 12)
  elif activity == 'wide_stance':
    for s in 'lr':
      _set(rng, a, f'{s}_hip_abduction', 38, 5)
      _set(rng, a, f'{s}_hip_rotation', 25, 10)
      _set(rng, a, f'{s}_hip_flexion', 15, 12)
      _set(rng, a, f'{s}_knee_flexion', 40, 20)
  elif activity == 'lunge':
    _set(rng, a, f'{side}_hip_flexion', 75, 12)
    _set(rng, a, f'{side}_knee_flexion', 85, 15)
    _set(rng, a, f'{other}_hip_flexion', -15, 5)
    _set(rng, a, f'{other}_knee_flexion', 30, 20)
    _set(rng, a, 'pitch', 10, 8)
  elif activity == 'kick':
    _set(rng, a, f'{side}_hip_flexion', 95, 12)
    _set(rng, a, f'{side}_knee_flexion', 20, 15)
    _set(rng, a, f'{other}_hip_flexion', 0, 5)
    _set(rng, a, f'{other}_knee_flexion', 10, 8)
    _set(rng, a, 'pitch', -10, 8)
    for s in 'lr':
      _set(rng, a, f'{s}_shoulder_elevation', 80, 25)
  elif activity == 'overhead':
    for s in (side, other) if rng.random() < 0.6 else (side,):
      _set(rng, a, f'{s}_shoulder_elevation', 155, 10)
      _set(rng, a, f'{s}_elbow_flexion', 25, 25)
  elif activity == 'lying':
    if rng.random() < 0.5:  # on the back or the front
      _set(rng, a, 'pitch', -90 if rng.random() < 0.6 else 90, 6)
    else:                   # on a side
      _set(rng, a, 'roll', -90 if rng.random() < 0.5 else 90, 6)
  return activity, a


def sample_wild_pose(rng: np.random.Generator,
                     bone_lengths: np.ndarray) -> tuple[str, dict, np.ndarray, dict]:
  """``sample_pose`` for the wild domain: the activity, angles, joints and frames."""
  for _ in range(1000):
    activity, angles = sample_wild_angles(rng)
    joints, frames = forward_kinematics(angles, bone_lengths)
    if arms_clear_of_torso(joints):
      return activity, angles, joints, frames
  raise RuntimeError('no pose with the arms outside the torso in 1000 draws')
