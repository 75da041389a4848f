"""The four losses against values computed by hand on tiny inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxpose import losses
from jaxpose import skeleton

J = skeleton.NUM_JOINTS


def _pose(seed, n=2):
  return jax.random.normal(jax.random.key(seed), (n, J, 3)) * 300.0


def test_pose_3d_loss_is_masked_mean_of_squared_body_boxes():
  assert losses.BODY_BOX_MM == 2000.0
  target = np.zeros((3, J, 3), np.float32)
  pred = np.zeros((3, J, 3), np.float32)
  pred[0, :, 0] = 2000.0      # every joint one body box (2 m) off: squared error 1
  pred[1, 3, 2] = 4000.0      # one joint 4 m off: 4 / 17 on average
  pred[2] = 5000.0            # excluded: no 3D label
  has_3d = np.array([True, True, False])
  value = losses.pose_3d_loss(pred, target, has_3d)
  np.testing.assert_allclose(value, (1.0 + 4.0 / J) / 2, rtol=1e-6)


def test_bone_loss_vectors_for_3d_and_lengths_for_2d_only():
  target = np.asarray(_pose(0, 1))
  pred = target.copy()
  pred[0, 2] += np.array([0.0, 100.0, 0.0])  # moves r_knee: bones hip-knee and knee-ankle
  # 3D example: each of the two bones' vectors change by 100 mm = 0.05 body boxes, over
  # 16 bones.
  vec = losses.bone_loss(pred, target, np.array([True]), np.zeros((1, 16)), np.array([True]))
  np.testing.assert_allclose(vec, 2 * 0.05**2 / 16, rtol=1e-5)
  # 2D-only example: compared with reference lengths, each 20 mm longer than predicted.
  ref = skeleton.bone_lengths(pred) + 20.0
  length = losses.bone_loss(pred, np.zeros_like(pred), np.array([False]), ref, np.array([True]))
  np.testing.assert_allclose(length, 0.01**2, rtol=1e-4)
  # 2D-only without reference lengths: nothing to compare with.
  none = losses.bone_loss(pred, target, np.array([False]), ref, np.array([False]))
  assert float(none) == 0.0


def test_heatmap_targets_peak_on_the_joint_cell():
  grid, size = 8, 64
  joints = np.zeros((1, J, 2), np.float32)
  joints[0, :] = [(3 + 0.5) * 8, (5 + 0.5) * 8]   # centre of cell x=3, y=5
  target = np.asarray(losses.heatmap_targets(jnp.asarray(joints), size, grid, 1.0))
  assert target.shape == (1, grid, grid, J)
  assert target[0, 5, 3, 0] == pytest.approx(1.0)
  assert target[0, 5, 4, 0] == pytest.approx(np.exp(-0.5))
  assert target[0, 6, 4, 0] == pytest.approx(np.exp(-1.0))


def test_heatmap_loss_masks_unlabelled_joints():
  target = np.zeros((1, 2, 2, J), np.float32)
  pred = np.zeros((1, 2, 2, 2, J), np.float32)
  pred[0, 0, :, :, 0] = 1.0   # res4 level, joint 0: 4 cells off by 1
  pred[0, :, :, :, 1] = 7.0   # joint 1 unlabelled
  valid = np.zeros((1, J), bool)
  valid[0, [0, 2]] = True
  # Labelled joints 0 and 2: joint 0 has 4 of 4 cells off by 1 on one of 2 levels: 0.5;
  # joint 2 none.
  np.testing.assert_allclose(losses.heatmap_loss(pred, target, valid), 0.25)


def test_heatmap_loss_of_random_outputs_does_not_grow_with_the_grid():
  values = []
  for grid, size in ((6, 96), (16, 256)):
    joints = np.random.default_rng(grid).uniform(0.3, 0.7, (4, J, 2)).astype(np.float32) * size
    target = losses.heatmap_targets(jnp.asarray(joints), size, grid, 1.0)
    noise = np.random.default_rng(0).normal(size=(4, 2, grid, grid, J)).astype(np.float32)
    values.append(float(losses.heatmap_loss(noise, target, np.ones((4, J), bool))))
  np.testing.assert_allclose(values[0], values[1], rtol=0.1)


def test_projection_loss_in_crop_sides():
  pred = np.zeros((1, J, 2), np.float32)
  labels = np.zeros((1, J, 2), np.float32)
  labels[0, 0] = [32.0, 0.0]   # half the crop side away
  valid = np.zeros((1, J), bool)
  valid[0, :2] = True
  np.testing.assert_allclose(losses.projection_loss(pred, labels, valid, 64), 0.25 / 2)


def test_2d_only_example_trains_3d_only_through_projection_and_bones():
  """A 2D-only example adds nothing to the 3D loss, but its 2D labels pull the predicted
  3D pose (the projection loss has a gradient with respect to it)."""
  pose = _pose(3, 1)
  scale, principal = jnp.array([0.05]), jnp.array([[32.0, 32.0]])
  targets = dict(pose_3d=jnp.zeros((1, J, 3)), has_3d=jnp.array([False]),
                 joints_2d=jnp.full((1, J, 2), 20.0), joints_2d_valid=jnp.ones((1, J), bool),
                 ref_bone_lengths=jnp.zeros((1, 16)), has_ref_bones=jnp.array([False]))

  def terms(pose):
    outputs = dict(pose_3d=pose, heatmaps=jnp.zeros((1, 2, 4, 4, J)),
                   pose_2d=pose[..., :2] * scale[:, None, None] + principal[:, None])
    return losses.compute(outputs, targets, dict(pose_3d=1.0, bone=1.0, heatmap=0.0,
                                                 projection=1.0), 64, 1.0)[1]

  values = terms(pose)
  assert float(values['pose_3d']) == 0.0
  assert float(values['projection']) > 0.0
  grad_3d = jax.grad(lambda p: terms(p)['pose_3d'])(pose)
  grad_proj = jax.grad(lambda p: terms(p)['projection'])(pose)
  assert float(jnp.abs(grad_3d).max()) == 0.0
  assert float(jnp.abs(grad_proj[..., :2]).max()) > 0.0


def test_unknown_weight_is_named():
  outputs = dict(pose_3d=jnp.zeros((1, J, 3)), heatmaps=jnp.zeros((1, 2, 4, 4, J)),
                 pose_2d=jnp.zeros((1, J, 2)))
  targets = dict(pose_3d=jnp.zeros((1, J, 3)), has_3d=jnp.array([True]),
                 joints_2d=jnp.zeros((1, J, 2)), joints_2d_valid=jnp.ones((1, J), bool),
                 ref_bone_lengths=jnp.zeros((1, 16)), has_ref_bones=jnp.array([False]))
  with pytest.raises(ValueError, match='projektion'):
    losses.compute(outputs, targets, dict(pose_3d=1, bone=1, heatmap=1, projection=1,
                                          projektion=1), 64, 1.0)
