"""Restore a checkpoint and evaluate it on every evaluation split of its config.

``python -m jaxpose.evaluate --config=configs/synthetic.py --workdir=DIR [--step=N]
[--out=OUT]`` writes, for each split, ``DIR/eval/<step>/<dataset>_<split>.json`` (or
``OUT/<step>/...``; the protocol's report),
``.md`` (its tables) and ``_pck.png`` (PCK against threshold), each file complete or not
at all (written aside and renamed). The train loop calls ``evaluate_all`` periodically with
the live state.
"""

from __future__ import annotations

import functools
import json
import os

import jax
import ml_collections
import numpy as np
from absl import flags
from absl import logging
from jax.experimental import multihost_utils

from jaxpose import cli
from jaxpose import config as config_lib
from jaxpose import fileio
from jaxpose import geometry
from jaxpose import losses
from jaxpose import metrics
from jaxpose import parallel
from jaxpose import protocols
from jaxpose import state as state_lib
from jaxpose import visualize
from jaxpose.data import augment
from jaxpose.data import pipeline
from jaxpose.models import posenet


def predict(variables: dict, batch: dict, *, model: posenet.PoseNet,
            config: ml_collections.ConfigDict) -> dict:
  """Root-relative 3D in the real camera frame (perspective-corrected) and 2D in the crop."""
  outputs = model.apply(variables, batch['image'], train=False)
  pose = outputs['pose_3d']
  rotation = losses.model_frame_rotation(batch, config)
  if rotation is not None:
    pose = geometry.correct_perspective(pose, rotation)
  return dict(pose_3d=pose, pose_2d=outputs['pose_2d'])


def make_predict_fn(config: ml_collections.ConfigDict, model: posenet.PoseNet, mesh,
                    variable_shardings):
  """``predict`` compiled for ``mesh``: build it once per run and pass it to
  ``evaluate_all`` and ``prediction_pictures`` (each new one compiles again)."""
  return parallel.jit_predict(functools.partial(predict, model=model, config=config), mesh,
                              variable_shardings)


def _gather(tree):
  """Host-local numpy rows of every process, concatenated in process order."""
  return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def _local_rows(array: jax.Array) -> np.ndarray:
  shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
  return np.concatenate([np.asarray(s.data) for s in shards])


@functools.lru_cache(maxsize=None)
def _cut_fn(input_size: int, mesh):
  """``augment.eval_batch`` compiled once per input size and mesh: the crops are cut on
  the devices, the host only decodes."""
  return parallel.jit_data_parallel(
      functools.partial(augment.eval_batch, input_size=input_size), mesh)


def evaluate_split(name: str, source_config, config: ml_collections.ConfigDict, predict_fn,
                   variables, mesh, mean_pose=None) -> dict:
  """Runs ``predict_fn`` over one split and scores it with the split's protocol. Every
  batch is dispatched before the first prediction is fetched."""
  local_batch_size = config.eval_batch_size // jax.process_count()
  if local_batch_size * jax.process_count() != config.eval_batch_size:
    raise ValueError(f'config.eval_batch_size={config.eval_batch_size} is not divisible by '
                     f'{jax.process_count()} processes')
  rows = {k: [] for k in ('pred', 'gt', 'valid', 'has_3d', 'mask')}
  meta_rows = {k: [] for k in pipeline.META_KEYS}
  local_devices = len(mesh.local_devices)
  padded_size = -(-local_batch_size // local_devices) * local_devices
  cut = _cut_fn(config.data.input_size, mesh)
  for batch, meta in pipeline.eval_batches(name, source_config, config, local_batch_size,
                                           padded_size):
    arrays = cut(parallel.to_global({k: v for k, v in batch.items() if k != 'mask'}, mesh))
    rows['pred'].append(predict_fn(variables, arrays)['pose_3d'])
    rows['gt'].append(geometry.root_centre(batch['joints_3d']))
    rows['valid'].append(batch['joints_2d_valid'])
    rows['has_3d'].append(batch['has_3d'])
    rows['mask'].append(batch['mask'])
    for k, v in meta.items():
      meta_rows[k].append(v)
  rows['pred'] = [_local_rows(pred) for pred in rows['pred']]
  local = {k: np.concatenate(v) for k, v in rows.items()}
  meta = {k: np.concatenate(v) for k, v in meta_rows.items()}
  if jax.process_count() > 1:
    local = _gather(local)
    meta = {k: _gather_strings(v) if v.dtype.kind == 'U' else _gather(v) for k, v in meta.items()}
  keep = local['mask'] & local['has_3d']
  if not keep.any():
    raise ValueError(f'evaluation source {name!r} has no examples with 3D labels')
  pred, gt = local['pred'][keep].astype(np.float64), local['gt'][keep].astype(np.float64)
  # Every joint of a 3D-labelled example has a 3D label (2D validity is about the crop).
  valid = np.ones_like(local['valid'][keep])
  meta = {k: v[keep] for k, v in meta.items()}
  report = protocols.evaluate(source_config.protocol, pred, gt, valid, meta,
                              global_scale_size=config.global_scale_size)
  if mean_pose is not None:
    baseline = np.broadcast_to(np.asarray(mean_pose, np.float64), gt.shape)
    report['mean_pose_mpjpe'] = float(metrics.mpjpe(baseline, gt).mean())
  report['source'] = dict(dataset=source_config.dataset, split=source_config.split,
                          builder_config=source_config.builder_config)
  return report, (pred, gt, valid)


def _gather_strings(values: np.ndarray) -> np.ndarray:
  width = max(1, int(multihost_utils.process_allgather(
      np.array(max((len(v.encode()) for v in values), default=0)), tiled=False).max()))
  codes = np.zeros((len(values), width), np.uint8)
  for i, v in enumerate(values):
    b = v.encode()
    codes[i, :len(b)] = np.frombuffer(b, np.uint8)
  codes = _gather(codes)
  return np.array([bytes(c).rstrip(b'\0').decode() for c in codes])


def evaluate_all(config: ml_collections.ConfigDict, predict_fn, variables, mesh,
                 workdir: str, step: int, writer=None, mean_pose=None,
                 out_dir: str | None = None) -> dict:
  """Evaluates ``variables`` (params and batch_stats) with ``predict_fn``
  (``make_predict_fn``) on every split of ``config.data.eval``; writes JSON, Markdown and a
  PCK plot per split to ``out_dir`` (default ``workdir/eval/<step>``) and scalars to
  ``writer``. Returns the reports."""
  out_dir = out_dir or os.path.join(workdir, 'eval', str(step))
  reports = {}
  for name in sorted(config.data.eval):
    source_config = config.data.eval[name]
    report, (pred, gt, valid) = evaluate_split(name, source_config, config, predict_fn,
                                               variables, mesh, mean_pose)
    report['step'] = int(step)
    reports[name] = report
    summary = {k: report[k] for k in ('mpjpe', 'global_scale_mpjpe', 'n_mpjpe', 'pa_mpjpe',
                                      'pck', 'auc', 'global_scale_pck', 'global_scale_auc',
                                      'mean_pose_mpjpe') if k in report}
    logging.info('Evaluation %s at step %d (%d examples): %s', name, step,
                 report['num_examples'], summary)
    if writer is not None:
      writer.write_scalars(step, {f'eval/{name}/{k}': v for k, v in summary.items()})
    if jax.process_index() == 0:
      stem = os.path.join(out_dir, f'{source_config.dataset}_{source_config.split}')
      try:
        fileio.gfile.makedirs(out_dir)
        fileio.write_atomically(stem + '.json', lambda f: json.dump(report, f, indent=1))
        fileio.write_atomically(stem + '.md',
                                lambda f: f.write(protocols.to_markdown(report)))
        fileio.write_atomically(
            stem + '_pck.png',
            lambda f: protocols.plot_pck(pred, gt, valid, f, config.global_scale_size),
            binary=True)
      except Exception as e:  # pylint: disable=broad-except
        if not cli.is_file_system_error(e):
          raise
        # The numbers are in the log already; name where they could not go.
        raise OSError(f'cannot write the report {stem}.json/.md/_pck.png of step {step}: '
                      f'{" ".join(str(e).split())} (its numbers are in the log above; '
                      'jaxpose.evaluate --out=DIR writes them elsewhere)') from e
  return reports


def prediction_pictures(predict_fn, variables, batch: dict, local_batch: dict,
                        max_images: int = 8) -> np.ndarray:
  """This process's first crops of ``local_batch`` (``batch`` is the same on the devices)
  with the labelled 2D skeleton (left) and the predicted one (right: the camera head's
  projection of the 3D prediction), for TensorBoard. ``predict_fn`` is the evaluation's
  (``make_predict_fn``): it runs on the mesh, so sharded parameters (fsdp) work."""
  n = min(max_images, len(local_batch['image']))
  predicted_2d = _local_rows(predict_fn(variables, batch)['pose_2d'])
  pictures = []
  for i in range(n):
    image = np.asarray(local_batch['image'][i], np.uint8)
    labelled = visualize.draw_skeleton_2d(image, local_batch['joints_2d'][i],
                                          local_batch['joints_2d_valid'][i], width=1)
    predicted = visualize.draw_skeleton_2d(image, predicted_2d[i], width=1)
    pictures.append(np.concatenate([labelled, predicted], axis=1))
  return np.stack(pictures)


def restore_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                         step: int | None = None, out: str | None = None) -> dict:
  """Restores the model variables of ``workdir``'s checkpoint (the latest, or ``step``) into
  the current mesh and evaluates them on every evaluation split of ``config``; the reports
  go to ``out/<step>`` (default ``workdir/eval/<step>``), checked writable first. Only the
  model is read, so the optimiser settings of ``config`` need not match the run's."""
  config_lib.validate(config, training=False)
  mesh = parallel.make_mesh()
  loaded = state_lib.load_model(
      workdir, step, config,
      lambda abstract: parallel.state_sharding(mesh, abstract, config.fsdp))
  out_dir = os.path.join(out or os.path.join(workdir, 'eval'), str(loaded.step))
  if jax.process_index() == 0:
    check_writable(out_dir, '--out' if out else '--workdir')
  shardings = jax.tree.map(lambda x: x.sharding, loaded.variables)
  return evaluate_all(config, make_predict_fn(config, loaded.model, mesh, shardings),
                      loaded.variables, mesh, workdir, loaded.step,
                      mean_pose=loaded.meta.get('mean_training_pose'), out_dir=out_dir)


def check_writable(directory: str, flag: str) -> None:
  """Raises, naming ``directory`` and ``flag``, unless a file can be written there (before
  the evaluation, which takes long, rather than after it)."""
  try:
    fileio.gfile.makedirs(directory)
    fileio.write_atomically(os.path.join(directory, '.writable'), lambda f: f.write('x'))
    fileio.gfile.remove(os.path.join(directory, '.writable'))
  except Exception as e:  # pylint: disable=broad-except
    if not cli.is_file_system_error(e):
      raise
    raise OSError(f'cannot write the reports to {directory} ({flag}): '
                  f'{" ".join(str(e).split())}; give another folder with --out') from e


def main(argv):
  del argv
  reports = restore_and_evaluate(cli.FLAGS.config, cli.FLAGS.workdir, cli.FLAGS.step,
                                 cli.FLAGS.out)
  for name, report in reports.items():
    print(f'## {name}\n\n{protocols.to_markdown(report)}')


def define_flags():
  flags.DEFINE_string('out', None, 'Folder for the reports, <out>/<step>/... (default: '
                      'WORKDIR/eval), e.g. when the workdir is read-only or full.')


if __name__ == '__main__':
  cli.run(main, define_flags=define_flags)
