"""The input pipeline: labels move with the pixels, sources mix in the configured
proportion, and the stream is deterministic and resumable."""

import itertools
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxpose import config as config_lib
from jaxpose import geometry
from jaxpose import skeleton
from jaxpose.data import pipeline
from jaxpose.data import tfds_io
from conftest import DATA_DIR, REPO, load_config

J = skeleton.NUM_JOINTS


def _example(seed=0, size=192):
  """A stored crop with a person-sized 3D pose in front of a camera, and its projection."""
  rng = np.random.default_rng(seed)
  joints_3d = rng.normal(0, 250, (J, 3)) + [150, -80, 4500]
  focal, principal = np.array([480.0, 480.0]), np.array([90.0, 104.0])
  joints_2d = geometry.project(joints_3d, focal, principal)
  return dict(
      image=np.zeros((size, size, 3), np.uint8), joints_2d=joints_2d.astype(np.float32),
      joints_2d_valid=np.ones(J, bool), joints_3d=joints_3d.astype(np.float32),
      has_3d=np.bool_(True), has_intrinsics=np.bool_(True),
      intrinsics=dict(focal=focal.astype(np.float32), principal=principal.astype(np.float32)),
  )


def _augment():
  return config_lib.base_config().data.augment


@pytest.mark.parametrize('seed', range(6))
def test_augmented_3d_still_projects_onto_augmented_2d(seed):
  augment = _augment()
  augment.scale, augment.rotation_deg, augment.color = 0.3, 45.0, 0.0
  example = tf.nest.map_structure(tf.constant, _example(seed))
  out = pipeline.train_example(example, tf.constant([7, seed], tf.int64), 64, augment,
                               np.zeros((0, skeleton.NUM_BONES), np.float32))
  out = {k: v.numpy() for k, v in out.items()}
  projected = geometry.project(out['joints_3d'], out['focal'], out['principal'])
  assert np.abs(projected - out['joints_2d']).max() < 1.0
  # The augmentation did something: the 2D is not a plain resize of the input.
  plain = example['joints_2d'].numpy() * 64 / (192 / 1.5) - (96 - 192 / 3) * 64 / 128
  assert np.abs(out['joints_2d'] - plain).max() > 1.0


def test_flip_swaps_left_and_right():
  augment = _augment()
  augment.scale, augment.rotation_deg, augment.translation, augment.color = 0.0, 0.0, 0.0, 0.0
  example = _example(1)
  results = []
  for seed in range(12):
    out = pipeline.train_example(tf.nest.map_structure(tf.constant, example),
                                 tf.constant([3, seed], tf.int64), 128, augment,
                                 np.zeros((0, skeleton.NUM_BONES), np.float32))
    results.append({k: v.numpy() for k, v in out.items()})
  # Without rotation the pelvis's x keeps its sign unless the crop is flipped.
  x = example['joints_3d'][0, 0]
  straight = [r for r in results if abs(r['joints_3d'][0, 0] - x) < 1e-3]
  flipped = [r for r in results if abs(r['joints_3d'][0, 0] + x) < 1e-3]
  assert len(straight) + len(flipped) == len(results)
  assert straight and flipped, 'a fair coin should give both in 12 draws'
  f, s = flipped[0], straight[0]
  # Mirrored 3D with left and right swapped: the flipped right hip is the mirrored left hip.
  np.testing.assert_allclose(f['joints_3d'][1], s['joints_3d'][4] * [-1, 1, 1], atol=1e-3)
  np.testing.assert_allclose(f['joints_2d'][1, 1], s['joints_2d'][4, 1], atol=1e-3)


def test_pixels_move_with_the_labels():
  """A bright dot drawn at a joint lands where the transformed joint lands."""
  augment = _augment()
  augment.color = 0.0
  example = _example(2)
  u, v = example['joints_2d'][0]
  example['joints_2d'][0] = [np.floor(u) + 0.5, np.floor(v) + 0.5]  # a pixel centre
  example['image'][int(v) - 1:int(v) + 2, int(u) - 1:int(u) + 2] = 255
  out = pipeline.train_example(tf.nest.map_structure(tf.constant, example),
                               tf.constant([5, 1], tf.int64), 128, augment,
                               np.zeros((0, skeleton.NUM_BONES), np.float32))
  image = out['image'].numpy().sum(-1)
  peak = np.unravel_index(np.argmax(image), image.shape)
  j = out['joints_2d'].numpy()[skeleton.ROOT]  # the pelvis is never swapped by a flip
  assert abs(peak[1] + 0.5 - j[0]) <= 1.0 and abs(peak[0] + 0.5 - j[1]) <= 1.0


def _masked_example(seed=0, size=192):
  """``_example`` with a textured person (a disc around the pelvis, every pixel distinct)
  on a black studio, a chair box below it, and the masks of both."""
  example = _example(seed, size)
  y, x = np.mgrid[:size, :size]
  u, v = example['joints_2d'][skeleton.ROOT]
  person = (x + 0.5 - u)**2 + (y + 0.5 - v)**2 < 40**2
  chair = (np.abs(x - u) < 30) & (y > v + 40) & (y < v + 70)
  rng = np.random.default_rng(seed)
  example['image'] = np.where(person[..., None], rng.integers(1, 256, (size, size, 3)),
                              0).astype(np.uint8)
  mask = np.zeros((size, size, 3), np.uint8)
  mask[..., 0], mask[..., 1] = person * 255, chair * 255
  return dict(example, mask=mask, has_mask=np.bool_(True)), person, chair


def test_background_keeps_the_person_and_replaces_the_rest():
  example, person, chair = _masked_example()
  out = pipeline.composite_background(example['image'], example['mask'],
                                      tf.constant([4, 2], tf.int64)).numpy()
  np.testing.assert_array_equal(out[person], example['image'][person])
  studio = ~person & ~chair
  # The black studio and the chair are covered by textures (not flat: textured).
  assert (np.abs(out[studio]).sum(-1) > 0).mean() > 0.99
  assert out[studio].std(0).min() > 5 and out[chair].std() > 1
  assert out.min() >= 0 and out.max() <= 255


def test_background_images_come_from_the_given_function():
  example, person, _ = _masked_example()
  picture = lambda seed: tf.fill([50, 70, 3], tf.constant(77, tf.uint8))
  studio = ~person & (example['mask'][..., 1] == 0)
  pictures = 0
  for seed in range(8):
    out = pipeline.composite_background(example['image'], example['mask'],
                                        tf.constant([seed, 9], tf.int64), picture).numpy()
    np.testing.assert_array_equal(out[person], example['image'][person])
    pictures += np.allclose(out[studio], 77)
  assert 0 < pictures < 8, 'a fair coin picks the image or a texture'


@pytest.mark.parametrize('seed', range(3))
def test_background_is_composited_before_the_pixels_move(seed):
  """Through the whole training transform: where the unaugmented output shows only the
  person, the background-augmented one shows the same pixels; the studio is replaced;
  the labels are the same."""
  augment = _augment()
  augment.color = 0.0
  example, _, _ = _masked_example(seed)
  plain = pipeline.train_example(tf.nest.map_structure(tf.constant, example),
                                 tf.constant([6, seed], tf.int64), 96, augment,
                                 np.zeros((0, skeleton.NUM_BONES), np.float32))
  augment.background = 1.0
  changed = pipeline.train_example(tf.nest.map_structure(tf.constant, example),
                                   tf.constant([6, seed], tf.int64), 96, augment,
                                   np.zeros((0, skeleton.NUM_BONES), np.float32))
  plain, changed = ({k: v.numpy() for k, v in d.items()} for d in (plain, changed))
  for key in plain:
    if key != 'image':
      np.testing.assert_array_equal(plain[key], changed[key], err_msg=key)
  # Well inside the person: the 3×3 neighbourhood of the pixel is all person.
  inside = np.ones((96, 96), bool)
  person = (plain['image'] > 0).all(-1)
  for dy in (-1, 0, 1):
    for dx in (-1, 0, 1):
      inside &= np.roll(person, (dy, dx), (0, 1))
  assert inside.sum() > 100
  np.testing.assert_allclose(changed['image'][inside], plain['image'][inside], atol=1e-3)
  studio = (plain['image'] == 0).all(-1)
  assert (np.abs(changed['image'][studio] - plain['image'][studio]).sum(-1) > 1).mean() > 0.9


def test_background_leaves_examples_without_masks_alone():
  augment = _augment()
  example, _, _ = _masked_example()
  example['has_mask'] = np.bool_(False)
  outs = []
  for probability in (0.0, 1.0):
    augment.background = probability
    out = pipeline.train_example(tf.nest.map_structure(tf.constant, example),
                                 tf.constant([1, 1], tf.int64), 64, augment,
                                 np.zeros((0, skeleton.NUM_BONES), np.float32))
    outs.append(out['image'].numpy())
  np.testing.assert_array_equal(outs[0], outs[1])


def test_batch_shares_follow_the_fractions():
  config = load_config('synthetic')
  assert pipeline.batch_shares(config.data.train, 8) == {'studio': 4, 'wild': 4}
  config.data.train.studio.fraction = 0.3
  config.data.train.wild.fraction = 0.7
  assert pipeline.batch_shares(config.data.train, 10) == {'studio': 3, 'wild': 7}
  assert sum(pipeline.batch_shares(config.data.train, 7).values()) == 7


def test_mixed_batches_are_deterministic_and_resumable():
  config = load_config('synthetic')
  config.data.train.studio.fraction = 0.25
  config.data.train.wild.fraction = 0.75
  stream = pipeline.TrainStream(config)
  batches = [next(stream) for _ in range(3)]
  for batch in batches:
    # Each batch: 2 studio (3D) and 6 wild (2D-only) examples.
    assert batch['has_3d'].tolist() == [True] * 2 + [False] * 6
    assert batch['image'].shape == (8, 64, 64, 3) and batch['image'].dtype == np.uint8
  assert stream.position == {'studio': 6, 'wild': 18}
  resumed = pipeline.TrainStream(config, {'studio': 4, 'wild': 12})
  again = next(resumed)
  for key in batches[2]:
    np.testing.assert_array_equal(again[key], batches[2][key])
  # 2D-only examples get a training subject's bone lengths for the bone loss.
  assert batches[0]['has_ref_bones'].all()
  assert (batches[0]['ref_bone_lengths'] > 30).all()


def test_background_sources_must_be_training_sources():
  config = load_config('synthetic')
  config.data.augment.background = 0.5
  config.data.augment.background_sources = ('mpii',)
  with pytest.raises(ValueError, match=r"background_sources names \['mpii'\], not training "
                     r"sources of this batch; expected some of \['studio', 'wild'\]"):
    pipeline.TrainStream(config)
  config.data.augment.background = 0.0
  with pytest.raises(ValueError, match='augment.background is 0'):
    pipeline.TrainStream(config)


def test_data_dir_defaults_to_tfds_data_dir(monkeypatch, tmp_path):
  assert config_lib.base_config().data.data_dir == ''
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))
  builder = tfds_io.get_builder('synthetic_humans', '', 'smoke')
  assert str(builder.data_dir).startswith(str(tmp_path / 'synthetic_humans'))
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert tfds_io.resolve_data_dir('') == os.path.expanduser('~/tensorflow_datasets')
  # A data_dir that is set wins over the variable.
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path))
  assert tfds_io.resolve_data_dir('~/elsewhere') == os.path.expanduser('~/elsewhere')


def test_data_dir_on_a_bucket_is_kept_as_given():
  for path in ('gs://bucket/tensorflow_datasets', 's3://bucket/data', 'relative/data'):
    assert tfds_io.resolve_data_dir(path) == path


def test_damaged_dataset_info_is_named(tmp_path):
  version = str(tfds_io.builder_class('synthetic_humans').VERSION)
  build = tmp_path / 'synthetic_humans' / 'smoke' / version
  build.mkdir(parents=True)
  (build / 'dataset_info.json').write_text('{"name": "synth')
  with pytest.raises(ValueError, match=r'dataset_info\.json of its build under '
                     + str(tmp_path / 'synthetic_humans' / 'smoke') + ' is damaged'):
    tfds_io.get_builder('synthetic_humans', str(tmp_path), 'smoke')


def test_truncated_shard_is_named_and_not_taken_for_a_build(tmp_path):
  config = load_config('synthetic')
  tfds_io.ensure_built(tfds_io.get_builder('synthetic_humans', DATA_DIR, 'smoke'))
  shutil.copytree(DATA_DIR, tmp_path, dirs_exist_ok=True)
  config.data.data_dir = str(tmp_path)
  builder = tfds_io.get_builder('synthetic_humans', str(tmp_path), 'smoke')
  [shard] = [p for p in builder.data_path.iterdir() if 'studio_train.array_record' in p.name]
  data = shard.read_bytes()
  shard.write_bytes(data[:len(data) // 2])
  message = (rf"{shard}: unreadable shard of synthetic_humans/smoke/1.1.0, split "
             rf"'studio_train' .*delete that folder and build it again")
  with pytest.raises(ValueError, match=rf"data source 'studio': {message}"):
    pipeline.open_source('studio', config.data.train.studio, config.data)
  # What `python -m jaxpose.data.build` runs: an existing build is checked, not trusted.
  with pytest.raises(ValueError, match=message):
    tfds_io.ensure_built(builder)


def _permuted_records(size, seed, start, stop):
  """The records of stream positions [start, stop), computed directly: record
  ``perm_e[p]`` at position ``e × size + p``."""
  return [int(np.random.default_rng((*seed, i // size)).permutation(size)[i % size])
          for i in range(start, stop)]


def test_epoch_permutations_under_threads_are_each_calls_own_epoch():
  """Threads reading consecutive positions at once, as tf.data's parallel map does, each
  get the record of their own position's epoch, with another thread allowed to run between
  any two lines of the lookup (as a garbage collection, or Python without a GIL, allows)."""
  size, seed, epochs, workers = 7, (3, 1, 0), 12, 8
  expected = _permuted_records(size, seed, 0, size * epochs)
  record_of = pipeline._EpochPermutations(size, seed)
  results = [[] for _ in range(workers)]

  def walk(t):
    for i in range(t, size * epochs, workers):
      results[t].append((i, record_of(i)))

  def yield_each_line(frame, event, arg):
    del arg
    if frame.f_code.co_filename != pipeline.__file__:
      return None
    if event == 'line':
      time.sleep(0)  # releases the GIL: another thread may run here
    return yield_each_line

  threading.settrace(yield_each_line)
  try:
    threads = [threading.Thread(target=walk, args=(t,)) for t in range(workers)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
  finally:
    threading.settrace(None)
  assert sorted(i for result in results for i, _ in result) == list(range(size * epochs))
  wrong = [(i, r, expected[i]) for result in results for i, r in result if r != expected[i]]
  assert not wrong, f'{len(wrong)} calls got another epoch\'s record, e.g. {wrong[:3]}'


def test_epochs_alternating_reuse_their_permutations():
  record_of = pipeline._EpochPermutations(5, (2,))
  first = record_of.permutation(0)
  for index in (4, 5, 3, 6, 2):  # around the end of epoch 0, as parallel reads come
    record_of(index)
  assert record_of.permutation(0) is first
  np.testing.assert_array_equal(record_of.permutation(1), _permuted_records(5, (2,), 5, 10))


@pytest.mark.parametrize('start', [0, 13])
def test_parallel_reads_over_epochs_read_the_permuted_records(start):
  """Several epochs of a 5-example source, read by tf.data's parallel map: position i
  holds record ``perm_e[i mod 5]`` of its own epoch e, from the stream's start as from a
  start inside an epoch."""
  config = load_config('synthetic')
  source = pipeline.open_source('studio', config.data.train.studio, config.data, limit=5)
  assert len(source) == 5
  seed = (0, 1, 0)
  stream = pipeline._index_stream(source, start, seed, shuffle=True)
  got = list(itertools.islice(stream.as_numpy_iterator(), 20))
  skip = {'image': tfds.decode.SkipDecoding(), 'mask': tfds.decode.SkipDecoding()}
  joints = [source.builder.info.features.deserialize_example_np(
      source.records[r], decoders=skip)['joints_3d'] for r in range(5)]
  assert len({j.tobytes() for j in joints}) == 5, 'records must be told apart'
  records = _permuted_records(5, seed, start, start + 20)
  assert [int(i) for i, _ in got] == list(range(start, start + 20))
  for (index, example), record in zip(got, records):
    np.testing.assert_array_equal(example['joints_3d'], joints[record], err_msg=str(index))


def test_resume_across_an_epoch_boundary_equals_the_uninterrupted_stream():
  config = load_config('synthetic')
  config.data.train.studio.fraction = 0.25
  config.data.train.wild.fraction = 0.75
  # 64 examples a source: 'wild', 6 a batch, ends its first epoch inside batch 10.
  stream = pipeline.TrainStream(config)
  batches = [next(stream) for _ in range(12)]
  resumed = pipeline.TrainStream(config, {'studio': 2 * 9, 'wild': 6 * 9})
  for step in range(9, 12):
    again = next(resumed)
    for key in batches[step]:
      np.testing.assert_array_equal(again[key], batches[step][key], err_msg=f'{step} {key}')
  assert resumed.position == {'studio': 24, 'wild': 72}


def test_build_killed_midway_leaves_nothing_trusted_and_builds_again(tmp_path):
  """`python -m jaxpose.data.build` killed with SIGKILL once split files are being
  written: no build is seen there, and the next build completes and reads back."""
  data_dir, log = tmp_path / 'data', tmp_path / 'build.log'
  with open(log, 'w') as out:
    build = subprocess.Popen(
        [sys.executable, '-m', 'jaxpose.data.build', '--dataset=synthetic_humans',
         '--builder_config=smoke', f'--data_dir={data_dir}'],
        cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 300
    written = []
    while not written and build.poll() is None and time.monotonic() < deadline:
      time.sleep(0.05)
      written = [p for p in data_dir.glob('synthetic_humans/smoke/incomplete*/*')
                 if 'array_record' in p.name]
    assert written, (f'no split file written before the build ended ({build.returncode}):\n'
                     f'{log.read_text()[-3000:]}')
  finally:
    build.kill()
    build.wait()
  builder = tfds_io.get_builder('synthetic_humans', str(data_dir), 'smoke')
  assert not builder.is_prepared()
  assert not builder.data_path.exists()
  tfds_io.ensure_built(builder)
  builder = tfds_io.get_builder('synthetic_humans', str(data_dir), 'smoke')
  assert builder.is_prepared()
  assert {n: s.num_examples for n, s in builder.info.splits.items()} == {
      'studio_train': 64, 'wild_train': 64, 'studio_test': 32, 'wild_test': 32}
  for split in builder.info.splits:
    tfds_io.check_readable(builder, split)
    assert len(builder.as_data_source(split)) == builder.info.splits[split].num_examples


def test_build_reports_a_user_error_in_one_line(tmp_path):
  bad = tmp_path / 'mpii'
  shutil.copytree(REPO / 'datasets' / 'mpii' / 'dummy_data', bad)
  done = subprocess.run(
      [sys.executable, '-m', 'jaxpose.data.build', '--dataset=mpii', '--builder_config=mat',
       f'--manual_dir={tmp_path / "missing"}', f'--data_dir={tmp_path / "data"}'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1, done.stderr[-2000:]
  assert 'Traceback' not in done.stderr
  assert str(tmp_path / 'missing') in done.stderr.splitlines()[-1]
