"""The synthetic humans: poses inside their limits, exact labels, splits, and pictures."""

import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from jaxpose import geometry, skeleton, visualize
from jaxpose.data import crops, synthetic, synthetic_people, tfds_io
from conftest import REPO

J = skeleton.JOINT_INDEX
SIDES = ('l', 'r')
UP = np.array([0.0, -1.0, 0.0])  # in the camera frame


def _angle(u, v):
  cos = u @ v / np.linalg.norm(u) / np.linalg.norm(v)
  return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_rendering_is_a_function_of_split_and_index():
  a, b = synthetic.render_sample('wild_train', 5), synthetic.render_sample('wild_train', 5)
  np.testing.assert_array_equal(a.image, b.image)
  np.testing.assert_array_equal(a.joints_2d, b.joints_2d)
  np.testing.assert_array_equal(a.joints_3d, b.joints_3d)
  for other in (synthetic.render_sample('wild_train', 6),
                synthetic.render_sample('wild_test', 5)):
    assert np.abs(other.image.astype(int) - a.image).mean() > 10
    assert np.abs(other.joints_3d - a.joints_3d).max() > 10


@pytest.mark.parametrize('split', ['studio_val', 'wild_val', 'studio_test', 'wild_test'])
def test_labels_are_exact_and_match_the_pixels(split):
  for index in range(25):
    example = synthetic.make_example(split, index)
    focal, principal = example['intrinsics']['focal'], example['intrinsics']['principal']
    projected = geometry.project(example['joints_3d'].astype(np.float64), focal, principal)
    # Exact up to float32 storage, well inside the 0.5 px the labels promise.
    np.testing.assert_allclose(projected, example['joints_2d'], atol=0.01)
    assert example['joints_2d_valid'].all()
    if split.startswith('wild'):
      continue  # occluders and photo edges hide joints
    # Every joint lies inside the body, so it projects onto the person's silhouette.
    sample = synthetic.render_sample(split, index)
    silhouette = ndimage.binary_dilation(sample.mask, iterations=2)
    cols, rows = np.floor(sample.joints_2d).astype(int).T
    assert silhouette[rows, cols].all(), (split, index)


def test_crop_follows_the_tight_box_convention():
  size = 192
  for split in synthetic.SPLITS:
    for index in range(10):
      example = synthetic.make_example(split, index, size)
      # Around the labelled joints, as the benchmarks' builders cut their crops.
      centre, side = crops.tight_box(example['joints_2d'], example['joints_2d_valid'])
      np.testing.assert_allclose(centre, [size / 2, size / 2], atol=1e-3)
      np.testing.assert_allclose(side, size / crops.STORE_MARGIN, atol=1e-3)


def test_subjects_keep_their_bone_lengths_within_bounds():
  lo, hi = synthetic_people.bone_length_bounds()
  for index in (synthetic.TRAIN_SUBJECTS + synthetic.VALIDATION_SUBJECTS
                + synthetic.TEST_SUBJECTS):
    lengths = synthetic_people.make_subject(index).bone_lengths
    assert np.all((lo <= lengths) & (lengths <= hi))
    np.testing.assert_array_equal(lengths[skeleton.FLIP_PERMUTATION[1:] - 1], lengths)
  for split in synthetic.SPLITS:
    for index in range(10):
      sample = synthetic.render_sample(split, index)
      np.testing.assert_allclose(skeleton.bone_lengths(sample.joints_3d),
                                 sample.subject.bone_lengths, atol=1e-3)


def test_poses_respect_the_joint_limits():
  rng = np.random.default_rng(0)
  lengths = synthetic_people.TEMPLATE_BONE_LENGTHS
  for _ in range(300):
    angles, joints, frames = synthetic_people.sample_pose(rng, lengths)
    assert set(angles) == set(synthetic_people.JOINT_LIMITS)
    for name, value in angles.items():
      lo, hi = synthetic_people.JOINT_LIMITS[name]
      assert lo <= value <= hi, name
    assert synthetic_people.arms_clear_of_torso(joints)
    # The angles mean what the table says, measured on the joints.
    pelvis_left, pelvis_forward = frames['pelvis'][:, 0], frames['pelvis'][:, 2]
    thorax_down = -frames['thorax'][:, 1]
    for side in SIDES:
      hip, knee, ankle = (joints[J[f'{side}_{n}']] for n in ('hip', 'knee', 'ankle'))
      shoulder, elbow, wrist = (joints[J[f'{side}_{n}']] for n in ('shoulder', 'elbow', 'wrist'))
      thigh, shank = knee - hip, ankle - knee
      np.testing.assert_allclose(thigh @ pelvis_forward / np.linalg.norm(thigh),
                                 np.sin(np.radians(angles[f'{side}_hip_flexion'])), atol=1e-9)
      np.testing.assert_allclose(_angle(thigh, shank), angles[f'{side}_knee_flexion'], atol=1e-6)
      if angles[f'{side}_knee_flexion'] > 1:  # the knee never bends forwards
        assert np.cross(thigh, shank) @ pelvis_left > 0
      np.testing.assert_allclose(_angle(elbow - shoulder, thorax_down),
                                 angles[f'{side}_shoulder_elevation'], atol=1e-6)
      np.testing.assert_allclose(_angle(elbow - shoulder, wrist - elbow),
                                 angles[f'{side}_elbow_flexion'], atol=1e-6)


def test_arm_inside_the_torso_is_caught():
  angles = {name: 0.0 for name in synthetic_people.JOINT_LIMITS}
  joints, _ = synthetic_people.forward_kinematics(angles, synthetic_people.TEMPLATE_BONE_LENGTHS)
  assert synthetic_people.arms_clear_of_torso(joints)
  inside = joints.copy()
  inside[J['l_wrist']] = (joints[J['spine']] + joints[J['thorax']]) / 2
  assert not synthetic_people.arms_clear_of_torso(inside)


def test_splits_and_their_labels():
  for index in range(5):
    wild = synthetic.make_example('wild_train', index)
    assert not wild['has_3d'] and not wild['has_intrinsics']
    assert not wild['joints_3d'].any()
    assert not wild['intrinsics']['focal'].any() and not wild['intrinsics']['principal'].any()
    for split in ('studio_train', 'studio_val', 'wild_val', 'studio_test', 'wild_test'):
      example = synthetic.make_example(split, index)
      assert example['has_3d'] and example['has_intrinsics']
      assert (example['joints_3d'][:, 2] > 2000).all()
      assert example['joints_2d_valid'].all()
      assert example['sequence'] == split and example['frame'] == index
      assert example['scene'] == synthetic.SPLITS[split].domain
  # Each split keeps its random stream: a split added later takes a new one, so that the
  # existing splits stay example for example what they were.
  assert {n: s.stream for n, s in synthetic.SPLITS.items()} == {
      'studio_train': 0, 'wild_train': 1, 'studio_val': 2, 'wild_val': 3, 'studio_test': 4,
      'wild_test': 5}
  seen = {split: {synthetic.make_example(split, i)['subject'] for i in range(30)}
          for split in synthetic.SPLITS}
  roles = {role: set().union(*(seen[n] for n, s in synthetic.SPLITS.items() if s.role == role))
           for role in ('train', 'validation', 'test')}
  assert not roles['train'] & roles['validation'] and not roles['train'] & roles['test']
  assert not roles['validation'] & roles['test']
  assert roles['test'] <= {f'synth_{i:03d}' for i in synthetic.TEST_SUBJECTS}


def _knee_angle(joints, side):
  hip, knee, ankle = (joints[J[f'{side}_{n}']] for n in ('hip', 'knee', 'ankle'))
  return _angle(knee - hip, ankle - knee)


def test_wild_activities_are_what_they_say_and_lie_beyond_the_studio():
  rng = np.random.default_rng(3)
  lengths = synthetic_people.TEMPLATE_BONE_LENGTHS
  counts = dict.fromkeys(synthetic_people.WILD_ACTIVITIES, 0)
  for _ in range(1500):
    activity, angles, joints, frames = synthetic_people.sample_wild_pose(rng, lengths)
    counts[activity] += 1
    assert synthetic_people.arms_clear_of_torso(joints)
    for name, value in angles.items():
      lo, hi = synthetic_people.WILD_BODY_LIMITS.get(name, synthetic_people.JOINT_LIMITS[name])
      assert lo <= value <= hi, name
    # Measured on the joints and the pelvis' axes (camera frame before the viewpoint).
    from_vertical = _angle(frames['pelvis'][:, 1], UP)
    if activity == 'lying':
      assert 60 < from_vertical < 120
    elif activity == 'crouching':
      assert min(_knee_angle(joints, s) for s in SIDES) > 100
    elif activity == 'wide_stance':
      thighs = [joints[J[f'{s}_knee']] - joints[J[f'{s}_hip']] for s in SIDES]
      assert _angle(*thighs) > 35
    elif activity == 'overhead':
      assert min(joints[J[f'{s}_wrist']][1] for s in SIDES) < joints[J['head']][1] + 150
  shares = {k: v / 1500 for k, v in counts.items()}
  for activity, share in synthetic_people.WILD_ACTIVITIES.items():
    assert abs(shares[activity] - share) < 0.04, activity
  # The studio's bodies stand within 20° of upright.
  for _ in range(300):
    _, _, frames = synthetic_people.sample_pose(rng, lengths)
    assert _angle(frames['pelvis'][:, 1], UP) < 20


def test_wild_viewpoint_raises_and_tilts_the_camera():
  rng = np.random.default_rng(4)
  elevations, rolls = [], []
  for _ in range(500):
    view = synthetic.wild_viewpoint(rng)
    np.testing.assert_allclose(view @ view.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(view) == pytest.approx(1.0)
    # A point above the root (y < 0) comes towards a camera above (z < 0).
    head = view @ np.array([0.0, -1.0, 0.0])
    elevations.append(np.degrees(np.arcsin(-head[2])))
    rolls.append(np.degrees(np.arctan2(head[0], -head[1])))
  lo, hi = synthetic.WILD_ELEVATION_RANGE
  assert lo - 1e-9 <= min(elevations) and max(elevations) <= hi + 1e-9
  assert np.mean(elevations) == pytest.approx((lo + hi) / 2, abs=3)
  assert np.std(rolls) == pytest.approx(synthetic.WILD_ROLL_STD, rel=0.15)
  assert max(np.abs(rolls)) <= 35 + 1e-9


def test_labeller_hips_sit_outside_and_below_the_joint_centres():
  rng = np.random.default_rng(5)
  _, joints, _ = synthetic_people.sample_pose(rng, synthetic_people.TEMPLATE_BONE_LENGTHS)
  points = synthetic.labeller_points(joints)
  for side in SIDES:
    hip, knee = J[f'{side}_hip'], J[f'{side}_knee']
    out = joints[hip] - joints[J['pelvis']]
    thigh = joints[knee] - joints[hip]
    moved = points[hip] - joints[hip]
    np.testing.assert_allclose(moved, synthetic.HIP_LABEL_OUT * out
                               + synthetic.HIP_LABEL_DOWN * thigh, atol=1e-9)
  np.testing.assert_allclose(points[J['pelvis']],
                             (points[J['l_hip']] + points[J['r_hip']]) / 2, atol=1e-9)
  others = [j for j in range(skeleton.NUM_JOINTS)
            if j not in (J['pelvis'], J['l_hip'], J['r_hip'])]
  np.testing.assert_array_equal(points[others], joints[others])


@pytest.mark.parametrize('label_set,missing', [('mpii', ('spine', 'neck')),
                                               ('lsp', ('pelvis', 'spine', 'neck'))])
def test_human_labels_have_the_datasets_joint_sets_and_a_labellers_noise(label_set, missing):
  rng = np.random.default_rng(6)
  points = rng.uniform(0, 200, (skeleton.NUM_JOINTS, 2))
  points[0] = 0, 0
  points[1] = 200, 200  # extent 200 px
  visible = np.ones(skeleton.NUM_JOINTS, bool)
  visible[J['l_wrist']] = False  # cut off by the photo's edge
  errors = []
  for _ in range(2000):
    labels, valid = synthetic.human_labels(rng, points, visible, label_set)
    expected = np.ones(skeleton.NUM_JOINTS, bool)
    expected[[J[n] for n in missing] + [J['l_wrist']]] = False
    np.testing.assert_array_equal(valid, expected)
    errors.append(labels - points)
  errors = np.array(errors)
  std = synthetic.LABEL_NOISE * 200
  hips = [J['l_hip'], J['r_hip']]
  body = [j for j in np.flatnonzero(expected) if j not in hips]
  assert errors[:, body].std() == pytest.approx(std, rel=0.05)
  assert errors[:, hips].std() == pytest.approx(2 * std, rel=0.05)
  assert np.abs(errors[:, body].mean()) < 0.1


def test_wild_training_images_are_labelled_like_mpii_and_lsp_and_cut_by_photo_edges():
  patterns = {name: skeleton.convert_joints(np.zeros((m.max() + 1, 2)), None, m)[1]
              for name, m in synthetic.LABEL_SETS.items()}
  sets, cut, pixels = [], 0, []
  # The labeller's hips (and MPII's pelvis between them) are not where the joints are.
  exact = np.ones(skeleton.NUM_JOINTS, bool)
  exact[[J['pelvis'], J['l_hip'], J['r_hip']]] = False
  for index in range(200):
    sample = synthetic.render_sample('wild_train', index, image_size=96)
    full = patterns[sample.label_set]
    assert not (sample.labels_valid & ~full).any()
    sets.append(sample.label_set)
    hidden = full & ~sample.labels_valid
    cut += hidden.any()
    # A joint beyond the photo's edge lands on the crop's black padding.
    cols, rows = np.floor(sample.joints_2d[hidden & exact]).astype(int).T
    inside = (cols >= 0) & (cols < 96) & (rows >= 0) & (rows < 96)
    pixels += list(sample.image[rows[inside], cols[inside]])
  # All but the joints within a pixel of the edge.
  assert np.mean(np.all(np.array(pixels) == 0, axis=-1)) > 0.95 and len(pixels) > 20
  assert sets.count('mpii') / 200 == pytest.approx(synthetic.MPII_SHARE, abs=0.1)
  assert cut / 200 == pytest.approx(synthetic.TRUNCATED_SHARE, abs=0.1)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match='split'):
    synthetic.render_sample('mpii', 0)
  with pytest.raises(ValueError, match='image_size'):
    synthetic.render_sample('studio_train', 0, image_size=8)
  with pytest.raises(ValueError, match='bone_lengths'):
    synthetic_people.forward_kinematics({n: 0.0 for n in synthetic_people.JOINT_LIMITS}, np.ones(3))


def test_built_dataset_holds_the_generated_examples(tmp_path):
  builder = tfds_io.get_builder('synthetic_humans', str(tmp_path), 'smoke')
  tfds_io.ensure_built(builder)
  assert {s: builder.info.splits[s].num_examples for s in synthetic.SPLITS} == {
      'studio_train': 64, 'wild_train': 64, 'studio_val': 32, 'wild_val': 32,
      'studio_test': 32, 'wild_test': 32}
  # The builder pairs indices with the examples its worker pool returns: each stored record
  # must be its own frame's example.
  records = builder.as_data_source('studio_test')
  assert sorted(int(r['frame']) for r in records) == list(range(32))
  for stored in records:
    expected = synthetic.make_example('studio_test', int(stored['frame']))
    np.testing.assert_allclose(stored['joints_2d'], expected['joints_2d'])
    np.testing.assert_allclose(stored['joints_3d'], expected['joints_3d'])
    assert stored['subject'].decode() == expected['subject']
    # JPEG-compressed, so close rather than equal.
    assert np.abs(stored['image'].astype(int) - expected['image']).mean() < 3


def _distance_to_segments(points, starts, ends):
  """(P,) distance from each of (P, 2) points to the nearest of the (S, 2) segments."""
  d = ends - starts
  t = np.clip(np.einsum('psk,sk->ps', points[:, None] - starts, d)
              / np.maximum((d * d).sum(-1), 1e-9), 0, 1)
  nearest = starts + t[..., None] * d
  return np.linalg.norm(points[:, None] - nearest, axis=-1).min(axis=1)


def test_draw_skeleton_changes_only_pixels_near_drawn_bones():
  rng = np.random.default_rng(1)
  image = np.full((96, 128, 3), 128, np.uint8)
  joints = rng.uniform((10, 10), (118, 86), (skeleton.NUM_JOINTS, 2))
  valid = np.ones(skeleton.NUM_JOINTS, bool)
  valid[J['l_wrist']] = False
  width, radius, outline = 2, 2.0, 1
  drawn = visualize.draw_skeleton_2d(image, joints, valid, width=width, joint_radius=radius,
                                     outline=outline)
  assert drawn.dtype == np.uint8 and drawn.shape == image.shape
  np.testing.assert_array_equal(image, 128)  # the input is left alone

  changed = np.argwhere((drawn != image).any(-1))[:, ::-1] + 0.5  # pixel centres (x, y)
  bones = np.array([(p, c) for p, c in skeleton.BONES if valid[p] and valid[c]])
  starts = np.concatenate([joints[bones[:, 0]], joints[valid]])  # joints as 0-length bones
  ends = np.concatenate([joints[bones[:, 1]], joints[valid]])
  reach = max(width / 2, radius) + outline + 1.5  # + a pixel diagonal for rasterisation
  assert _distance_to_segments(changed, starts, ends).max() <= reach
  # Each drawn bone is visible at its middle, in its side's colour or the outline.
  for parent, child in bones:
    x, y = np.floor((joints[parent] + joints[child]) / 2).astype(int)
    assert (drawn[y, x] != 128).any()
  # The bone to the invalid wrist is not drawn: far from every other bone, nothing changed.
  elbow, wrist = joints[J['l_elbow']], joints[J['l_wrist']]
  probe = elbow + 0.75 * (wrist - elbow)
  if _distance_to_segments(probe[None], starts, ends)[0] > reach + 1:
    x, y = np.floor(probe).astype(int)
    np.testing.assert_array_equal(drawn[y, x], 128)


def test_image_grid_tiles_in_rows():
  images = [np.full((4, 6, 3), i, np.uint8) for i in range(5)]
  grid = visualize.image_grid(images, cols=2, pad=1, fill=255)
  assert grid.shape == (3 * 5 + 1, 2 * 7 + 1, 3)
  assert (grid[1:5, 8:14] == 1).all() and (grid[11:15, 1:7] == 4).all()
  assert (grid[11:15, 8:14] == 255).all()
  with pytest.raises(ValueError, match='cols'):
    visualize.image_grid(images, cols=0)


def test_command_line_writes_the_sample_sheet(tmp_path):
  synthetic.main(['--show', '2', '--out', str(tmp_path), '--image_size', '64'])
  sheet = np.asarray(Image.open(tmp_path / 'synthetic_samples.png'))
  # Rows: studio_train, wild_train (a labeller's 2D), wild_val.
  assert sheet.shape == (3 * 66 + 2, 2 * 66 + 2, 3)


_POOL_PARENT = '''
import multiprocessing, os, time
from concurrent import futures
from jaxpose.data import synthetic
pool = futures.ProcessPoolExecutor(1, multiprocessing.get_context('spawn'),
                                   initializer=synthetic.exit_with_parent)
print(pool.submit(os.getpid).result(), flush=True)
time.sleep(600)
'''


def _alive(pid: int) -> bool:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().split(')')[-1].split()[0] != 'Z'
  except FileNotFoundError:
    return False


def test_render_workers_end_with_a_killed_build():
  """The synthetic_humans builder's pool: its parent killed with SIGKILL (which cannot
  shut the pool down), the workers end by themselves."""
  parent = subprocess.Popen([sys.executable, '-c', _POOL_PARENT], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
  try:
    worker = int(parent.stdout.readline())
    assert _alive(worker)
  finally:
    parent.kill()
    parent.wait()
  deadline = time.monotonic() + 10
  while _alive(worker) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert not _alive(worker)
