"""The paper's Table 5 for any stage-2 experiment: one stage 1, then every row of the
experiment for every seed, each warm-started from that stage 1.

  python -m jaxpose.ablation --config=configs/synthetic.py[:study] --workdir=DIR [--seeds=5]

The experiment names its study (``config.ablation``): the stage-1 config and the variants
that are the rows (``config.TABLE5_ROWS``: baseline, latent_2d, projection, all). The
variants of ``--config`` (``:study``, ``:smoke``) and its overrides (``--config.k=v``) apply
to every run, stage 1 included (its own variants last); an override may not set what a row
switches. Stage 1 trains in ``DIR/stage1``; row ``r`` with seed ``s`` (``config.seed + k``
for k < ``--seeds``: the stage-2 initialisation and the data order change with it) trains in
``DIR/<r>_seed<s>`` from ``DIR/stage1``'s weights (``config.init.checkpoint``; not
``config.init.backbone``). Training evaluates the validation splits (``data.eval``); after
it, the run's test splits (``data.test``) are evaluated once, for the report.

Runs go one after another in this process, one line of progress each with the study's ETA
(from the seconds per step measured so far) and validation numbers only. A second call
skips finished runs (the final checkpoint and both parts' reports present), resumes an
interrupted one and refuses a run directory trained with another config. After every row
run it writes ``DIR/ablation.json`` (every run's numbers and times, the table and the
tests), ``DIR/ablation.md`` (Table 5's layout for validation and for test: mean ± std over
seeds of each split's 3D PCK / AUC / MPJPE, globally scaled as the paper and unscaled; the
one-sided Welch t-tests of each row against the baseline and of "all" against the better
single component) and ``DIR/ablation.png`` (the rows as bars with error bars, test and
validation, the paper's numbers beside them).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time

import jax
import ml_collections
import numpy as np
from absl import flags
from scipy import stats
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from ml_collections import config_flags

from jaxpose import checkpoint
from jaxpose import cli
from jaxpose import config as config_lib
from jaxpose import evaluate
from jaxpose import fileio
from jaxpose import metrics
from jaxpose import protocols
from jaxpose import train

# Table 5 of the paper: MPI-INF-3DHP, 3D PCK / AUC, globally scaled, H3.6M the only 3D data.
PAPER_TABLE5 = {'baseline': (62.3, 30.3), 'latent_2d': (66.4, 33.0),
                'projection': (69.5, 35.3), 'all': (70.4, 36.0)}
ALIGNMENTS = ('global_scale', 'none')  # The paper's first.
METRICS = ('pck', 'auc', 'mpjpe')
_METRIC_NAMES = {'pck': '3D PCK', 'auc': 'AUC', 'mpjpe': 'MPJPE (mm)'}
STAGE1 = 'stage1'
# A run's evaluations: its validation splits (data.eval), which choices are made on, and its
# test splits (data.test), read once after training for the report.
PARTS = ('validation', 'test')
# Keys naming places rather than the experiment: a study directory may move.
_LOCATIONS = ('data.data_dir', 'init.checkpoint')


@dataclasses.dataclass
class Run:
  """One training run of the study, with its complete config."""
  name: str                      # its sub-workdir of the study's directory
  workdir: str
  config: ml_collections.ConfigDict
  row: str | None = None         # None for stage 1
  seed: int | None = None


def load_config(spec: str, overrides: dict | None = None) -> ml_collections.ConfigDict:
  """The config of ``<file>.py[:<variants>]`` (as ``--config`` loads it) with the flat
  ``overrides`` (``{'data.data_dir': ...}``, as ``--config.<key>=`` sets them)."""
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'config file {path} (of {spec!r}) not found')
  module_spec = importlib.util.spec_from_file_location(
      f'ablation_config_{os.path.splitext(os.path.basename(path))[0]}', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  try:
    config = module.get_config(arg or None)
  except ValueError as e:
    raise ValueError(f'{spec}: {e}') from e
  config.update_from_flattened_dict(dict(overrides or {}))
  return config


def _join_variants(*variants: str) -> str:
  return ','.join(v for v in variants if v)


def plan(spec: str, workdir: str, seeds: int, overrides: dict | None = None) -> list[Run]:
  """The study's runs, stage 1 first, for ``--config=spec --workdir=workdir``."""
  if seeds < 1:
    raise ValueError(f'--seeds={seeds}: expected at least 1')
  path, _, arg = spec.partition(':')
  base = load_config(spec, overrides)
  stage1_spec, rows = base.ablation.stage1, tuple(base.ablation.rows)
  if not stage1_spec or not rows:
    raise ValueError(f'{path} names no ablation study: config.ablation.stage1='
                     f'{stage1_spec!r}, config.ablation.rows={rows!r} (see configs/synthetic.py)')
  named = sorted(set(filter(None, arg.split(','))) & (set(rows) | {STAGE1}))
  if named:
    raise ValueError(f'--config={spec}: the study runs every row itself; drop {named} from '
                     'the variants')
  stage1_path, _, stage1_arg = stage1_spec.partition(':')
  # The stage-1 variants come last: what stage 1 is wins over the study's common settings.
  stage1_spec = (os.path.join(os.path.dirname(path), stage1_path) + ':'
                 + _join_variants(arg, stage1_arg))
  workdir = fileio.absolute(workdir)
  stage1_dir = os.path.join(workdir, STAGE1)
  plain = checkpoint.config_to_json(load_config(spec))
  runs = [Run(STAGE1, stage1_dir, _checked(stage1_spec, overrides, plain))]
  for k in range(seeds):
    seed = base.seed + k
    for row in rows:
      config = _checked(f'{path}:{_join_variants(row, arg)}', overrides, plain)
      config.seed = seed
      config.init.checkpoint = stage1_dir
      config.init.backbone = ''  # Stage 1's weights hold the backbone.
      name = f'{row}_seed{seed}'
      runs.append(Run(name, os.path.join(workdir, name), config, row, seed))
  return runs


def _checked(spec: str, overrides: dict | None, plain: dict) -> ml_collections.ConfigDict:
  """The config of ``spec`` with ``overrides``; raises if one of them sets a key that the
  run's variants set (against ``plain``, the study's config without them) or the warm
  start, which would silently undo what the run is for."""
  switched = ['init.checkpoint'] + [
      d.key for d in _differences(plain, checkpoint.config_to_json(load_config(spec)))]
  for key in overrides or {}:
    clash = [s for s in switched if s == key or s.startswith(key + '.')
             or key.startswith(s + '.')]
    if clash:
      raise ValueError(f'--config.{key} would override what the study sets in {spec} '
                       f'({", ".join(clash)}): drop it')
  return load_config(spec, overrides)


def report_path(workdir: str, source: ml_collections.ConfigDict, step: int) -> str:
  """Where ``jaxpose.evaluate`` writes the report of evaluation split ``source`` at
  ``step``."""
  return os.path.join(workdir, 'eval', str(step), f'{source.dataset}_{source.split}.json')


def read_reports(run: Run, part: str) -> dict | None:
  """Split name -> the run's report at its final step, of its validation splits
  (``data.eval``) or its test splits (``data.test``) as ``part`` says; None if one is
  missing or older."""
  reports = {}
  for name, source in _sources(run.config, part).items():
    path = report_path(run.workdir, source, run.config.total_steps)
    if not fileio.gfile.exists(path):
      return None
    report = json.loads(fileio.read_text(path))
    if report.get('step') != run.config.total_steps:
      return None
    reports[name] = report
  return reports


def _sources(config: ml_collections.ConfigDict, part: str) -> ml_collections.ConfigDict:
  return {'validation': config.data.eval, 'test': config.data.test}[part]


def _saved_state(run: Run) -> tuple[int, dict | None]:
  """(latest checkpointed step, its meta) of ``run.workdir``; (0, None) before any."""
  if not fileio.gfile.isdir(os.path.join(run.workdir, 'checkpoints')):
    return 0, None
  ckpt = checkpoint.Checkpointer(run.workdir)
  try:
    step = ckpt.latest_step()
    return (0, None) if step is None else (step, ckpt.read_meta(step))
  finally:
    ckpt.close()


@dataclasses.dataclass
class _Difference:
  key: str
  a: object
  b: object


def _differences(a, b, prefix: str = '') -> list[_Difference]:
  """The leaves where the nested dicts ``a`` and ``b`` differ (absent = None)."""
  if isinstance(a, dict) and isinstance(b, dict):
    return [d for k in sorted(set(a) | set(b))
            for d in _differences(a.get(k), b.get(k), f'{prefix}{k}.')]
  return [] if a == b else [_Difference(prefix[:-1], a, b)]


def _check_same_config(run: Run, meta: dict) -> None:
  differing = [f'{d.key}: {d.a!r} vs {d.b!r}'
               for d in _differences(meta['config'], checkpoint.config_to_json(run.config))
               if d.key not in _LOCATIONS]
  if differing:
    raise ValueError(f'{run.workdir} holds a run of another config (checkpoint vs this '
                     f'study: {"; ".join(differing)}): use another --workdir, or delete it')


def _times_path(run: Run) -> str:
  return os.path.join(run.workdir, 'ablation_time.json')


def _read_time(run: Run) -> dict | None:
  if not fileio.gfile.exists(_times_path(run)):
    return None
  return json.loads(fileio.read_text(_times_path(run)))


def _duration(seconds: float | None) -> str:
  if seconds is None:
    return 'unknown'
  minutes, s = divmod(int(round(seconds)), 60)
  h, m = divmod(minutes, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'


def run_study(spec: str, workdir: str, seeds: int = 5, overrides: dict | None = None,
              log=print) -> dict:
  """Trains and evaluates every run of ``plan`` that is not finished, writes the three
  files of the module docstring and returns the contents of ``ablation.json`` (with
  ``trained``: the names of the runs this call trained)."""
  runs = plan(spec, workdir, seeds, overrides)
  fileio.gfile.makedirs(fileio.absolute(workdir))
  saved = [_saved_state(run) for run in runs]
  measured = {'seconds': 0.0, 'steps': 0}  # for the ETA
  trained = []
  for i, (run, (step, meta)) in enumerate(zip(runs, saved)):
    if meta is not None:
      _check_same_config(run, meta)
    final = step == run.config.total_steps
    if final and all(read_reports(run, part) is not None for part in PARTS):
      record = _read_time(run)
      what = f'finished earlier ({_duration(record and record["seconds"])}), skipped'
    else:
      start = time.monotonic()
      if not final:
        train.train_and_evaluate(run.config, run.workdir)  # evaluates data.eval at its end
      elif read_reports(run, 'validation') is None:
        evaluate.restore_and_evaluate(run.config, run.workdir)
      if run.config.data.test:  # the test splits, once, for the report
        evaluate.restore_and_evaluate(
            config_lib.on_test(run.config.copy_and_resolve_references()), run.workdir)
      record = {'seconds': time.monotonic() - start, 'steps': run.config.total_steps - step,
                'resumed_from_step': step}
      if jax.process_index() == 0:
        fileio.write_atomically(_times_path(run), lambda f, r=record: json.dump(r, f, indent=1))
      trained.append(run.name)
      if any(read_reports(run, part) is None for part in PARTS):
        raise RuntimeError(f'{run.workdir}: the run ended without evaluation reports of step '
                           f'{run.config.total_steps} in {os.path.join(run.workdir, "eval")}')
      what = (f'trained {record["steps"]} steps' + (f' (resumed at {step})' if step else '')
              + f' in {_duration(record["seconds"])}')
      measured['seconds'] += record['seconds']
      measured['steps'] += record['steps']
    if run.row is not None and jax.process_index() == 0:
      write_outputs(summarise(runs, spec), workdir)
    # Validation only: the progress line is what a reader watches while choosing.
    scores = ', '.join(f'{name} {r["global_scale_pck"]:.1f}'
                       for name, r in read_reports(run, 'validation').items())
    remaining = sum(r.config.total_steps - s for r, (s, _) in zip(runs[i + 1:], saved[i + 1:]))
    eta = ('done' if not remaining else _duration(
        measured['seconds'] / measured['steps'] * remaining if measured['steps'] else None))
    if jax.process_index() == 0:
      log(f'[ablation {i + 1}/{len(runs)}] {run.name}: {what}'
          + (f'; validation 3D PCK globally scaled: {scores}' if scores else '')
          + f'; study ETA {eta}')
  study = summarise(runs, spec)
  study['trained'] = trained
  return study


def _mean_std(values):
  values = [v for v in values if v is not None]
  if not values:
    return dict(mean=None, std=None, n=0, values=[])
  return dict(mean=float(np.mean(values)),
              std=float(np.std(values, ddof=1)) if len(values) > 1 else None, n=len(values),
              values=[float(v) for v in values])


def welch_t_test(a, b) -> dict:
  """One-sided Welch t-test that the mean of ``a`` exceeds the mean of ``b``.

  Returns:
    t, df (Welch-Satterthwaite) and p = P(T_df >= t) under equal means; all None where a
    sample has fewer than 2 values or both have no spread.
  """
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  if len(a) < 2 or len(b) < 2:
    return dict(t=None, df=None, p=None)
  va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
  if va + vb == 0:
    return dict(t=None, df=None, p=None)
  t = (a.mean() - b.mean()) / np.sqrt(va + vb)
  df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
  return dict(t=float(t), df=float(df), p=float(stats.t.sf(t, df)))


def _comparisons(rows: list[str]) -> list[tuple[str, list[str]]]:
  """(row, what it is tested against): every row against the baseline, and "all" against
  each single component (the better one is picked per number, ``_tests``)."""
  out = [(row, ['baseline']) for row in rows if row != 'baseline' and 'baseline' in rows]
  singles = [r for r in ('latent_2d', 'projection') if r in rows]
  if 'all' in rows and singles:
    out.append(('all', singles))
  return out


def _tests(table: dict, rows: list[str], splits: list[str]) -> list[dict]:
  """The one-sided Welch tests of ``_comparisons`` on every split, alignment and metric of
  one part's ``table``: the row better than the other (PCK and AUC higher, MPJPE lower)."""
  tests = []
  for row, others in _comparisons(rows):
    for split in splits:
      for alignment in ALIGNMENTS:
        for metric in METRICS:
          sign = -1.0 if metric == 'mpjpe' else 1.0
          cell = lambda r: table[r][split][alignment][metric]
          done = [o for o in others if cell(o)['n']]
          if not cell(row)['n'] or not done:
            continue
          other = max(done, key=lambda o: sign * cell(o)['mean'])
          result = welch_t_test(sign * np.array(cell(row)['values']),
                                sign * np.array(cell(other)['values']))
          tests.append(dict(row=row, against=other, split=split, alignment=alignment,
                            metric=metric, difference=cell(row)['mean'] - cell(other)['mean'],
                            **result))
  return tests


def summarise(runs: list[Run], spec: str) -> dict:
  """The contents of ``ablation.json`` from the runs' reports and times on disk."""
  stage_2 = [r for r in runs if r.row is not None]
  config = stage_2[0].config
  rows = list(dict.fromkeys(r.row for r in stage_2))
  out = {'config': spec, 'seeds': sorted({r.seed for r in stage_2}), 'rows': rows,
         'splits': {part: list(_sources(config, part)) for part in PARTS},
         'alignments': list(ALIGNMENTS),
         'global_scale_reference': metrics.global_scale_reference(config.global_scale_size),
         'runs': {}, 'table': {}, 'tests': {},
         'paper_table5': {k: dict(pck=v[0], auc=v[1]) for k, v in PAPER_TABLE5.items()}}
  for run in runs:
    entry = {'row': run.row, 'seed': run.seed, 'workdir': run.workdir,
             'total_steps': run.config.total_steps, 'time': _read_time(run)}
    if run.row is not None:
      for part in PARTS:
        reports = read_reports(run, part)
        if reports is not None:
          entry.setdefault('metrics', {})[part] = {
              split: {a: {m: report['alignments'][a][m] for m in METRICS} for a in ALIGNMENTS}
              for split, report in reports.items()}
    out['runs'][run.name] = entry
  for part in PARTS:
    splits = out['splits'][part]
    done = {row: [e['metrics'][part] for e in out['runs'].values()
                  if e['row'] == row and part in e.get('metrics', {})] for row in rows}
    out['table'][part] = {
        row: {split: {a: {m: _mean_std([d[split][a][m] for d in done[row]]) for m in METRICS}
                      for a in ALIGNMENTS} for split in splits} for row in rows}
    out['tests'][part] = _tests(out['table'][part], rows, splits)
  return out


def _cell(stat: dict) -> str:
  if stat['mean'] is None:
    return '—'
  return f'{stat["mean"]:.1f}' + (f' ± {stat["std"]:.1f}' if stat['std'] is not None else '')


def _p(test: dict) -> str:
  return '—' if test['p'] is None else f'{test["p"]:.3g}'


def to_markdown(study: dict) -> str:
  """``ablation.md``: per part (validation, test) and alignment, one row per variant, mean ±
  std over seeds; then the one-sided Welch tests."""
  rows = study['rows']
  lines = [f'# Table 5 in miniature: `{study["config"]}`, seeds '
           f'{", ".join(map(str, study["seeds"]))}', '',
           'Mean ± std over the seeds (n = finished runs). Globally scaled: to '
           f'{study["global_scale_reference"]}. The paper\'s numbers: MPI-INF-3DHP, 3D PCK / '
           'AUC, globally scaled, Human3.6M the only 3D data. Choices are made on validation; '
           'each run read its test splits once, after training.']
  for part in PARTS:
    splits = study['splits'][part]
    if not splits:
      lines += ['', f'## {part}: the experiment has no {part} splits']
      continue
    for alignment in ALIGNMENTS:
      header = ['row', 'n'] + [f'{s} {_METRIC_NAMES[m]}' for s in splits for m in METRICS]
      if alignment == 'global_scale':
        header.append('paper PCK / AUC')
      lines += ['', f'## {part}, {protocols.ALIGNMENT_NAMES[alignment]}', '',
                '| ' + ' | '.join(header) + ' |', '|' + ' --- |' * len(header)]
      for row in rows:
        cells = study['table'][part][row]
        n = cells[splits[0]][alignment]['pck']['n']
        line = [row, str(n)] + [_cell(cells[s][alignment][m]) for s in splits for m in METRICS]
        if alignment == 'global_scale':
          paper = study['paper_table5'].get(row)
          line.append(f'{paper["pck"]} / {paper["auc"]}' if paper else '—')
        lines.append('| ' + ' | '.join(line) + ' |')
    lines += ['', f'## {part}, one-sided Welch t-tests', '',
              'Each row better than the baseline, and "all" better than the better single '
              'component (higher PCK and AUC, lower MPJPE): the difference of the means, '
              'Welch\'s t and degrees of freedom, and p.', '',
              '| row | against | split | alignment | metric | difference | t | df | p |',
              '| --- | --- | --- | --- | --- | --- | --- | --- | --- |']
    for test in study['tests'][part]:
      t, df = (('—', '—') if test['t'] is None else
               (f'{test["t"]:.2f}', f'{test["df"]:.1f}'))
      lines.append(f'| {test["row"]} | {test["against"]} | {test["split"]} | '
                   f'{protocols.ALIGNMENT_NAMES[test["alignment"]]} | '
                   f'{_METRIC_NAMES[test["metric"]]} | {test["difference"]:+.1f} | {t} | {df} | '
                   f'{_p(test)} |')
  lines += ['', '## Run times', '', '| run | steps | time of the call that finished it |',
            '| --- | --- | --- |']
  for name, entry in study['runs'].items():
    t = entry['time']
    lines.append(f'| {name} | {entry["total_steps"]} | '
                 + (f'{_duration(t["seconds"])} ({t["steps"]} steps)' if t else '—') + ' |')
  return '\n'.join(lines) + '\n'


def plot(study: dict, path: str) -> None:
  """``ablation.png``: globally scaled 3D PCK and AUC of each row, one bar per test split
  and its validation split beside it (mean, error bar ± std over seeds), and the paper's
  (hatched)."""
  rows = study['rows']
  bars_of = [(part, split) for part in ('test', 'validation') for split in study['splits'][part]]
  figure = Figure(figsize=(12, 4))
  bars = len(bars_of) + 1
  width = 0.8 / bars
  x = np.arange(len(rows))
  for k, metric in enumerate(('pck', 'auc')):
    axes = figure.add_subplot(1, 2, k + 1)
    for j, (part, split) in enumerate(bars_of):
      stats_ = [study['table'][part][row][split]['global_scale'][metric] for row in rows]
      axes.bar(x + j * width, [np.nan if s['mean'] is None else s['mean'] for s in stats_],
               width, yerr=[s['std'] or 0.0 for s in stats_], capsize=3, label=split,
               alpha=1.0 if part == 'test' else 0.55)
    paper = [study['paper_table5'].get(row, {}).get(metric, np.nan) for row in rows]
    axes.bar(x + len(bars_of) * width, paper, width, color='0.8', hatch='//',
             edgecolor='0.4', label='paper (MPI-INF-3DHP)')
    axes.set_xticks(x + width * (bars - 1) / 2, rows)
    axes.set(ylabel=f'{_METRIC_NAMES[metric]}, globally scaled', ylim=(0, 100))
    axes.grid(axis='y', alpha=0.3)
    axes.legend(loc='upper left', fontsize='small')
  figure.suptitle(f'{study["config"]}: mean ± std over {len(study["seeds"])} seed(s)')
  figure.tight_layout()
  FigureCanvasAgg(figure).print_png(path)


def write_outputs(study: dict, workdir: str) -> None:
  """``ablation.json``, ``.md`` and ``.png`` in ``workdir``."""
  stem = os.path.join(workdir, 'ablation')
  fileio.write_atomically(stem + '.json', lambda f: json.dump(study, f, indent=1))
  fileio.write_atomically(stem + '.md', lambda f: f.write(to_markdown(study)))
  fileio.write_atomically(stem + '.png', lambda f: plot(study, f), binary=True)


def main(argv):
  del argv
  fl = flags.FLAGS
  run_study(config_flags.get_config_filename(fl['config']), fl.workdir, fl.seeds,
            config_flags.get_override_values(fl['config']))


def define_flags():
  flags.DEFINE_integer('seeds', 5, 'Seeds per row (config.seed, config.seed + 1, ...).',
                       lower_bound=1)


if __name__ == '__main__':
  cli.run(main, define_flags=define_flags)
