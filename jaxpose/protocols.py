"""Benchmark protocols: per-example predictions → the tables of the paper (numpy only).

Every protocol takes ``pred`` and ``gt`` (N, 17, 3) root-relative poses in millimetres (the
caller has already applied perspective correction), ``valid`` (N, 17) bool, and ``meta``, a
dict of (N,) arrays (str: subject, sequence, action, scene, camera; int: frame; each protocol
needs only some of them). ``evaluate`` picks a protocol by name and returns a JSON-serialisable
report::

  {'protocol': str, 'num_examples': int,
   'mpjpe', 'global_scale_mpjpe', 'n_mpjpe', 'pa_mpjpe': the headline MPJPE under each
       alignment ('none', 'global_scale', 'least_squares_scale', 'procrustes'),
   'pck', 'auc': the headline PCK and AUC, unaligned; 'global_scale_pck', 'global_scale_auc'
       the same globally scaled (the paper's headline alignment),
   'headline': how the headline numbers average the frames,
   'pck_joints', 'mpjpe_joints': the joint names each metric uses,
   'alignments': {<mode of metrics.ALIGNMENTS>:
                      {'mpjpe', 'pck', 'auc': headline numbers under that alignment,
                       <breakdown>: {<row>: {'num_examples', 'mpjpe', 'pck', 'auc'}}}},
   ...protocol-specific keys}

How frames are pooled (the official MPI-INF-3DHP way; frame-weighted everywhere unless a key
says otherwise): MPJPE is the mean over frames of each frame's mean over its valid joints;
PCK and AUC count (frame, joint) pairs over the PCK joints that are valid. Alignments are
fitted per example on all its valid joints. A number with nothing to average is None.
``ALIGNMENT_NAMES`` labels each alignment in tables; the README ("Evaluate a checkpoint")
says which of the paper's tables uses which.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxpose import metrics
from jaxpose import skeleton

ALIGNMENT_NAMES = {'none': 'unscaled', 'global_scale': 'globally scaled',
                   'least_squares_scale': 'N-MPJPE scale', 'procrustes': 'Procrustes'}
_MPJPE_KEYS = {'none': 'mpjpe', 'global_scale': 'global_scale_mpjpe',
               'least_squares_scale': 'n_mpjpe', 'procrustes': 'pa_mpjpe'}
_METRICS = ('pck', 'auc', 'mpjpe')  # The paper's column order.

# Human3.6M's actions in the order of the usual tables (canonical names in meta['action']).
H36M_ACTIONS = (
    'Directions', 'Discussion', 'Eating', 'Greeting', 'Phoning', 'Posing', 'Purchases',
    'Sitting', 'SittingDown', 'Smoking', 'Photo', 'Waiting', 'Walking', 'WalkDog',
    'WalkTogether')

MPI_INF_3DHP_SCENES = ('GS', 'noGS', 'outdoor')
MPI_INF_3DHP_SEQUENCE_SCENE = {
    'TS1': 'GS', 'TS2': 'GS', 'TS3': 'noGS', 'TS4': 'noGS', 'TS5': 'outdoor', 'TS6': 'outdoor'}
MPI_INF_3DHP_ACTIVITIES = (
    'Standing/Walking', 'Exercising', 'Sitting', 'Reaching/Crouching', 'On the floor',
    'Sports', 'Miscellaneous')
# The official per-joint-group table, in H36M-17 names: 3DHP's head_top, neck and head become
# H36M-17's head, thorax and neck (see skeleton.MPI_INF_3DHP_17_TO_H36M).
MPI_INF_3DHP_JOINT_GROUPS = {
    'head': ('head',),
    'neck': ('thorax',),
    'shoulders': ('r_shoulder', 'l_shoulder'),
    'elbows': ('r_elbow', 'l_elbow'),
    'wrists': ('r_wrist', 'l_wrist'),
    'hips': ('r_hip', 'l_hip'),
    'knees': ('r_knee', 'l_knee'),
    'ankles': ('r_ankle', 'l_ankle'),
}
ALL = 'All'


# --- Inputs --------------------------------------------------------------------------------

def _check_poses(pred, gt, valid):
  pred, gt, valid = np.asarray(pred, np.float64), np.asarray(gt, np.float64), np.asarray(valid)
  if pred.ndim != 3 or pred.shape[1:] != (skeleton.NUM_JOINTS, 3) or not len(pred):
    raise ValueError(f'pred must have shape (N, {skeleton.NUM_JOINTS}, 3) with N > 0, '
                     f'got {pred.shape}')
  shape = pred.shape
  if gt.shape != shape:
    raise ValueError(f'gt must have the shape of pred {shape}, got {gt.shape}')
  if valid.shape != shape[:2]:
    raise ValueError(f'valid must have shape (N, {skeleton.NUM_JOINTS}) = {shape[:2]}, '
                     f'got {valid.shape}')
  for name, poses in (('pred', pred), ('gt', gt)):
    if not np.all(np.isfinite(poses)):  # Invalid joints too: NaN * 0 would poison the means.
      raise ValueError(f'{name} must be finite (zeros where absent), got '
                       f'{np.sum(~np.isfinite(poses))} non-finite values')
  return pred, gt, valid.astype(bool)


def _meta(meta, key, n, kind=str):
  """meta[key] as an (n,) array of ``kind`` (bytes from TF are decoded)."""
  if not isinstance(meta, Mapping) or key not in meta:
    raise ValueError(f'meta must be a dict with the key {key!r} for this protocol')
  values = np.asarray(meta[key])
  if values.shape != (n,):
    raise ValueError(f'meta[{key!r}] must have shape ({n},), got {values.shape}')
  if kind is str:
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values], str)
  if not np.issubdtype(values.dtype, np.integer):
    raise ValueError(f'meta[{key!r}] must hold integers, got dtype {values.dtype}')
  return values


def _check_names(values, allowed, what):
  unknown = sorted(set(values) - set(allowed))
  if unknown:
    raise ValueError(f'{what} must be among {tuple(allowed)}, got {unknown}')


# --- Pooling -------------------------------------------------------------------------------

def _per_example(aligned, gt, mpjpe_mask, pck_mask):
  """Per-example numbers and the weights that pool them (see the module docstring)."""
  return dict(mpjpe=metrics.mpjpe(aligned, gt, mpjpe_mask), mpjpe_weight=mpjpe_mask.any(-1),
              pck=metrics.pck_3d(aligned, gt, pck_mask), auc=metrics.auc_3d(aligned, gt, pck_mask),
              pck_weight=pck_mask.sum(-1))


def _weighted_mean(values, weights):
  total = np.sum(weights)
  if total == 0:
    return None
  return float(np.sum(np.where(weights > 0, values * weights, 0.0)) / total)


def _mean(values):
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def _pool(examples, rows):
  """One table cell: the examples selected by the (N,) bool ``rows``, pooled."""
  return dict(num_examples=int(np.sum(rows)),
              mpjpe=_weighted_mean(examples['mpjpe'], rows * examples['mpjpe_weight']),
              pck=_weighted_mean(examples['pck'], rows * examples['pck_weight']),
              auc=_weighted_mean(examples['auc'], rows * examples['pck_weight']))


def _breakdown(examples, labels, order):
  """Cells for each label of ``order`` that occurs in ``labels``, in that order."""
  return {name: _pool(examples, labels == name) for name in order if np.any(labels == name)}


def _aligned(pred, gt, valid, global_scale_size):
  """mode → (N, 17, 3) prediction aligned per example on its valid joints."""
  return {mode: metrics.align(pred, gt, mode, valid, global_scale_size)
          for mode in metrics.ALIGNMENTS}


def _pck_mask(valid):
  return valid & np.isin(np.arange(skeleton.NUM_JOINTS), skeleton.PCK_JOINTS)


def _report(protocol, num_examples, alignments, headline, global_scale_size, **extra):
  return dict(
      protocol=protocol, num_examples=num_examples,
      global_scale_reference=metrics.global_scale_reference(global_scale_size),
      **{key: alignments[mode]['mpjpe'] for mode, key in _MPJPE_KEYS.items()},
      pck=alignments['none']['pck'], auc=alignments['none']['auc'],
      global_scale_pck=alignments['global_scale']['pck'],
      global_scale_auc=alignments['global_scale']['auc'], headline=headline,
      pck_joints=[skeleton.JOINT_NAMES[j] for j in skeleton.PCK_JOINTS],
      mpjpe_joints=list(skeleton.JOINT_NAMES), alignments=alignments, **extra)


# --- Protocols -----------------------------------------------------------------------------

def generic(pred, gt, valid, meta, global_scale_size: float = 0.0) -> dict:
  """Every frame pooled, plus a breakdown by ``meta['scene']`` (rows: scenes sorted, then All).

  For the synthetic data. PCK/AUC over ``skeleton.PCK_JOINTS`` that are valid, MPJPE over
  every valid joint. ``global_scale_size``: the reference of 'global_scale' (``metrics.align``'s
  ``size``), in every protocol.
  """
  pred, gt, valid = _check_poses(pred, gt, valid)
  scene = _meta(meta, 'scene', len(pred))
  if ALL in scene:
    raise ValueError(f'meta["scene"] must not use the name {ALL!r} (the row of all frames)')
  alignments = {}
  for mode, aligned in _aligned(pred, gt, valid, global_scale_size).items():
    examples = _per_example(aligned, gt, valid, _pck_mask(valid))
    total = _pool(examples, np.ones(len(pred), bool))
    by_scene = _breakdown(examples, scene, sorted(set(scene)))
    alignments[mode] = dict(**{k: total[k] for k in _METRICS}, by_scene={**by_scene, ALL: total})
  return _report('generic', len(pred), alignments, 'all frames pooled', global_scale_size)


def h36m(pred, gt, valid, meta, every_nth: int | None = None,
         global_scale_size: float = 0.0) -> dict:
  """Human3.6M: per action, the action-wise mean and the frame-weighted mean.

  Protocol #1 is MPJPE (no alignment), Protocol #2 is PA-MPJPE (Procrustes); the report
  names them under 'protocol_1' and 'protocol_2', and the paper's Table 2 (globally scaled
  MPJPE) under 'paper_table_2'. The headline numbers are action-wise
  means (the mean of the per-action numbers, over the actions present); 'frame_weighted_mean'
  counts every frame once.

  Args:
    pred, gt, valid, meta: as in the module docstring; meta needs 'action' (canonical names,
      ``H36M_ACTIONS``) and, with ``every_nth``, 'frame'.
    every_nth: keep only frames with ``frame % every_nth == 0`` (the paper tests on every 64th
      frame); None keeps every frame given.
  """
  pred, gt, valid = _check_poses(pred, gt, valid)
  action = _meta(meta, 'action', len(pred))
  _check_names(action, H36M_ACTIONS, 'meta["action"]')
  if every_nth is not None:
    if isinstance(every_nth, bool) or not isinstance(every_nth, (int, np.integer)) or (
        every_nth < 1):
      raise ValueError(f'every_nth must be a positive int or None, got {every_nth!r}')
    keep = _meta(meta, 'frame', len(pred), int) % every_nth == 0
    if not keep.any():
      raise ValueError(f'no frame has frame % {every_nth} == 0')
    pred, gt, valid, action = pred[keep], gt[keep], valid[keep], action[keep]
  alignments = {}
  for mode, aligned in _aligned(pred, gt, valid, global_scale_size).items():
    examples = _per_example(aligned, gt, valid, _pck_mask(valid))
    by_action = _breakdown(examples, action, H36M_ACTIONS)
    action_wise = {k: _mean([row[k] for row in by_action.values()]) for k in _METRICS}
    alignments[mode] = dict(**action_wise, action_wise_mean=action_wise,
                            frame_weighted_mean=_pool(examples, np.ones(len(pred), bool)),
                            by_action=by_action)

  def named(metric, mode):
    return dict(metric=metric, alignment=mode,
                action_wise_mean=alignments[mode]['action_wise_mean']['mpjpe'],
                frame_weighted_mean=alignments[mode]['frame_weighted_mean']['mpjpe'])

  return _report(
      'h36m', len(pred), alignments, 'action-wise mean over the actions present',
      global_scale_size,
      every_nth=None if every_nth is None else int(every_nth),
      missing_actions=[a for a in H36M_ACTIONS if a not in alignments['none']['by_action']],
      protocol_1=named('MPJPE', 'none'), protocol_2=named('PA-MPJPE', 'procrustes'),
      paper_table_2=named('MPJPE', 'global_scale'))


def mpi_inf_3dhp(pred, gt, valid, meta, global_scale_size: float = 0.0) -> dict:
  """MPI-INF-3DHP test: by scene (GS, noGS, outdoor, All), sequence, activity, joint group.

  A scene pools the frames of its sequences; All pools every frame (not a mean of rows).
  PCK/AUC over the 14 ``skeleton.PCK_JOINTS``, MPJPE over all 17. meta needs 'sequence'
  (TS1..TS6), 'scene' (``MPI_INF_3DHP_SCENES``, matching the sequence) and 'action' (the
  activity, ``MPI_INF_3DHP_ACTIVITIES``). Valid-frame filtering is the caller's job.
  """
  pred, gt, valid = _check_poses(pred, gt, valid)
  n = len(pred)
  sequence, scene, activity = (_meta(meta, k, n) for k in ('sequence', 'scene', 'action'))
  _check_names(sequence, MPI_INF_3DHP_SEQUENCE_SCENE, 'meta["sequence"]')
  _check_names(activity, MPI_INF_3DHP_ACTIVITIES, 'meta["action"]')
  expected = np.array([MPI_INF_3DHP_SEQUENCE_SCENE[s] for s in sequence], str)
  if np.any(scene != expected):
    i = int(np.argmax(scene != expected))
    raise ValueError(f'meta["scene"] must match the sequence: example {i} is {sequence[i]} '
                     f'but its scene is {scene[i]!r}, expected {expected[i]!r}')
  groups = {name: valid & np.isin(np.arange(skeleton.NUM_JOINTS),
                                  [skeleton.JOINT_INDEX[j] for j in joints])
            for name, joints in MPI_INF_3DHP_JOINT_GROUPS.items()}
  alignments = {}
  for mode, aligned in _aligned(pred, gt, valid, global_scale_size).items():
    examples = _per_example(aligned, gt, valid, _pck_mask(valid))
    total = _pool(examples, np.ones(n, bool))
    alignments[mode] = dict(
        **{k: total[k] for k in _METRICS},
        by_scene={**_breakdown(examples, scene, MPI_INF_3DHP_SCENES), ALL: total},
        by_sequence=_breakdown(examples, sequence, sorted(MPI_INF_3DHP_SEQUENCE_SCENE)),
        by_activity=_breakdown(examples, activity, MPI_INF_3DHP_ACTIVITIES),
        by_joint_group={name: _pool(_per_example(aligned, gt, mask, mask), np.ones(n, bool))
                        for name, mask in groups.items()})
  return _report('mpi_inf_3dhp', n, alignments, 'All: every frame pooled', global_scale_size,
                 joint_groups={k: list(v) for k, v in MPI_INF_3DHP_JOINT_GROUPS.items()})


PROTOCOLS = {'generic': generic, 'h36m': h36m, 'mpi_inf_3dhp': mpi_inf_3dhp}


def evaluate(protocol: str, pred, gt, valid, meta, **options) -> dict:
  """The report of the protocol named ``protocol`` (a key of ``PROTOCOLS``)."""
  if protocol not in PROTOCOLS:
    raise ValueError(f'protocol must be one of {tuple(PROTOCOLS)}, got {protocol!r}')
  return PROTOCOLS[protocol](pred, gt, valid, meta, **options)


# --- Presentation --------------------------------------------------------------------------

def _number(value):
  return '–' if value is None else f'{value:.1f}'


def _rows(report, key):
  """row → mode → cell, for the breakdown ``key`` of every alignment."""
  alignments = report['alignments']
  return {row: {mode: alignments[mode][key][row] for mode in alignments}
          for row in alignments['none'][key]}


def _table(label, rows, metric_names=_METRICS):
  """A markdown table: one line per row, a column per (alignment, metric)."""
  names = {'mpjpe': 'MPJPE', 'pck': 'PCK', 'auc': 'AUC'}
  columns = [(mode, m) for mode in metrics.ALIGNMENTS for m in metric_names]
  header = [label, 'Frames'] + [f'{names[m]} {ALIGNMENT_NAMES[mode]}' for mode, m in columns]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for row, by_mode in rows.items():
    values = [_number(by_mode[mode][m]) for mode, m in columns]
    lines.append('| ' + ' | '.join([row, str(by_mode['none']['num_examples'])] + values) + ' |')
  return '\n'.join(lines)


def _h36m_markdown(report, title):
  rows = _rows(report, 'by_action')
  for key, name in (('action_wise_mean', 'Action-wise mean'),
                    ('frame_weighted_mean', 'Frame-weighted mean')):
    rows[name] = {mode: dict(cells[key], num_examples=report['num_examples'])
                  for mode, cells in report['alignments'].items()}
  every_nth = report['every_nth']
  note = (f'MPJPE (mm) over the valid ones of all {len(report["mpjpe_joints"])} joints, '
          f'{f"frames with frame % {every_nth} == 0" if every_nth else "every frame given"}. '
          'Protocol #1 = MPJPE unscaled, Protocol #2 = PA-MPJPE (MPJPE Procrustes); the '
          'paper\'s Table 2 reports MPJPE globally scaled, its Table 3 Procrustes. '
          f'{ALIGNMENTS_NOTE} '
          'Action-wise mean = mean of the per-action rows (the usual headline); '
          'frame-weighted mean = every frame counts once.')
  if report['missing_actions']:
    note += (' Actions with no frame, left out of the means: '
             f'{", ".join(report["missing_actions"])}.')
  return [title, note, _table('Action', rows, ('mpjpe',))]


ALIGNMENTS_NOTE = (
    'Alignments: unscaled = as predicted; globally scaled = scaled so that the bone lengths '
    'sum to the ground truth\'s (the paper\'s "glob. scaled"); N-MPJPE scale = the '
    'least-squares scale; Procrustes = the least-squares similarity transform.')


def to_markdown(report: dict) -> str:
  """The report's tables in the paper's layout (rows: scenes/actions; columns per alignment)."""
  protocol = report.get('protocol')
  title = f'## {protocol}: {report["num_examples"]} examples'
  joints = (f'PCK (error < {metrics.PCK_THRESHOLD:g} mm, %) and AUC (PCK averaged over '
            f'0, 5, …, 150 mm) over the {len(report["pck_joints"])} joints '
            f'{", ".join(report["pck_joints"])}; MPJPE (mm) over the valid ones of all '
            f'{len(report["mpjpe_joints"])} joints. {ALIGNMENTS_NOTE}')
  if protocol == 'generic':
    parts = [title, joints, _table('Scene', _rows(report, 'by_scene'))]
  elif protocol == 'mpi_inf_3dhp':
    parts = [title, joints,
             '### By scene (a scene pools its frames; All pools every frame)',
             _table('Scene', _rows(report, 'by_scene')),
             '### By sequence', _table('Sequence', _rows(report, 'by_sequence')),
             '### By activity', _table('Activity', _rows(report, 'by_activity')),
             '### By joint group (each over its own joints)',
             _table('Joint group', _rows(report, 'by_joint_group'))]
  elif protocol == 'h36m':
    parts = _h36m_markdown(report, title)
  else:
    raise ValueError(f'report["protocol"] must be one of {tuple(PROTOCOLS)}, got {protocol!r}')
  return '\n\n'.join(parts) + '\n'


def plot_pck(pred, gt, valid, path, global_scale_size: float = 0.0) -> None:
  """Writes a PNG of PCK (%) against the threshold (0..150 mm) under the three alignments
  to ``path`` (a local path or a binary file object).

  PCK over the valid ``skeleton.PCK_JOINTS``, pooled over (frame, joint) pairs; alignments
  fitted on all valid joints.
  """
  pred, gt, valid = _check_poses(pred, gt, valid)
  thresholds = np.arange(0.0, 151.0)
  mask = _pck_mask(valid)
  weights = mask.sum(-1)
  figure = Figure(figsize=(5, 4))
  axes = figure.add_subplot()
  for mode, aligned in _aligned(pred, gt, valid, global_scale_size).items():
    curve = metrics.pck_3d(aligned, gt, mask, thresholds)
    pooled = np.sum(np.where(weights[:, None] > 0, curve * weights[:, None], 0.0), 0)
    auc = _weighted_mean(metrics.auc_3d(aligned, gt, mask), weights)
    axes.plot(thresholds, pooled / max(weights.sum(), 1),
              label=f'{ALIGNMENT_NAMES[mode]} (AUC {_number(auc)})')
  axes.set(xlabel='threshold (mm)', ylabel='3D PCK (%)', xlim=(0, 150), ylim=(0, 100),
           title=f'3D PCK, {len(skeleton.PCK_JOINTS)} joints, {len(pred)} examples')
  axes.grid(alpha=0.3)
  axes.legend(loc='lower right')
  FigureCanvasAgg(figure).print_png(path)
