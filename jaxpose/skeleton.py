"""The common skeleton: Human3.6M's 17 joints, and the maps from other datasets onto it.

Conventions used everywhere in jaxpose (stated once, here):
  * 3D joints are in **millimetres**, in the **camera frame**: x right, y down, z forward.
  * 2D joints are in **pixels** of the image they belong to; (0, 0) is the top-left
    corner of the top-left pixel, so the centre of pixel (i, j) is (j + 0.5, i + 0.5).
  * Joint order is H36M-17 (``JOINT_NAMES``); "left" and "right" are the person's own.
  * Poses fed to the lifter and the metrics are root-relative: the pelvis is the origin.
"""

from __future__ import annotations

import numpy as np

JOINT_NAMES = (
    'pelvis',      # 0  (root)
    'r_hip',       # 1
    'r_knee',      # 2
    'r_ankle',     # 3
    'l_hip',       # 4
    'l_knee',      # 5
    'l_ankle',     # 6
    'spine',       # 7
    'thorax',      # 8
    'neck',        # 9  (H36M's "Neck/Nose")
    'head',        # 10 (H36M's "Head", the top of the head)
    'l_shoulder',  # 11
    'l_elbow',     # 12
    'l_wrist',     # 13
    'r_shoulder',  # 14
    'r_elbow',     # 15
    'r_wrist',     # 16
)
NUM_JOINTS = len(JOINT_NAMES)
ROOT = 0
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Kinematic tree: PARENTS[j] is the joint that j hangs from (-1 for the root).
PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15], np.int32)
# One bone per non-root joint: (parent, child).
BONES = np.array([(PARENTS[j], j) for j in range(NUM_JOINTS) if PARENTS[j] >= 0], np.int32)
NUM_BONES = len(BONES)
BONE_NAMES = tuple(f'{JOINT_NAMES[p]}-{JOINT_NAMES[c]}' for p, c in BONES)

# Pairs swapped by a horizontal flip.
FLIP_PAIRS = ((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16))


def _flip_permutation() -> np.ndarray:
  perm = np.arange(NUM_JOINTS)
  for a, b in FLIP_PAIRS:
    perm[a], perm[b] = b, a
  return perm


# joints[FLIP_PERMUTATION] is the joint array of the mirrored person.
FLIP_PERMUTATION = _flip_permutation()

# Side of each joint, for drawing: -1 right, +1 left, 0 centre.
SIDE = np.array([
    1 if n.startswith('l_') else -1 if n.startswith('r_') else 0 for n in JOINT_NAMES
], np.int32)

# The 14 joints over which MPI-INF-3DHP computes 3D PCK and AUC (pelvis, spine and
# neck/nose are left out).
PCK_JOINTS = np.array([JOINT_INDEX[n] for n in (
    'head', 'thorax', 'r_shoulder', 'r_elbow', 'r_wrist', 'l_shoulder', 'l_elbow',
    'l_wrist', 'r_hip', 'r_knee', 'r_ankle', 'l_hip', 'l_knee', 'l_ankle')], np.int32)

# --- Other datasets' joint sets --------------------------------------------------------
# Each map is an array of length 17: entry j is the index, in the other dataset's order, of
# the joint that becomes H36M-17 joint j, or -1 where that dataset has no such joint (the
# converted joint is then marked invalid).

# MPI-INF-3DHP's 17-joint subset (order: head_top, neck, r_shoulder, r_elbow, r_wrist,
# l_shoulder, l_elbow, l_wrist, r_hip, r_knee, r_ankle, l_hip, l_knee, l_ankle, pelvis,
# spine, head) has the same semantics as H36M-17; only the order differs.
MPI_INF_3DHP_17_TO_H36M = np.array(
    [14, 8, 9, 10, 11, 12, 13, 15, 1, 16, 0, 5, 6, 7, 2, 3, 4], np.int32)
# The 3DHP-17 subset within the 28 joints of the full 3DHP annotation (0-based).
MPI_INF_3DHP_28_TO_17 = np.array(
    [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6], np.int32)

# MPII-16: r_ankle, r_knee, r_hip, l_hip, l_knee, l_ankle, pelvis, thorax, upper_neck,
# head_top, r_wrist, r_elbow, r_shoulder, l_shoulder, l_elbow, l_wrist. MPII has no spine;
# its upper_neck sits below H36M's neck/nose joint, so both are left unmapped.
MPII_TO_H36M = np.array(
    [6, 2, 1, 0, 3, 4, 5, -1, 7, -1, 9, 13, 14, 15, 12, 11, 10], np.int32)

# LSP-14: r_ankle, r_knee, r_hip, l_hip, l_knee, l_ankle, r_wrist, r_elbow, r_shoulder,
# l_shoulder, l_elbow, l_wrist, neck, head_top. LSP's "neck" is the base of the neck,
# H36M's thorax; there is no pelvis, spine or nose.
LSP_TO_H36M = np.array(
    [-1, 2, 1, 0, 3, 4, 5, -1, 12, -1, 13, 9, 10, 11, 8, 7, 6], np.int32)

# Human3.6M's 32-joint release → H36M-17.
H36M_32_TO_17 = np.array(
    [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27], np.int32)


def convert_joints(joints: np.ndarray, valid: np.ndarray | None,
                   mapping: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Maps (..., K, D) joints of another dataset onto H36M-17.

  Args:
    joints: (..., K, D) joints in the other dataset's order.
    valid: (..., K) bool validity, or None for all valid.
    mapping: one of the ``*_TO_H36M`` arrays.

  Returns:
    (..., 17, D) joints (zeros where missing) and (..., 17) bool validity.
  """
  joints = np.asarray(joints)
  if valid is None:
    valid = np.ones(joints.shape[:-1], bool)
  present = mapping >= 0
  index = np.where(present, mapping, 0)
  out = np.where(present[:, None], np.take(joints, index, axis=-2), 0.0)
  out_valid = present & np.take(np.asarray(valid, bool), index, axis=-1)
  return out.astype(joints.dtype), out_valid


def bone_vectors(joints):
  """(..., 17, 3) joints → (..., 16, 3) child-minus-parent vectors (numpy or jnp)."""
  return joints[..., BONES[:, 1], :] - joints[..., BONES[:, 0], :]


def bone_lengths(joints):
  """(..., 17, 3) joints → (..., 16) bone lengths (numpy only)."""
  return np.linalg.norm(bone_vectors(np.asarray(joints)), axis=-1)
