"""Metrics against independent formulations (brute-force fits, 1-D least squares, counting)."""

import numpy as np
import pytest
from scipy import optimize
from scipy.spatial.transform import Rotation

from jaxpose import metrics
from jaxpose import protocols


def _poses(n, seed=0, joints=17):
  """Random non-planar root-relative poses, mm."""
  poses = np.random.default_rng(seed).normal(scale=250.0, size=(n, joints, 3))
  return poses - poses[:, :1]


def _similarity(poses, seed):
  """Each pose moved by a random rotation, scale and translation."""
  rng = np.random.default_rng(seed)
  rotations = Rotation.random(len(poses), random_state=seed).as_matrix()
  scales = rng.uniform(0.5, 2.0, size=(len(poses), 1, 1))
  shifts = rng.normal(scale=100.0, size=(len(poses), 1, 3))
  return scales * poses @ np.swapaxes(rotations, 1, 2) + shifts


def _brute_procrustes_mpjpe(pred, gt):
  """MPJPE after minimising the squared error over axis-angle, log-scale and translation."""
  def moved(x):
    return np.exp(x[3]) * pred @ Rotation.from_rotvec(x[:3]).as_matrix().T + x[4:]

  def loss(x):
    return np.sum((moved(x) - gt)**2) / 1e4

  starts = [np.concatenate([r, [0.0], np.zeros(3)])
            for r in np.pi / 2 * np.vstack([np.zeros(3), np.eye(3)])]
  best = min((optimize.minimize(loss, x0, method='BFGS', options=dict(gtol=1e-10))
              for x0 in starts), key=lambda result: result.fun)
  return np.mean(np.linalg.norm(moved(best.x) - gt, axis=-1))


def test_pa_mpjpe_matches_brute_force_similarity_fit():
  gt = _poses(4, seed=1)
  pred = _similarity(gt, seed=2) + np.random.default_rng(3).normal(scale=40.0, size=gt.shape)
  # A mirror image and an unrelated pose: cross-covariances with det < 0, where an SVD fit
  # without the sign fix would return a reflection.
  pred[2] = _similarity(gt[2:3] * np.array([-1.0, 1.0, 1.0]), seed=5)[0]
  pred[3] = _poses(1, seed=4)[0]
  expected = [_brute_procrustes_mpjpe(p, g) for p, g in zip(pred, gt)]
  np.testing.assert_allclose(metrics.pa_mpjpe(pred, gt), expected, atol=1e-3)


def test_pa_mpjpe_is_invariant_to_a_similarity_of_the_prediction():
  gt = _poses(5, seed=5)
  pred = gt + np.random.default_rng(6).normal(scale=30.0, size=gt.shape)
  np.testing.assert_allclose(metrics.pa_mpjpe(_similarity(pred, seed=7), gt),
                             metrics.pa_mpjpe(pred, gt), rtol=1e-9)
  np.testing.assert_allclose(metrics.pa_mpjpe(_similarity(gt, seed=8), gt), 0.0, atol=1e-9)


def test_procrustes_never_reflects():
  gt = _poses(3, seed=9)
  mirrored = gt * np.array([-1.0, 1.0, 1.0])
  # A reflection would match the mirror image exactly: the test pose is truly chiral.
  assert np.all(metrics.pa_mpjpe(mirrored, gt) > 50.0)
  aligned = metrics.align(mirrored, gt, 'procrustes')

  def handedness(p):
    return np.sign(np.linalg.det(p[:, 1:4] - p[:, :1]))

  np.testing.assert_array_equal(handedness(aligned), handedness(mirrored))


def test_identical_poses_give_zero_error():
  gt = _poses(3, seed=10)
  for error in (metrics.mpjpe, metrics.global_scale_mpjpe, metrics.n_mpjpe, metrics.pa_mpjpe):
    np.testing.assert_allclose(error(gt, gt), 0.0, atol=1e-9)
  np.testing.assert_array_equal(metrics.pck_3d(gt, gt), 100.0)
  np.testing.assert_allclose(metrics.auc_3d(gt, gt), 100.0 * 30 / 31)  # PCK at 0 mm is 0.


def test_n_mpjpe_scale_is_the_1d_least_squares_fit():
  gt = _poses(3, seed=11)
  pred = 0.8 * gt + np.random.default_rng(12).normal(scale=50.0, size=gt.shape)
  mask = np.random.default_rng(13).random(gt.shape[:2]) > 0.3
  aligned = metrics.align(pred, gt, 'least_squares_scale', mask)
  for i in range(len(gt)):
    scale = np.linalg.lstsq(pred[i][mask[i]].reshape(-1, 1), gt[i][mask[i]].ravel(),
                            rcond=None)[0][0]
    np.testing.assert_allclose(aligned[i], scale * pred[i], rtol=1e-12)
    np.testing.assert_allclose(
        metrics.n_mpjpe(pred, gt, mask)[i],
        np.mean(np.linalg.norm(scale * pred[i][mask[i]] - gt[i][mask[i]], axis=-1)))


def test_global_scale_matches_the_bone_length_sums_by_hand():
  # A chain pelvis -> r_hip -> r_knee, the rest of the joints masked out: bones 0-1 and
  # 1-2 count; the pelvis-l_hip bone has its child masked and must not.
  gt = np.zeros((1, 17, 3))
  gt[0, 1] = [100.0, 0.0, 0.0]
  gt[0, 2] = [100.0, 400.0, 0.0]     # bone lengths 100 + 400 = 500
  gt[0, 4] = [-900.0, 0.0, 0.0]      # masked
  pred = np.zeros((1, 17, 3))
  pred[0, 1] = [0.0, 60.0, 80.0]     # 100
  pred[0, 2] = [0.0, 60.0, 230.0]    # 150: sum 250, so the scale is 500 / 250 = 2
  pred[0, 4] = [7.0, 7.0, 7.0]       # masked
  mask = np.zeros((1, 17), bool)
  mask[0, :3] = True
  aligned = metrics.align(pred, gt, 'global_scale', mask)
  np.testing.assert_allclose(aligned, 2.0 * pred, rtol=1e-12)
  expected = np.mean([0.0, np.linalg.norm([-100.0, 120.0, 160.0]),
                      np.linalg.norm([-100.0, -280.0, 460.0])])
  np.testing.assert_allclose(metrics.global_scale_mpjpe(pred, gt, mask), [expected])


def test_global_scale_gives_the_ground_truth_skeleton_size_not_the_least_squares_fit():
  gt = _poses(64, seed=30)
  pred = 0.7 * gt + np.random.default_rng(31).normal(scale=120.0, size=gt.shape)
  pred -= pred[:, :1]
  bones = metrics.skeleton.BONES
  size = lambda p: np.linalg.norm(p[:, bones[:, 1]] - p[:, bones[:, 0]], axis=-1).sum(-1)
  np.testing.assert_allclose(size(metrics.align(pred, gt, 'global_scale')), size(gt),
                             rtol=1e-12)
  # The least-squares scale minimises the squared error, so it never does worse on it than
  # the global scale (or none); the global scale has no such guarantee.
  squared = lambda p: np.sum((p - gt)**2, axis=(1, 2))
  least_squares = squared(metrics.align(pred, gt, 'least_squares_scale'))
  assert np.all(least_squares <= squared(metrics.align(pred, gt, 'global_scale')) + 1e-6)
  assert np.all(least_squares <= squared(pred) + 1e-6)


def test_mpjpe_is_the_mean_euclidean_distance():
  gt = np.zeros((1, 2, 3))
  pred = np.array([[[3.0, 4.0, 0.0], [0.0, 0.0, 10.0]]])
  np.testing.assert_allclose(metrics.mpjpe(pred, gt), [7.5])


def test_pck_threshold_is_strict():
  gt = np.round(_poses(1, seed=14))  # Integers: gt + 150 - gt is exactly 150.
  pred = gt.copy()
  pred[0, :4, 0] += 150.0
  pred[0, 4:8, 1] -= 149.0
  np.testing.assert_allclose(metrics.pck_3d(pred, gt), [100.0 * 13 / 17])
  np.testing.assert_allclose(metrics.pck_3d(pred, gt, threshold=151.0), [100.0])


@pytest.mark.parametrize('error', [0.0, 2.5, 5.0, 72.0, 150.0, 151.0])
def test_auc_of_a_constant_error_is_the_fraction_of_thresholds_above_it(error):
  gt = np.round(_poses(2, seed=15))
  directions = np.eye(3)[np.random.default_rng(16).integers(0, 3, size=gt.shape[:2])]
  pred = gt + error * directions
  thresholds = np.arange(0, 151, 5)
  np.testing.assert_allclose(metrics.auc_3d(pred, gt), 100.0 * np.mean(thresholds > error))


def test_pck_accepts_many_thresholds():
  gt = _poses(4, seed=17)
  pred = gt + np.random.default_rng(18).normal(scale=60.0, size=gt.shape)
  thresholds = np.array([30.0, 90.0, 150.0])
  curve = metrics.pck_3d(pred, gt, threshold=thresholds)
  assert curve.shape == (4, 3)
  for t, threshold in enumerate(thresholds):
    np.testing.assert_allclose(curve[:, t], metrics.pck_3d(pred, gt, threshold=threshold))


# The global scale needs the whole H36M-17 tree, so dropping joints is not an option for it:
# its masking is checked by hand in test_global_scale_matches_the_bone_length_sums_by_hand.
@pytest.mark.parametrize('metric', [metrics.mpjpe, metrics.n_mpjpe, metrics.pa_mpjpe,
                                    metrics.pck_3d, metrics.auc_3d])
def test_mask_excludes_joints_from_alignment_and_mean(metric):
  gt = _poses(3, seed=19)
  pred = _similarity(gt, seed=20) * 0.1 + gt + np.random.default_rng(21).normal(
      scale=40.0, size=gt.shape)
  keep = np.ones(17, bool)
  keep[[3, 9, 13]] = False
  wild = pred.copy()
  wild[:, ~keep] += 1e4  # Masked-out joints must not move the fit or the mean.
  mask = np.broadcast_to(keep, gt.shape[:2])
  np.testing.assert_allclose(metric(wild, gt, mask), metric(pred[:, keep], gt[:, keep]),
                             rtol=1e-9, atol=1e-9)


def test_an_example_without_masked_joints_gives_nan_without_disturbing_others():
  gt = _poses(2, seed=22)
  pred = gt + 10.0
  mask = np.ones((2, 17), bool)
  mask[0] = False
  for metric in (metrics.mpjpe, metrics.n_mpjpe, metrics.pa_mpjpe, metrics.pck_3d):
    values = metric(pred, gt, mask)
    assert np.isnan(values[0]) and np.isfinite(values[1])


@pytest.mark.parametrize('metric', [metrics.mpjpe, metrics.global_scale_mpjpe,
                                    metrics.n_mpjpe, metrics.pa_mpjpe,
                                    metrics.pck_3d, metrics.auc_3d])
def test_a_batch_scores_each_example_as_it_would_alone(metric):
  gt = _poses(5, seed=23)
  pred = gt + np.random.default_rng(26).normal(scale=60.0, size=gt.shape)
  mask = np.random.default_rng(27).random((5, 17)) < 0.8
  mask[:, :3] = True
  for m in (None, mask):
    batch = metric(pred, gt, m)
    alone = [metric(pred[i:i + 1], gt[i:i + 1], None if m is None else m[i:i + 1])[0]
             for i in range(5)]
    np.testing.assert_allclose(batch, alone, rtol=1e-12)


def test_each_alignment_undoes_the_transform_it_fits():
  gt = _poses(3, seed=24)
  scaled = 1.7 * gt
  np.testing.assert_array_equal(metrics.align(scaled, gt, 'none'), scaled)
  np.testing.assert_allclose(metrics.align(scaled, gt, 'global_scale'), gt, rtol=1e-12)
  np.testing.assert_allclose(metrics.align(scaled, gt, 'least_squares_scale'), gt, rtol=1e-12)
  moved = _similarity(gt, seed=28)
  np.testing.assert_allclose(metrics.align(moved, gt, 'procrustes'), gt, atol=1e-8)


def _bone_sum(poses):
  bones = metrics.skeleton.BONES
  return np.linalg.norm(poses[:, bones[:, 1]] - poses[:, bones[:, 0]], axis=-1).sum(-1)


def test_global_scale_to_a_fixed_size_ignores_the_ground_truth_size():
  gt = _poses(4, seed=40)
  pred = 0.6 * gt + np.random.default_rng(41).normal(scale=30.0, size=gt.shape)
  pred -= pred[:, :1]
  fixed = metrics.align(pred, gt, 'global_scale', size=metrics.ZHOU_SKELETON_SIZE)
  np.testing.assert_allclose(_bone_sum(fixed), metrics.ZHOU_SKELETON_SIZE, rtol=1e-12)
  # The same ground truth at another size gives the same prediction.
  np.testing.assert_allclose(
      metrics.align(pred, 3 * gt, 'global_scale', size=metrics.ZHOU_SKELETON_SIZE), fixed)
  # 0, the default, is the ground truth's own.
  np.testing.assert_allclose(_bone_sum(metrics.align(pred, gt, 'global_scale')),
                             _bone_sum(gt), rtol=1e-12)
  assert '4296.99 mm' in metrics.global_scale_reference(metrics.ZHOU_SKELETON_SIZE)
  assert 'own' in metrics.global_scale_reference(0.0)
  with pytest.raises(ValueError, match='size'):
    metrics.align(pred, gt, 'global_scale', size=-1.0)


def test_protocols_pass_the_fixed_size_to_global_scale():
  gt = _poses(4, seed=42)
  pred = 0.6 * gt + np.random.default_rng(43).normal(scale=30.0, size=gt.shape)
  meta = {'scene': np.array(['a'] * 4)}
  valid = np.ones(gt.shape[:2], bool)
  fixed = protocols.evaluate('generic', pred, gt, valid, meta,
                             global_scale_size=metrics.ZHOU_SKELETON_SIZE)
  own = protocols.evaluate('generic', pred, gt, valid, meta)
  expected = metrics.global_scale_mpjpe(pred, gt, size=metrics.ZHOU_SKELETON_SIZE).mean()
  assert fixed['global_scale_mpjpe'] == pytest.approx(expected)
  assert own['global_scale_mpjpe'] == pytest.approx(metrics.global_scale_mpjpe(pred, gt).mean())
  assert fixed['mpjpe'] == own['mpjpe']
  assert '4296.99 mm' in fixed['global_scale_reference']


def test_real_human36m_skeletons_are_not_zhou_et_al_s_fixed_size(real_fixtures):
  """On the four real Human3.6M frames (S1, S5, S7, S8) the two references of "globally
  scaled" differ: each subject has its own size over skeleton.BONES, all below 4296.99 mm
  (Zhou et al.'s sum is over their own 16-joint skeleton)."""
  data = np.load(real_fixtures / 'h36m' / 'annotations.npz')
  gt = data['S'][..., :3] * 1000.0
  gt -= gt[:, :1]
  sizes = _bone_sum(gt)
  np.testing.assert_allclose(sizes, [4150.1, 4003.2, 4074.0, 4229.1], atol=0.1)
  # A prediction of the right shape at 90% size: exact after the ground truth's own scale,
  # off by the size ratio after the fixed one.
  pred = 0.9 * gt
  np.testing.assert_allclose(metrics.global_scale_mpjpe(pred, gt, size=0), 0, atol=1e-9)
  ratio = metrics.ZHOU_SKELETON_SIZE / sizes - 1
  np.testing.assert_allclose(
      metrics.global_scale_mpjpe(pred, gt, size=metrics.ZHOU_SKELETON_SIZE),
      ratio * np.linalg.norm(gt, axis=-1).mean(-1), rtol=1e-9)


def test_bad_input_raises_naming_the_argument():
  gt = _poses(2, seed=25)
  with pytest.raises(ValueError, match='mode'):
    metrics.align(gt, gt, 'rigid')
  with pytest.raises(ValueError, match='pred'):
    metrics.mpjpe(gt[0], gt[0])
  with pytest.raises(ValueError, match='gt'):
    metrics.mpjpe(gt, gt[:, :16])
  with pytest.raises(ValueError, match='mask'):
    metrics.pa_mpjpe(gt, gt, np.ones((2, 16), bool))
  with pytest.raises(ValueError, match='17 joints'):
    metrics.global_scale_mpjpe(gt[:, :14], gt[:, :14])
  with pytest.raises(ValueError, match='threshold'):
    metrics.pck_3d(gt, gt, threshold=np.ones((2, 2)))
