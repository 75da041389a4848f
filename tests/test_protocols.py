"""Protocols against hand-computed pooling on small constructed examples."""

import json

import matplotlib.colors
import numpy as np
import PIL.Image
import pytest

from jaxpose import protocols
from jaxpose import skeleton


def _gt(n, seed=0):
  """Root-relative poses in whole millimetres, so that errors built by hand are exact."""
  poses = np.round(np.random.default_rng(seed).normal(scale=250.0,
                                                      size=(n, skeleton.NUM_JOINTS, 3)))
  return poses - poses[:, :1]


def _shifted(gt, errors):
  """Prediction whose every joint of example i is ``errors[i]`` mm off (along x)."""
  return gt + np.asarray(errors, np.float64)[:, None, None] * np.array([1.0, 0.0, 0.0])


def _valid(n):
  return np.ones((n, skeleton.NUM_JOINTS), bool)


def _3dhp_meta(sequences, activity='Sports'):
  sequences = np.array(sequences)
  return dict(sequence=sequences,
              scene=np.array([protocols.MPI_INF_3DHP_SEQUENCE_SCENE[s] for s in sequences]),
              action=np.full(len(sequences), activity), frame=np.arange(len(sequences)))


def _3dhp_example():
  """3 TS1 frames 100 mm off, 1 TS2 frame 200 mm off, 2 TS5 frames 20 mm off."""
  sequences = ['TS1'] * 3 + ['TS2'] + ['TS5'] * 2
  errors = [100.0] * 3 + [200.0] + [20.0] * 2
  gt = _gt(len(errors))
  return _shifted(gt, errors), gt, _valid(len(errors)), _3dhp_meta(sequences)


def test_3dhp_scene_is_frame_weighted_over_its_sequences():
  report = protocols.evaluate('mpi_inf_3dhp', *_3dhp_example())
  none = report['alignments']['none']
  ts1, ts2, gs = none['by_sequence']['TS1'], none['by_sequence']['TS2'], none['by_scene']['GS']
  n1, n2 = ts1['num_examples'], ts2['num_examples']
  assert (n1, n2, gs['num_examples']) == (3, 1, 4)
  for metric in ('mpjpe', 'pck', 'auc'):
    assert gs[metric] == pytest.approx((n1 * ts1[metric] + n2 * ts2[metric]) / (n1 + n2))
  # By hand: PCK 100 % on TS1 and 0 % on TS2; the mean of the sequences would say 50.
  assert gs['pck'] == pytest.approx(75.0)
  assert gs['mpjpe'] == pytest.approx(125.0)
  assert gs['auc'] == pytest.approx(3 * (100 * 10 / 31) / 4)  # 100 < t for t = 105..150.


def test_3dhp_all_pools_every_frame():
  report = protocols.evaluate('mpi_inf_3dhp', *_3dhp_example())
  scenes = report['alignments']['none']['by_scene']
  assert list(scenes) == ['GS', 'outdoor', 'All']
  assert scenes['All']['num_examples'] == report['num_examples'] == 6
  assert scenes['All']['mpjpe'] == pytest.approx((3 * 100 + 200 + 2 * 20) / 6)
  assert scenes['All']['mpjpe'] != pytest.approx((scenes['GS']['mpjpe'] + 20.0) / 2)
  assert report['mpjpe'] == scenes['All']['mpjpe']
  assert report['pck'] == scenes['All']['pck'] == pytest.approx(100 * 5 / 6)


def test_3dhp_uses_the_14_pck_joints_and_all_17_for_mpjpe():
  gt = _gt(2)
  pred = gt.copy()
  left_out = [j for j in range(skeleton.NUM_JOINTS) if j not in skeleton.PCK_JOINTS]
  pred[:, left_out, 0] += 500.0
  report = protocols.evaluate('mpi_inf_3dhp', pred, gt, _valid(2), _3dhp_meta(['TS3', 'TS4']))
  assert report['pck'] == 100.0
  assert report['mpjpe'] == pytest.approx(500.0 * len(left_out) / 17)
  assert report['pck_joints'] == [skeleton.JOINT_NAMES[j] for j in skeleton.PCK_JOINTS]


def test_3dhp_activity_and_joint_group_tables():
  gt = _gt(3)
  pred = gt.copy()
  pred[:, [skeleton.JOINT_INDEX['l_wrist'], skeleton.JOINT_INDEX['r_wrist']], 1] += 40.0
  meta = _3dhp_meta(['TS1', 'TS3', 'TS6'])
  meta['action'] = np.array(['Sitting', 'On the floor', 'Sitting'])
  none = protocols.evaluate('mpi_inf_3dhp', pred, gt, _valid(3), meta)['alignments']['none']
  assert list(none['by_activity']) == ['Sitting', 'On the floor']
  assert none['by_activity']['Sitting']['num_examples'] == 2
  groups = none['by_joint_group']
  assert list(groups) == list(protocols.MPI_INF_3DHP_JOINT_GROUPS)
  assert groups['wrists']['mpjpe'] == pytest.approx(40.0)
  assert all(groups[g]['mpjpe'] == 0.0 for g in groups if g != 'wrists')


def test_alignments_remove_what_they_should():
  gt = _gt(4)
  pred = 1.3 * gt
  meta = _3dhp_meta(['TS1', 'TS2', 'TS3', 'TS5'])
  report = protocols.evaluate('mpi_inf_3dhp', pred, gt, _valid(4), meta)
  assert report['mpjpe'] > 10.0
  for key in ('global_scale_mpjpe', 'n_mpjpe', 'pa_mpjpe'):
    assert report[key] == pytest.approx(0.0, abs=1e-9), key
  assert report['alignments']['procrustes']['pck'] == 100.0


def test_h36m_action_wise_and_frame_weighted_means_differ_as_by_hand():
  gt = _gt(4)
  pred = _shifted(gt, [10.0, 10.0, 10.0, 50.0])
  meta = dict(action=np.array(['Directions'] * 3 + ['Eating']), frame=np.arange(4))
  report = protocols.evaluate('h36m', pred, gt, _valid(4), meta)
  none = report['alignments']['none']
  assert none['action_wise_mean']['mpjpe'] == pytest.approx((10 + 50) / 2)
  assert none['frame_weighted_mean']['mpjpe'] == pytest.approx((3 * 10 + 50) / 4)
  assert (none['action_wise_mean']['mpjpe'] - none['frame_weighted_mean']['mpjpe']
          == pytest.approx(10.0))
  assert report['mpjpe'] == report['protocol_1']['action_wise_mean'] == pytest.approx(30.0)
  assert report['protocol_1']['frame_weighted_mean'] == pytest.approx(20.0)
  assert report['protocol_2']['metric'] == 'PA-MPJPE'
  assert report['protocol_2']['action_wise_mean'] == report['pa_mpjpe']
  assert list(none['by_action']) == ['Directions', 'Eating']
  assert len(report['missing_actions']) == 13


def test_h36m_every_nth_keeps_frames_divisible_by_n():
  frames = np.arange(0, 200)
  gt = _gt(len(frames))
  pred = _shifted(gt, np.where(frames % 64 == 0, 10.0, 90.0))
  meta = dict(action=np.array(protocols.H36M_ACTIONS)[frames % 15], frame=frames)
  report = protocols.evaluate('h36m', pred, gt, _valid(len(frames)), meta, every_nth=64)
  assert report['num_examples'] == 4  # Frames 0, 64, 128, 192.
  assert report['every_nth'] == 64
  assert report['mpjpe'] == pytest.approx(10.0)
  assert protocols.evaluate('h36m', pred, gt, _valid(len(frames)), meta)['num_examples'] == 200
  with pytest.raises(ValueError, match='every_nth'):
    protocols.evaluate('h36m', pred, gt, _valid(len(frames)), meta, every_nth=0)
  del meta['frame']
  with pytest.raises(ValueError, match='frame'):
    protocols.evaluate('h36m', pred, gt, _valid(len(frames)), meta, every_nth=64)


def test_generic_breaks_down_by_scene():
  gt = _gt(3)
  pred = _shifted(gt, [10.0, 30.0, 50.0])
  meta = dict(scene=np.array(['studio', 'outdoor', 'studio']))
  report = protocols.evaluate('generic', pred, gt, _valid(3), meta)
  scenes = report['alignments']['none']['by_scene']
  assert list(scenes) == ['outdoor', 'studio', 'All']
  assert scenes['studio']['mpjpe'] == pytest.approx(30.0)
  assert scenes['All']['mpjpe'] == report['mpjpe'] == pytest.approx(30.0)


@pytest.mark.parametrize('name', ['generic', 'h36m', 'mpi_inf_3dhp'])
def test_reports_are_json_and_carry_the_headline_keys(name):
  pred, gt, valid, meta = _3dhp_example()
  if name == 'h36m':
    meta['action'] = np.array(['Walking'] * 6)
  valid[0, 5] = False  # Some invalid joints must not break anything.
  report = json.loads(json.dumps(protocols.evaluate(name, pred, gt, valid, meta),
                                 allow_nan=False))
  assert report['protocol'] == name and report['num_examples'] == 6
  for key in ('mpjpe', 'global_scale_mpjpe', 'n_mpjpe', 'pa_mpjpe', 'pck', 'auc'):
    assert isinstance(report[key], float)
  assert set(report['alignments']) == {'none', 'global_scale', 'least_squares_scale',
                                       'procrustes'}
  assert report['alignments']['least_squares_scale']['mpjpe'] == report['n_mpjpe']
  assert report['alignments']['global_scale']['mpjpe'] == report['global_scale_mpjpe']


def test_markdown_has_the_rows():
  pred, gt, valid, meta = _3dhp_example()
  text = protocols.to_markdown(protocols.evaluate('mpi_inf_3dhp', pred, gt, valid, meta))
  for row in ('| GS |', '| outdoor |', '| All |', '| TS2 |', '| Sports |', '| wrists |',
              'PCK Procrustes', 'MPJPE globally scaled', 'PCK N-MPJPE scale', 'AUC unscaled',
              '14 joints'):
    assert row in text
  assert '| GS | 4 | 75.0 |' in text

  meta['action'] = np.array(['Walking'] * 4 + ['Photo'] * 2)
  text = protocols.to_markdown(protocols.evaluate('h36m', pred, gt, valid, meta))
  for row in ('| Walking |', '| Photo |', '| Action-wise mean |', '| Frame-weighted mean |',
              'Protocol #1', 'Protocol #2'):
    assert row in text

  text = protocols.to_markdown(protocols.evaluate('generic', pred, gt, valid, meta))
  assert '| noGS |' not in text and '| GS |' in text and '| All |' in text


def test_plot_pck_draws_each_alignments_curve_where_its_pck_lies(tmp_path, monkeypatch):
  """Half the frames 40 mm off, half 120 mm off (every joint, along x): unaligned and
  globally scaled (the bone lengths are unchanged) PCK is 0 up to 40 mm, 50 % up to
  120 mm and 100 % beyond, the N-MPJPE scale's at 50 % at 70 mm too, and Procrustes, which
  removes the shift, 100 % from the start. The curves are checked in the decoded PNG, at
  the pixels where the plot's own axes put their points."""
  gt = _gt(4)
  pred = _shifted(gt, [40.0, 40.0, 120.0, 120.0])
  drawn = []

  class Canvas(protocols.FigureCanvasAgg):  # keeps the figure, to map data to pixels

    def __init__(self, figure):
      drawn.append(figure)
      super().__init__(figure)

  monkeypatch.setattr(protocols, 'FigureCanvasAgg', Canvas)
  path = tmp_path / 'pck.png'
  protocols.plot_pck(pred, gt, _valid(4), path)
  with PIL.Image.open(path) as image:
    pixels = np.asarray(image.convert('RGB'), np.float64)
  [figure] = drawn
  axes = figure.axes[0]
  assert pixels.shape[:2] == (figure.bbox.height, figure.bbox.width)
  none, global_scale, least_squares, procrustes = axes.lines
  thresholds = np.arange(151.0)
  # A joint counts where its error is strictly below the threshold.
  steps = 100.0 * ((thresholds > 40).astype(float) + (thresholds > 120)) / 2
  for line, expected in ((none, steps), (global_scale, steps),
                         (procrustes, 100.0 * (thresholds > 0))):
    np.testing.assert_allclose(line.get_ydata(), expected)
  assert least_squares.get_ydata()[70] == 50.0

  def colour_at(threshold, pck):
    x, y = axes.transData.transform((threshold, pck))
    return pixels[int(round(figure.bbox.height - y - 0.5)), int(x)]

  colours = [255 * np.array(matplotlib.colors.to_rgb(line.get_color())) for line in axes.lines]
  # Away from the grid's ticks (multiples of 20) and the legend (lower right), the last
  # curve drawn through a point shows there; the axes' frame hides a curve at 0 or 100 %.
  np.testing.assert_allclose(colour_at(70, 50), colours[2], atol=40)
  for pck in (30, 75):  # no curve between the steps
    np.testing.assert_allclose(colour_at(70, pck), 255.0)
  # Every curve has its colour in the picture (the legend's sample at least).
  for colour in colours:
    assert np.sum(np.all(np.abs(pixels - colour) < 20, -1)) >= 10, colour


def test_bad_input_is_refused_clearly():
  pred, gt, valid, meta = _3dhp_example()
  with pytest.raises(ValueError, match="generic.*h36m.*mpi_inf_3dhp"):
    protocols.evaluate('3dpw', pred, gt, valid, meta)
  with pytest.raises(ValueError, match='valid'):
    protocols.evaluate('generic', pred, gt, valid[:, :14], meta)
  with pytest.raises(ValueError, match='pred'):
    protocols.evaluate('generic', pred[:, :14], gt, valid, meta)
  absent = valid.copy()
  absent[0, 3] = False
  with pytest.raises(ValueError, match='gt must be finite'):
    protocols.evaluate('generic', pred, np.where(absent[..., None], gt, np.nan), absent, meta)
  with pytest.raises(ValueError, match='action'):
    protocols.evaluate('h36m', pred, gt, valid, dict(meta, action=np.array(['Dancing'] * 6)))
  with pytest.raises(ValueError, match='scene'):
    protocols.evaluate('mpi_inf_3dhp', pred, gt, valid, dict(meta, scene=np.array(['GS'] * 6)))
  with pytest.raises(ValueError, match='sequence'):
    protocols.evaluate('mpi_inf_3dhp', pred, gt, valid, dict(meta, sequence=np.array(['TS7'] * 6)))
  with pytest.raises(ValueError, match='scene'):
    protocols.evaluate('generic', pred, gt, valid, {})
