"""The common skeleton and the maps onto it, checked by joint name and on real samples."""

import json
from pathlib import Path

import numpy as np
import pytest

from jaxpose import skeleton

REAL = Path(__file__).resolve().parents[1].parent / 'shared' / 'fixtures' / 'real'

# The other datasets' joint orders (facts from the fixtures' README and the datasets' papers).
MPII_16 = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'pelvis', 'thorax',
           'upper_neck', 'head_top', 'r_wrist', 'r_elbow', 'r_shoulder', 'l_shoulder',
           'l_elbow', 'l_wrist')
LSP_14 = ('r_ankle', 'r_knee', 'r_hip', 'l_hip', 'l_knee', 'l_ankle', 'r_wrist', 'r_elbow',
          'r_shoulder', 'l_shoulder', 'l_elbow', 'l_wrist', 'neck', 'head_top')
MPI_INF_3DHP_17 = ('head_top', 'neck', 'r_shoulder', 'r_elbow', 'r_wrist', 'l_shoulder',
                   'l_elbow', 'l_wrist', 'r_hip', 'r_knee', 'r_ankle', 'l_hip', 'l_knee',
                   'l_ankle', 'pelvis', 'spine', 'head')
# The 3DHP joints left out of 3D PCK and AUC (evaluation notes).
MPI_INF_3DHP_NOT_IN_PCK = ('pelvis', 'spine', 'head')
# The H36M-17 joint each other-dataset joint name stands for, where the names differ: MPII's
# and 3DHP's head_top is H36M's head (the top); the base of the neck (MPII's thorax, LSP's
# and 3DHP's neck) is H36M's thorax; 3DHP's head (centre) is H36M's neck/nose.
MPII_AS_H36M = {'head_top': 'head'}
LSP_AS_H36M = {'head_top': 'head', 'neck': 'thorax'}
MPI_INF_3DHP_AS_H36M = {'head_top': 'head', 'neck': 'thorax', 'head': 'neck'}


def _expected_map(names, renames):
  """The ``*_TO_H36M`` array that the joint names imply (-1: no such joint)."""
  h36m_names = [renames.get(n, n) for n in names]
  return np.array([h36m_names.index(n) if n in h36m_names else -1
                   for n in skeleton.JOINT_NAMES])


def test_parents_form_a_tree_rooted_at_the_pelvis():
  assert skeleton.JOINT_NAMES[skeleton.ROOT] == 'pelvis'
  assert skeleton.PARENTS[skeleton.ROOT] == -1
  assert np.sum(skeleton.PARENTS < 0) == 1
  for joint in range(skeleton.NUM_JOINTS):
    seen = set()
    while joint != skeleton.ROOT:  # Every chain of parents ends at the root, without cycles.
      assert joint not in seen and 0 <= joint < skeleton.NUM_JOINTS
      seen.add(joint)
      joint = skeleton.PARENTS[joint]
  assert skeleton.NUM_BONES == skeleton.NUM_JOINTS - 1 == len(skeleton.BONE_NAMES)


def test_flip_permutation_is_an_involution_swapping_left_and_right_by_name():
  perm = skeleton.FLIP_PERMUTATION
  np.testing.assert_array_equal(perm[perm], np.arange(skeleton.NUM_JOINTS))
  for joint, name in enumerate(skeleton.JOINT_NAMES):
    twin = name.replace('l_', '#').replace('r_', 'l_').replace('#', 'r_')
    assert skeleton.JOINT_NAMES[perm[joint]] == twin
  np.testing.assert_array_equal(skeleton.SIDE[perm], -skeleton.SIDE)


def test_maps_agree_with_the_joint_names():
  np.testing.assert_array_equal(skeleton.MPII_TO_H36M, _expected_map(MPII_16, MPII_AS_H36M))
  np.testing.assert_array_equal(skeleton.LSP_TO_H36M, _expected_map(LSP_14, LSP_AS_H36M))
  np.testing.assert_array_equal(skeleton.MPI_INF_3DHP_17_TO_H36M,
                                _expected_map(MPI_INF_3DHP_17, MPI_INF_3DHP_AS_H36M))


def test_3dhp_17_to_h36m_is_a_permutation():
  np.testing.assert_array_equal(np.sort(skeleton.MPI_INF_3DHP_17_TO_H36M),
                                np.arange(skeleton.NUM_JOINTS))


def test_subset_indices_match_the_evaluation_notes():
  np.testing.assert_array_equal(skeleton.H36M_32_TO_17,
                                [0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27])
  np.testing.assert_array_equal(skeleton.MPI_INF_3DHP_28_TO_17,
                                [7, 5, 14, 15, 16, 9, 10, 11, 23, 24, 25, 18, 19, 20, 4, 3, 6])


def test_pck_joints_are_the_14_official_3dhp_joints():
  official = {MPI_INF_3DHP_AS_H36M.get(n, n) for n in MPI_INF_3DHP_17
              if n not in MPI_INF_3DHP_NOT_IN_PCK}
  assert len(official) == len(skeleton.PCK_JOINTS) == 14
  assert {skeleton.JOINT_NAMES[j] for j in skeleton.PCK_JOINTS} == official


def test_real_mpii_sample_converts_by_name():
  path = REAL / 'mpii' / 'annotations.json'
  if not path.exists():
    pytest.skip(f'real MPII fixtures not found at {path}')
  for record in json.loads(path.read_text()):
    joints = np.array(record['joints'], np.float64)
    visible = np.array(record['joints_vis'], bool)
    converted, valid = skeleton.convert_joints(joints, visible, skeleton.MPII_TO_H36M)
    assert converted.shape == (17, 2) and valid.shape == (17,)
    np.testing.assert_array_equal(converted[skeleton.JOINT_INDEX['r_wrist']],
                                  joints[MPII_16.index('r_wrist')])
    np.testing.assert_array_equal(converted[skeleton.JOINT_INDEX['head']],
                                  joints[MPII_16.index('head_top')])
    for joint, name in enumerate(skeleton.JOINT_NAMES):
      if name in MPII_16:
        np.testing.assert_array_equal(converted[joint], joints[MPII_16.index(name)])
        assert valid[joint] == visible[MPII_16.index(name)]
    for missing in ('spine', 'neck'):
      assert not valid[skeleton.JOINT_INDEX[missing]]
      np.testing.assert_array_equal(converted[skeleton.JOINT_INDEX[missing]], 0.0)


def test_convert_joints_batches_and_carries_invisibility():
  joints = np.arange(2 * 16 * 2, dtype=np.float32).reshape(2, 16, 2)
  visible = np.ones((2, 16), bool)
  visible[1, MPII_16.index('l_knee')] = False
  converted, valid = skeleton.convert_joints(joints, visible, skeleton.MPII_TO_H36M)
  assert converted.shape == (2, 17, 2) and converted.dtype == np.float32
  assert not valid[1, skeleton.JOINT_INDEX['l_knee']] and valid[0, skeleton.JOINT_INDEX['l_knee']]
  _, all_valid = skeleton.convert_joints(joints, None, skeleton.MPII_TO_H36M)
  np.testing.assert_array_equal(all_valid[0], skeleton.MPII_TO_H36M >= 0)


def _real_h36m_poses():
  path = REAL / 'h36m' / 'annotations.npz'
  if not path.exists():
    pytest.skip(f'real Human3.6M fixtures not found at {path}')
  return np.load(path)['S'][..., :3] * 1000.0  # metres → mm


def test_real_h36m_bone_lengths_are_plausible_and_symmetric():
  lengths = dict(zip(skeleton.BONE_NAMES, skeleton.bone_lengths(_real_h36m_poses()).T))
  plausible = {'r_hip-r_knee': (350, 500), 'r_knee-r_ankle': (350, 500),
               'r_shoulder-r_elbow': (220, 350), 'r_elbow-r_wrist': (200, 320),
               'pelvis-r_hip': (90, 180), 'thorax-r_shoulder': (100, 200),
               'pelvis-spine': (150, 300), 'spine-thorax': (150, 300)}
  for bone, (low, high) in plausible.items():
    assert np.all((low < lengths[bone]) & (lengths[bone] < high)), bone
  for bone in skeleton.BONE_NAMES:
    if 'r_' in bone:  # Human3.6M's skeletons are left-right symmetric.
      np.testing.assert_allclose(lengths[bone], lengths[bone.replace('r_', 'l_')], rtol=0.01)


def test_real_h36m_left_and_right_are_the_persons_own():
  for pose in _real_h36m_poses():
    def joint(name, p=pose):
      return p[skeleton.JOINT_INDEX[name]]

    # Forward = up × (left → right) for the person's own sides; the nose points forward.
    forward = np.cross(joint('thorax') - joint('pelvis'), joint('r_hip') - joint('l_hip'))
    forward /= np.linalg.norm(forward)
    assert (joint('neck') - joint('thorax')) @ forward > 30.0
