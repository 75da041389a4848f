"""Restore-and-evaluate: every example counts once whatever the batch size and the devices,
and the named errors."""

import io
import json
import pathlib

import jax
import numpy as np
import pytest

from jaxpose import benchmark
from jaxpose import checkpoint
from jaxpose import evaluate
from jaxpose import fileio
from jaxpose import parallel
from jaxpose import state as state_lib
from jaxpose import train
from jaxpose.models import posenet
from PIL import Image
from conftest import load_config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  config = load_config('synthetic')
  config.total_steps = 2
  config.checkpoint_every_steps = 1
  config.image_every_steps = 0
  workdir = str(tmp_path_factory.mktemp('evaluate'))
  state = train.train_and_evaluate(config, workdir)
  return config, workdir, state


def test_metrics_do_not_depend_on_batch_size_or_devices(trained):
  config, _, state = trained
  config = config.copy_and_resolve_references()
  config.data.eval.wild_val.max_examples = 0   # all 32 examples of the smoke split
  model = posenet.create(config.model)
  results = {}
  for devices in (jax.devices()[:1], jax.devices()):
    mesh = parallel.make_mesh(devices)
    _, shardings = state_lib.create_train_state(config, mesh, model,
                                            state_lib.make_optimizer(config.optim))
    placed = jax.device_put(jax.device_get(state.variables()), shardings.variables())
    predict_fn = evaluate.make_predict_fn(config, model, mesh, shardings.variables())
    for batch_size in (1, 7, 32):
      config.eval_batch_size = batch_size
      report, _ = evaluate.evaluate_split('wild_val', config.data.eval.wild_val, config,
                                          predict_fn, placed, mesh)
      results[len(devices), batch_size] = report
  reference = results[1, 32]
  assert reference['num_examples'] == 32
  for key, report in results.items():
    assert report['num_examples'] == 32, key
    for metric in ('mpjpe', 'global_scale_mpjpe', 'n_mpjpe', 'pa_mpjpe', 'pck', 'auc'):
      assert abs(report[metric] - reference[metric]) < 1e-4, (key, metric)


def test_restore_and_evaluate_writes_reports(trained):
  config, workdir, _ = trained
  # Another optimiser (clipping adds a state): evaluation reads only the model.
  config = config.copy_and_resolve_references()
  config.optim.grad_clip_norm = 1.0
  reports = evaluate.restore_and_evaluate(config, workdir)
  assert set(reports) == {'wild_val', 'studio_val'}
  with open(f'{workdir}/eval/2/synthetic_humans_wild_val.json') as f:
    saved = json.load(f)
  assert saved['step'] == 2 and saved['num_examples'] == 16
  assert saved['mean_pose_mpjpe'] > 0
  with open(f'{workdir}/eval/2/synthetic_humans_wild_val.md') as f:
    table = f.read()
  assert '| All | 16 |' in table
  with open(f'{workdir}/eval/2/synthetic_humans_wild_val_pck.png', 'rb') as f:
    assert f.read(4) == b'\x89PNG'


def _files(directory: pathlib.Path) -> dict:
  return {p.relative_to(directory): p.read_bytes() for p in directory.rglob('*')
          if p.is_file()}


def test_other_steps_reports_survive_step_and_failing_evaluations(trained):
  config, workdir, _ = trained
  eval_dir = pathlib.Path(workdir) / 'eval'
  before = _files(eval_dir / '2')
  assert before
  reports = evaluate.restore_and_evaluate(config, workdir, step=1)
  assert reports['wild_val']['step'] == 1
  assert json.loads((eval_dir / '1' / 'synthetic_humans_wild_val.json').read_text())[
      'step'] == 1
  broken = config.copy_and_resolve_references()
  broken.data.eval.wild_val.split = 'wild_validation'   # fails after studio_val
  with pytest.raises(ValueError, match="no split 'wild_validation'"):
    evaluate.restore_and_evaluate(broken, workdir, step=1)
  assert _files(eval_dir / '2') == before
  assert not [p for p in eval_dir.rglob('*') if p.name.startswith('.tmp-')]


def test_missing_checkpoint_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match='no checkpoint in .*checkpoints'):
    evaluate.restore_and_evaluate(load_config('synthetic'), str(tmp_path))


def test_different_model_is_named(trained):
  config, workdir, _ = trained
  config = config.copy_and_resolve_references()
  config.model.width = 16
  with pytest.raises(ValueError, match=r'model.width: checkpoint 8 vs config 16'):
    evaluate.restore_and_evaluate(config, workdir)


def test_missing_split_is_named(trained):
  config, workdir, _ = trained
  config = config.copy_and_resolve_references()
  config.data.eval.wild_val.split = 'wild_validation'
  with pytest.raises(ValueError, match="no split 'wild_validation'"):
    evaluate.restore_and_evaluate(config, workdir)


def test_meta_has_config_and_position(trained):
  _, workdir, _ = trained
  meta = checkpoint.Checkpointer(workdir).read_meta()
  assert meta['config']['model']['width'] == 8
  assert meta['data_position'] == {'studio': 8, 'wild': 8}
  assert np.asarray(meta['mean_training_pose']).shape == (17, 3)


def test_pictures_are_the_same_with_the_latent_kernel_sharded(trained):
  config, _, state = trained
  model = posenet.create(config.model)
  variables = jax.device_get(state.variables())
  batch = benchmark.random_batch(config, 8)
  pictures = {}
  for fsdp in (False, True):
    mesh = parallel.make_mesh()
    shardings = parallel.state_sharding(mesh, variables, fsdp)
    placed = jax.device_put(variables, shardings)
    kernel = placed['params']['latent']['kernel']
    assert kernel.sharding.is_fully_replicated != fsdp
    predict_fn = evaluate.make_predict_fn(config, model, mesh, shardings)
    pictures[fsdp] = evaluate.prediction_pictures(predict_fn, placed,
                                                  parallel.to_global(batch, mesh), batch)
  assert pictures[True].shape == (8, 64, 128, 3)
  np.testing.assert_array_equal(pictures[True], pictures[False])


def test_reports_on_a_non_local_workdir(trained):
  """TensorFlow's ram:// stands in for gs:// (both go through tf.io.gfile): the reports of
  the trained state there equal those its training run wrote locally."""
  config, workdir, state = trained
  model = posenet.create(config.model)
  mesh = parallel.make_mesh()
  _, shardings = state_lib.create_train_state(config, mesh, model,
                                              state_lib.make_optimizer(config.optim))
  predict_fn = evaluate.make_predict_fn(config, model, mesh, shardings.variables())
  remote = f'ram://{workdir}'
  reports = evaluate.evaluate_all(config, predict_fn, state.variables(), mesh, remote, 2)
  names = {f'synthetic_humans_{split}{end}' for split in ('wild_val', 'studio_val')
           for end in ('.json', '.md', '_pck.png')}
  assert set(fileio.gfile.listdir(f'{remote}/eval/2')) == names
  stem = f'{remote}/eval/2/synthetic_humans_wild_val'
  saved = json.loads(fileio.read_text(stem + '.json'))
  assert saved == json.loads(json.dumps(reports['wild_val']))
  with open(f'{workdir}/eval/2/synthetic_humans_wild_val.json') as f:
    local = json.load(f)
  for metric in ('mpjpe', 'pa_mpjpe', 'pck', 'auc'):
    assert saved[metric] == pytest.approx(local[metric], abs=1e-4), metric
  assert '| All | 16 |' in fileio.read_text(stem + '.md')
  with fileio.gfile.GFile(stem + '_pck.png', 'rb') as f:
    assert Image.open(io.BytesIO(f.read())).format == 'PNG'
