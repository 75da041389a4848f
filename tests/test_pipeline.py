"""The input pipeline: labels move with the pixels, the device augmentation equals the
TensorFlow one it replaced on the same inputs and draws, sources mix in the configured
proportion, and the stream is deterministic and resumable."""

import os
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from jaxpose import config as config_lib
from jaxpose import geometry
from jaxpose import parallel
from jaxpose import skeleton
from jaxpose.data import augment
from jaxpose.data import pipeline
from jaxpose.data import sources
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
      image=np.zeros((size, size, 3), np.uint8), size=np.float32(size),
      joints_2d=joints_2d.astype(np.float32),
      joints_2d_valid=np.ones(J, bool), joints_3d=joints_3d.astype(np.float32),
      has_3d=np.bool_(True), has_intrinsics=np.bool_(True),
      focal=focal.astype(np.float32), principal=principal.astype(np.float32))


def _augment():
  return config_lib.base_config().data.augment


def _draws(seed, augment_config):
  return jax.device_get(jax.jit(lambda k: augment.draw(k, augment_config))(
      np.array([seed, 7], np.uint32)))


def _train_example(example, seed, input_size, augment_config):
  """``augment.train_example`` with the draws of key (seed, 7), on numpy."""
  draws = _draws(seed, augment_config)
  fn = jax.jit(lambda e, d: augment.train_example(e, d, augment_config, input_size))
  return jax.device_get(fn(example, draws))


@pytest.mark.parametrize('seed', range(6))
def test_augmented_3d_still_projects_onto_augmented_2d(seed):
  config = _augment()
  config.scale, config.rotation_deg, config.color = 0.3, 45.0, 0.0
  example = _example(seed)
  out = _train_example(example, seed, 64, config)
  projected = geometry.project(out['joints_3d'], out['focal'], out['principal'])
  assert np.abs(projected - out['joints_2d']).max() < 1.0
  # The augmentation did something: the 2D is not a plain resize of the input.
  plain = example['joints_2d'] * 64 / (192 / 1.5) - (96 - 192 / 3) * 64 / 128
  assert np.abs(out['joints_2d'] - plain).max() > 1.0


def test_flip_swaps_left_and_right():
  config = _augment()
  config.scale, config.rotation_deg, config.translation, config.color = 0.0, 0.0, 0.0, 0.0
  example = _example(1)
  results = [_train_example(example, seed, 128, config) for seed in range(12)]
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
  config = _augment()
  config.color = 0.0
  example = _example(2)
  u, v = example['joints_2d'][0]
  example['joints_2d'][0] = [np.floor(u) + 0.5, np.floor(v) + 0.5]  # a pixel centre
  example['image'][int(v) - 1:int(v) + 2, int(u) - 1:int(u) + 2] = 255
  out = _train_example(example, 1, 128, config)
  image = out['image'].sum(-1)
  peak = np.unravel_index(np.argmax(image), image.shape)
  j = out['joints_2d'][skeleton.ROOT]  # the pelvis is never swapped by a flip
  assert abs(peak[1] + 0.5 - j[0]) <= 1.0 and abs(peak[0] + 0.5 - j[1]) <= 1.0


def _masked_example(seed=0, size=192):
  """``_example`` with a textured person (a disc around the pelvis, every pixel distinct)
  on a black studio, a chair box below it, and the masks of both (person, chair)."""
  example = _example(seed, size)
  y, x = np.mgrid[:size, :size]
  u, v = example['joints_2d'][skeleton.ROOT]
  person = (x + 0.5 - u)**2 + (y + 0.5 - v)**2 < 40**2
  chair = (np.abs(x - u) < 30) & (y > v + 40) & (y < v + 70)
  rng = np.random.default_rng(seed)
  example['image'] = np.where(person[..., None], rng.integers(1, 256, (size, size, 3)),
                              0).astype(np.uint8)
  mask = np.zeros((size, size, 2), np.uint8)
  mask[..., 0], mask[..., 1] = person * 255, chair * 255
  return dict(example, mask=mask, background=np.bool_(True)), person, chair


def _composite(example, seed, picture=None):
  config = _augment()
  config.background = 1.0
  draws = _draws(seed, config)
  if picture is None:
    fn = lambda e, d: augment.composite(e['image'].astype(np.float32), e['mask'], e['size'], d)
    return np.asarray(jax.jit(fn)(example, draws))
  fn = lambda e, d, p: augment.composite(e['image'].astype(np.float32), e['mask'], e['size'],
                                         d, p, np.float32(p.shape[0]), True)
  return np.asarray(jax.jit(fn)(example, draws, picture))


def test_background_keeps_the_person_and_replaces_the_rest():
  example, person, chair = _masked_example()
  out = _composite(example, 2)
  np.testing.assert_array_equal(out[person], example['image'][person])
  studio = ~person & ~chair
  # The black studio and the chair are covered by textures (not flat: textured).
  assert (np.abs(out[studio]).sum(-1) > 0).mean() > 0.99
  assert out[studio].std(0).min() > 5 and out[chair].std() > 1
  assert out.min() >= 0 and out.max() <= 255


def test_background_pictures_fill_the_studio():
  example, person, _ = _masked_example()
  studio = ~person & (example['mask'][..., 1] == 0)
  out = _composite(example, 9, np.full((50, 50, 3), 77, np.uint8))
  np.testing.assert_array_equal(out[person], example['image'][person])
  np.testing.assert_allclose(out[studio], 77, atol=1e-3)


@pytest.mark.parametrize('seed', range(3))
def test_background_is_composited_before_the_pixels_move(seed):
  """Through the whole training transform: where the unaugmented output shows only the
  person, the background-augmented one shows the same pixels; the studio is replaced;
  the labels are the same."""
  config = _augment()
  config.color = 0.0
  example, _, _ = _masked_example(seed)
  plain = _train_example(example, seed, 96, config)
  config.background = 1.0
  changed = _train_example(example, seed, 96, config)
  for key in plain:
    if key != 'image':
      np.testing.assert_array_equal(plain[key], changed[key], err_msg=key)
  # Inside the person: where the person's mask, warped alike, is whole.
  config.background = 0.0
  silhouette = dict(example, image=np.repeat(example['mask'][..., :1], 3, -1))
  inside = (_train_example(silhouette, seed, 96, config)['image'] > 255 - 1e-3).all(-1)
  assert inside.sum() > 100
  np.testing.assert_allclose(changed['image'][inside], plain['image'][inside], atol=1e-3)
  studio = (plain['image'] == 0).all(-1)
  assert (np.abs(changed['image'][studio] - plain['image'][studio]).sum(-1) > 1).mean() > 0.9


def test_background_leaves_unmarked_examples_alone():
  config = _augment()
  example, _, _ = _masked_example()
  example['background'] = np.bool_(False)
  outs = []
  for probability in (0.0, 1.0):
    config.background = probability
    outs.append(_train_example(example, 1, 64, config)['image'])
  np.testing.assert_array_equal(outs[0], outs[1])


def _random_masked_example(seed, size):
  """A noisy crop (every pixel random: any misplaced sample shows), a person and a chair."""
  example, _, _ = _masked_example(seed, size)
  rng = np.random.default_rng(seed + 100)
  example['image'] = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
  example['has_intrinsics'] = np.bool_(seed % 3 != 2)
  return example


@pytest.mark.parametrize('seed', range(6))
def test_device_augmentation_equals_the_tensorflow_one(seed):
  """The JAX augmentation against the TensorFlow code it replaced (tests/tf_augment.py),
  on the same stored crop and the same draws: rotation, scale, shift, flip, colour, the
  background (a texture or, for odd seeds, a picture of another size) and a crop padded
  to a larger canvas. Labels to 1e-4 px/mm, pixels to the interpolation's rounding."""
  tf_augment = pytest.importorskip('tf_augment')
  config = _augment()
  config.background = 1.0
  size, canvas, input_size = 160, 192, 96
  example = _random_masked_example(seed, size)
  draws = _draws(seed, config)
  picture = np.random.default_rng(seed).integers(0, 256, (150, 150, 3)).astype(np.uint8)
  use_picture = seed % 2 == 1
  padded = dict(example, size=np.float32(size), use_picture=np.bool_(use_picture),
                picture=np.pad(picture, ((0, 50), (0, 50), (0, 0))),
                picture_size=np.float32(150))
  for key in ('image', 'mask'):
    padded[key] = np.pad(example[key], ((0, canvas - size), (0, canvas - size), (0, 0)))
  fn = jax.jit(lambda e, d: augment.train_example(e, d, config, input_size))
  ours = jax.device_get(fn(padded, draws))
  reference = dict(example, mask=np.pad(example['mask'], ((0, 0), (0, 0), (0, 1))))
  theirs = tf_augment.train_example(reference, draws, input_size, config, background=True,
                                    picture=picture if use_picture else None)
  for key in theirs:
    if key != 'image':
      np.testing.assert_allclose(ours[key], theirs[key], atol=1e-4, err_msg=key)
  np.testing.assert_allclose(ours['image'], theirs['image'], atol=0.05)
  assert np.abs(ours['image'] - theirs['image']).mean() < 1e-3


def test_evaluation_crop_equals_the_tensorflow_one():
  tf_augment = pytest.importorskip('tf_augment')
  example = _random_masked_example(4, 192)
  ours = jax.device_get(jax.jit(lambda e: augment.eval_example(e, 96))(example))
  theirs = {k: np.asarray(v) for k, v in tf_augment.eval_example(example, 96).items()}
  for key in theirs:
    np.testing.assert_allclose(ours[key], theirs[key], atol=1e-4 if key != 'image' else 0.05,
                               err_msg=key)


def test_batch_shares_follow_the_fractions():
  config = load_config('synthetic')
  assert sources.batch_shares(config.data.train, 8) == {'studio': 4, 'wild': 4}
  config.data.train.studio.fraction = 0.3
  config.data.train.wild.fraction = 0.7
  assert sources.batch_shares(config.data.train, 10) == {'studio': 3, 'wild': 7}
  assert sum(sources.batch_shares(config.data.train, 7).values()) == 7


def test_mixed_batches_are_deterministic_and_resumable():
  config = load_config('synthetic')
  config.data.train.studio.fraction = 0.25
  config.data.train.wild.fraction = 0.75
  mesh = parallel.make_mesh()
  cut = parallel.jit_data_parallel(lambda raw: augment.train_batch(
      raw, config.data.augment, config.data.input_size), mesh)
  augmented = lambda raw: jax.device_get(cut(parallel.to_global(raw, mesh)))
  stream = pipeline.TrainStream(config)
  batches = [augmented(next(stream)) for _ in range(3)]
  for batch in batches:
    # Each batch: 2 studio (3D) and 6 wild (2D-only) examples.
    assert batch['has_3d'].tolist() == [True] * 2 + [False] * 6
    assert batch['image'].shape == (8, 64, 64, 3) and batch['image'].dtype == np.uint8
  assert stream.position == {'studio': 6, 'wild': 18}
  resumed = pipeline.TrainStream(config, {'studio': 4, 'wild': 12})
  again = augmented(next(resumed))
  for key in batches[2]:
    np.testing.assert_array_equal(again[key], batches[2][key])
  # Every example its own draws: no two crops of a batch alike.
  assert len({b.tobytes() for b in batches[0]['image']}) == 8
  # 2D-only examples get a training subject's bone lengths for the bone loss.
  assert batches[0]['has_ref_bones'].all()
  assert (batches[0]['ref_bone_lengths'] > 30).all()


def test_background_batches_carry_masks_and_pictures(monkeypatch):
  """With background compositing on, the host ships each example's masks, whether to
  composite and, for half of them, a picture of a background source; the device composites
  them; a resumed stream gives the same batches. (The synthetic humans have no masks: here
  the studio examples get a person-shaped one.)"""
  config = load_config('synthetic')
  config.data.augment.background = 1.0
  config.data.augment.background_sources = ('wild',)
  decode = pipeline._Decoder.__call__

  def with_masks(self, record):
    example = decode(self, record)
    if self.masks and example['has_3d']:
      size = example['image'].shape[0]
      example['mask'] = np.zeros((size, size, 2), np.uint8)
      example['mask'][size // 4:3 * size // 4, size // 3:2 * size // 3, 0] = 255
      example['has_mask'] = True
    return example

  monkeypatch.setattr(pipeline._Decoder, '__call__', with_masks)
  stream = pipeline.TrainStream(config)
  batches = [next(stream) for _ in range(4)]
  batch = batches[-1]
  studio = batch['has_3d']
  assert batch['background'].tolist() == studio.tolist()
  assert batch['mask'][studio].max() == 255 and batch['mask'][~studio].max() == 0
  uses = np.concatenate([b['use_picture'] for b in batches])
  assert 0 < uses.sum() < np.concatenate([b['background'] for b in batches]).sum()
  wild = {decode(stream._pictures[0][1], r)['image'].tobytes()
          for r in stream.sources['wild'].records}
  for b in batches:
    for picture, used in zip(b['picture'], b['use_picture']):
      assert not used or picture.tobytes() in wild
  resumed = pipeline.TrainStream(config, {'studio': 12, 'wild': 12})
  again = next(resumed)
  for key in batch:
    np.testing.assert_array_equal(again[key], batch[key], err_msg=key)
  mesh = parallel.make_mesh()
  cut = parallel.jit_data_parallel(lambda raw: augment.train_batch(
      raw, config.data.augment, config.data.input_size), mesh)
  out = jax.device_get(cut(parallel.to_global(batch, mesh)))
  assert out['image'].shape == (8, 64, 64, 3)


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
  message = (rf"{shard}: unreadable shard of synthetic_humans/smoke/{builder.version}, split "
             rf"'studio_train' .*delete that folder and build it again")
  with pytest.raises(ValueError, match=rf"data source 'studio': {message}"):
    sources.open_source('studio', config.data.train.studio, config.data)
  # What `python -m jaxpose.data.build` runs: an existing build is checked, not trusted.
  with pytest.raises(ValueError, match=message):
    tfds_io.ensure_built(builder)


def _permuted_records(size, seed, start, stop):
  """The records of stream positions [start, stop), computed directly: record
  ``perm_e[p]`` at position ``e × size + p``."""
  return [int(np.random.default_rng((*seed, i // size)).permutation(size)[i % size])
          for i in range(start, stop)]


def test_epoch_permutations_of_positions_across_epochs():
  record_of = sources.EpochPermutations(7, (3, 1, 0))
  positions = np.arange(5, 5 + 7 * 3)  # four epochs, the first and last in part
  np.testing.assert_array_equal(record_of(positions), _permuted_records(7, (3, 1, 0), 5, 26))
  first = record_of.permutation(3)
  record_of(np.array([25, 26]))
  assert record_of.permutation(3) is first


@pytest.mark.parametrize('start', [0, 13])
def test_stream_reads_the_permuted_records(start):
  """Several epochs of a 5-example source: position i holds record ``perm_e[i mod 5]`` of
  its own epoch e, from the stream's start as from a start inside an epoch."""
  config = load_config('synthetic')
  config.data.train = dict(studio=config.data.train.studio)
  config.batch_size = 4
  source = sources.open_source('studio', config.data.train.studio, config.data)
  stream = pipeline.TrainStream(config, {'studio': start})
  got = np.concatenate([next(stream)['joints_3d'] for _ in range(5)])
  skip = {'image': pipeline.tfds.decode.SkipDecoding(),
          'mask': pipeline.tfds.decode.SkipDecoding()}
  joints = [source.builder.info.features.deserialize_example_np(
      source.records[r], decoders=skip)['joints_3d'] for r in range(len(source))]
  assert len({j.tobytes() for j in joints}) == len(joints), 'records must be told apart'
  records = _permuted_records(len(source), (0, 0, 0), start, start + 20)
  np.testing.assert_array_equal(got, np.stack([joints[r] for r in records]))


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
      'studio_train': 64, 'wild_train': 64, 'studio_val': 32, 'wild_val': 32,
      'studio_test': 32, 'wild_test': 32}
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
