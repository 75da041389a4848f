"""How fast a config trains, infers and reads its data, on this machine, as JSON.

``python -m jaxpose.benchmark --config=configs/synthetic.py[:variant] [--what=train,infer,input]
[--config.batch_size=N] [--nocpu_xla_flag]``; the paper's network (256 px) on any experiment
is the ``paper_model`` variant, e.g. ``--config=configs/synthetic.py:paper_model
--config.batch_size=8``.

* ``train``: images/s of the real jitted train step on random inputs (median of
  ``--timed_steps`` steps after compilation and a warm-up step), FLOPs per image from XLA's
  cost analysis of the compiled step, and the FLOP/s achieved with its fraction of the peak;
  beside them the MFU from the analytic count (as ``loop``'s), and the device augmentation
  (``augment.train_batch`` on random stored crops of 1.5 × the input size) timed alone, with
  its share of augmentation + step;
* ``infer``: images/s of the network at batch ``--infer_batch`` (32) and its latency
  p50/p90 at batch 1;
* ``peak``: FLOP/s of large matmuls (one per device, in the model's compute dtype; the
  fastest of 10 calls) in the same run, the yardstick of the fractions above (a machine
  busy with other work can disturb it, and the fractions with it);
* ``input``: images/s of the host's side of the input (``pipeline.TrainStream``: reading and
  decoding) on the config's training sources, and images per CPU-second of the process, the
  rate of one core (skipped, with the reason, if they are not built and
  ``config.data.build_if_missing`` is off);
* ``loop`` (with ``train``): the whole training loop (``train.train_and_evaluate``: input,
  transfer, step, logging windows), ``--rounds`` runs of ``--loop_steps``: the images/s/device
  it logs per window, the share of wall time the devices waited for the host (against the
  ``train`` step on a batch already on the devices, timed around each run), FLOP/s per
  device and the model FLOP utilisation (MFU) from an analytic count of the network's FLOPs
  (3 × the forward pass's, the convention of maxtext; XLA's count beside it);
* ``peak_memory_bytes``: the device's peak where it reports one, else the process's max RSS.

jaxpose's steps run over all local devices (batch 1 on the first). Speed figures belong
here, not in tests. The comparison with PyTorch and ONNX Runtime is a program of its own,
outside the library: ``python -m benchmarks.compare_torch`` (``benchmarks/``).
"""

from __future__ import annotations

import json
import os
import resource
import tempfile
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags
from ml_collections import config_flags

from jaxpose import cli
from jaxpose import parallel
from jaxpose import skeleton
from jaxpose import state as state_lib
from jaxpose import summary
from jaxpose import train
from jaxpose.data import pipeline
from jaxpose.models import inventory
from jaxpose.models import posenet

SECTIONS = ('train', 'infer', 'input', 'loop')

LATENCY_CALLS = 20
LOOP_STEP_CALLS = 20  # the step alone, before and after each loop run
INPUT_BATCHES = 20
PEAK_CALLS = 10
# Side of the square matmuls that measure the peak: large enough to run at full speed, small
# enough to take well under a second per device.
PEAK_MATMUL = {'cpu': 2048}
PEAK_MATMUL_DEFAULT = 8192


def random_batch(config: ml_collections.ConfigDict, n: int, seed: int = 0) -> dict:
  """A host batch with every field the train step reads: half 3D-labelled, half 2D-only."""
  rng = np.random.default_rng(seed)
  size, j = config.data.input_size, skeleton.NUM_JOINTS
  return dict(
      image=rng.integers(0, 255, (n, size, size, 3)).astype(np.uint8),
      joints_2d=rng.uniform(0, size, (n, j, 2)).astype(np.float32),
      joints_2d_valid=rng.uniform(size=(n, j)) > 0.1,
      joints_3d=(rng.normal(0, 300, (n, j, 3)) + [0, 0, 5000]).astype(np.float32),
      has_3d=np.arange(n) % 2 == 0,
      focal=np.full((n, 2), 100.0, np.float32),
      principal=rng.uniform(0, size, (n, 2)).astype(np.float32),
      has_intrinsics=np.arange(n) % 2 == 0,
      ref_bone_lengths=rng.uniform(100, 400, (n, skeleton.NUM_BONES)).astype(np.float32),
      has_ref_bones=np.ones(n, bool),
  )


def call_times(fn, calls: int) -> list[float]:
  """Seconds of each of ``calls`` calls of ``fn`` (results waited for), after one warm-up."""
  jax.block_until_ready(fn())
  times = []
  for _ in range(calls):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return times


def compiled_flops(compiled, devices: int) -> float | None:
  """FLOPs of one call of a compiled SPMD program (XLA counts one device's share)."""
  cost = compiled.cost_analysis()
  return None if not cost or 'flops' not in cost else float(cost['flops']) * devices


def measure_peak(mesh, dtype) -> dict:
  """FLOP/s of one large matmul per device of ``mesh``, all at once."""
  devices = mesh.devices.size
  n = PEAK_MATMUL.get(jax.devices()[0].platform, PEAK_MATMUL_DEFAULT)
  x = jax.device_put(jax.random.normal(jax.random.key(0), (devices, n, n), dtype),
                     parallel.batch_sharding(mesh))
  matmul = parallel.jit_data_parallel(lambda a: jnp.einsum('bij,bjk->bik', a, a), mesh)
  # The fastest call: other work on the machine only ever slows a call down.
  seconds = min(call_times(lambda: matmul(x), PEAK_CALLS))
  return dict(flops_per_s=2 * devices * n**3 / seconds, matmul=[devices, n, n],
              dtype=str(jnp.dtype(dtype)))


def _rate_report(images: int, times: list[float], flops: float | None, peak: float) -> dict:
  median = float(np.median(times))
  report = dict(images_per_s=images / median, step_s_median=median,
                step_s=[round(t, 4) for t in times])
  if flops is not None:
    report.update(flops_per_image=flops / images, flops_per_s=flops / median,
                  fraction_of_peak=flops / median / peak)
  return report


def build_train(config, mesh) -> dict:
  """The compiled train step on a random batch of ``config.batch_size``: ``call()`` runs
  one step (carrying the donated state on), beside the host batch, the initial variables
  and the analytic FLOPs of one trained image (3 × the forward pass's)."""
  batch_size = config.batch_size
  if batch_size % mesh.devices.size:
    raise ValueError(f'config.batch_size={batch_size} is not divisible by the '
                     f'{mesh.devices.size} devices')
  model, state, _, step = train.setup(config, mesh)
  host_batch = random_batch(config, batch_size)
  batch = parallel.to_global(host_batch, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  variables = jax.device_get(state.variables())
  holder = [state]

  def call():
    holder[0], metrics = compiled(holder[0], batch)  # The state is donated: carry it on.
    return holder[0], metrics

  return dict(call=call, compiled=compiled, compile_s=compile_s, batch=host_batch,
              variables=variables,
              analytic_flops_per_image=3 * inventory.forward_flops(model, config.data.input_size))


def measure_train(config, mesh, step: dict, calls: int, peak: float) -> dict:
  """The train step ``step`` (of ``build_train``) timed over ``calls`` calls."""
  report = _rate_report(config.batch_size, call_times(step['call'], calls),
                        compiled_flops(step['compiled'], mesh.devices.size), peak)
  analytic = step['analytic_flops_per_image']
  return dict(batch_size=config.batch_size, compile_s=step['compile_s'], **report,
              analytic_flops_per_image=analytic,
              mfu=analytic * report['images_per_s'] / peak)


def _predict_fn(model):
  def predict(variables, batch):
    return model.apply(variables, batch['image'], train=False)
  return predict


def build_infer(config, mesh, batch_size: int) -> dict:
  """The compiled network (inference) on ``batch_size`` random images: ``call()`` runs it."""
  model = posenet.create(config.model)
  state, shardings = state_lib.create_train_state(config, mesh, model,
                                                  state_lib.make_optimizer(config.optim))
  size = config.data.input_size
  images = np.random.default_rng(0).integers(0, 255, (batch_size, size, size, 3), np.uint8)
  variables = state.variables()
  on_mesh = parallel.jit_predict(_predict_fn(model), mesh, shardings.variables())
  batch = parallel.to_global({'image': images}, mesh)
  compiled = on_mesh.lower(variables, batch).compile()
  return dict(call=lambda: compiled(variables, batch), compiled=compiled, model=model,
              images=images, variables=variables)


def measure_infer(config, mesh, batch_size: int, calls: int, peak: float) -> dict:
  net = build_infer(config, mesh, batch_size)
  report = _rate_report(batch_size, call_times(net['call'], calls),
                        compiled_flops(net['compiled'], mesh.devices.size), peak)
  # Latency of one image on one device.
  one = parallel.make_mesh(jax.local_devices()[:1])
  single_variables = jax.device_put(net['variables'], parallel.replicated(one))
  single = parallel.jit_predict(_predict_fn(net['model']), one, parallel.replicated(one))
  image = parallel.to_global({'image': net['images'][:1]}, one)
  latency = np.array(call_times(lambda: single(single_variables, image), LATENCY_CALLS)) * 1e3
  return dict(batch_size=batch_size, **report,
              latency_ms_p50=float(np.percentile(latency, 50)),
              latency_ms_p90=float(np.percentile(latency, 90)))


def measure_input(config) -> dict:
  """The host's side of the input (reading and decoding; the augmentation runs on the
  devices, ``measure_augment``): images/s, and images per second of CPU time the process
  spent (all its threads), the rate one core sustains."""
  try:
    stream = pipeline.TrainStream(config)
  except FileNotFoundError as e:
    return dict(skipped=str(e))
  for _ in range(2):  # the thread pool starts and fills its queue
    next(stream)
  start, cpu = time.perf_counter(), time.process_time()
  for _ in range(INPUT_BATCHES):
    next(stream)
  seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
  images = INPUT_BATCHES * config.batch_size
  return dict(images_per_s=images / seconds, images_per_cpu_s=images / cpu_seconds,
              cores=len(os.sched_getaffinity(0)), batches=INPUT_BATCHES,
              batch_size=config.batch_size)


def random_raw_batch(config: ml_collections.ConfigDict, n: int, seed: int = 0) -> dict:
  """A host batch as ``pipeline.TrainStream`` gives it, of random stored crops of 1.5 ×
  the input size (what the benchmarks' builders store)."""
  rng = np.random.default_rng(seed)
  stored = int(1.5 * config.data.input_size)
  batch = random_batch(config, n, seed)
  batch['joints_2d'] *= 1.5
  batch.update(image=rng.integers(0, 255, (n, stored, stored, 3)).astype(np.uint8),
               size=np.full(n, stored, np.float32),
               key=rng.integers(0, 2**32, (n, 2), dtype=np.uint32))
  if config.data.augment.background > 0:
    batch.update(mask=rng.integers(0, 2, (n, stored, stored, 2)).astype(np.uint8) * 255,
                 background=np.ones(n, bool))
    if config.data.augment.background_sources:
      batch.update(picture=batch['image'][::-1], picture_size=batch['size'],
                   use_picture=np.arange(n) % 2 == 0)
  return batch


def measure_augment(config, mesh, step_s: float, calls: int) -> dict:
  """The device augmentation (``train.make_augment_fn``) of a batch of random stored crops
  (``random_raw_batch``), timed alone, and its share of augmentation + train step."""
  raw = random_raw_batch(config, config.batch_size)
  batch = parallel.to_global(raw, mesh)
  compiled = train.make_augment_fn(config, mesh).lower(batch).compile()
  seconds = float(np.median(call_times(lambda: compiled(batch), calls)))
  return dict(stored_size=int(raw['size'][0]), s_median=seconds,
              share_of_step=seconds / (seconds + step_s))


def measure_loop(config, step: dict, steps: int, rounds: int, peak: float) -> dict:
  """The real training loop (``train.train_and_evaluate``: input, transfer, step, logging
  windows) on the config's data, ``rounds`` runs of ``steps`` steps without evaluation, each
  between two timings of the step alone on a batch already on the devices (``step``, of
  ``build_train``): a machine whose speed drifts (shared cores) drifts for both. Per run,
  the median images/s per device the loop logs per window (the first, which compiles, left
  out) over the step's own rate (the mean of its two timings) is the loop's fraction; one
  minus it the share of wall time the devices waited for the host. Medians over runs."""
  config = config.copy_and_resolve_references()
  config.data.eval = ml_collections.ConfigDict()
  config.image_every_steps = 0
  config.total_steps = config.checkpoint_every_steps = config.eval_every_steps = steps
  devices = jax.device_count()
  runs = []
  for _ in range(rounds):
    before = float(np.median(call_times(step['call'], LOOP_STEP_CALLS)))
    with tempfile.TemporaryDirectory() as workdir:
      train.train_and_evaluate(config, workdir)
      rates = [value for _, value in
               summary.read_scalars(workdir).get('images_per_s_per_device', [])]
    if not rates:
      raise ValueError(f'--loop_steps={steps}: too few steps for two logging windows of '
                       f'config.log_every_steps={config.log_every_steps}')
    after = float(np.median(call_times(step['call'], LOOP_STEP_CALLS)))
    rate, step_s = float(np.median(rates)), (before + after) / 2
    runs.append(dict(images_per_s_per_device=rate, windows=len(rates), step_s=step_s,
                     fraction=rate / (config.batch_size / step_s / devices)))
  median = lambda key: float(np.median([run[key] for run in runs]))
  rate, fraction = median('images_per_s_per_device'), median('fraction')
  flops = step['analytic_flops_per_image']
  return dict(steps=steps, rounds=rounds, windows_per_round=runs[0]['windows'],
              batch_size=config.batch_size, images_per_s_per_device=rate,
              loop_step_s=config.batch_size / rate / devices, step_s=median('step_s'),
              loop_fraction_of_step_rate=fraction, device_wait_fraction=max(0.0, 1 - fraction),
              loop_fraction_per_round=[round(run['fraction'], 3) for run in runs],
              analytic_train_flops_per_image=flops,
              flops_per_s_per_device=flops * rate, mfu=flops * rate * devices / peak)


def peak_memory() -> dict:
  stats = jax.local_devices()[0].memory_stats()
  if stats and 'peak_bytes_in_use' in stats:
    return dict(peak_memory_bytes=int(stats['peak_bytes_in_use']),
                peak_memory_source='device memory_stats (first device)')
  # Linux reports ru_maxrss in KiB.
  return dict(peak_memory_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
              peak_memory_source='host max RSS')


def machine(config: ml_collections.ConfigDict) -> dict:
  """What the figures were measured on: the devices, jax, XLA's flags, the config's dtype
  and input size."""
  device = jax.local_devices()[0]
  return dict(platform=device.platform, device_kind=device.device_kind,
              devices=jax.local_device_count(), jax=jax.__version__,
              xla_flags=os.environ.get('XLA_FLAGS', ''), dtype=config.model.dtype,
              input_size=config.data.input_size)


def benchmark(config: ml_collections.ConfigDict, what, timed_steps: int,
              loop_steps: int = 200, infer_batch: int = 32, rounds: int = 3) -> dict:
  """Measures the sections ``what`` (see the module docstring) of ``config``."""
  unknown = sorted(set(what) - set(SECTIONS))
  if unknown:
    raise ValueError(f'--what: unknown {unknown}; choose from {",".join(SECTIONS)}')
  result = machine(config)
  mesh = parallel.make_mesh(jax.local_devices())
  if {'train', 'infer', 'loop'} & set(what):
    result['peak'] = measure_peak(mesh, jnp.dtype(config.model.dtype))
    peak = result['peak']['flops_per_s']
  if {'train', 'loop'} & set(what):
    step = build_train(config, mesh)
    result['train'] = measure_train(config, mesh, step, timed_steps, peak)
    result['train']['augmentation'] = measure_augment(config, mesh,
                                                      result['train']['step_s_median'],
                                                      timed_steps)
  if 'loop' in what:
    result['loop'] = measure_loop(config, step, loop_steps, rounds, peak)
    result['loop']['xla_train_flops_per_image'] = result['train'].get('flops_per_image')
  if 'infer' in what:
    result['infer'] = measure_infer(config, mesh, infer_batch, timed_steps, peak)
  if 'input' in what:
    result['input'] = measure_input(config)
  result.update(peak_memory())
  return result


def main(argv):
  del argv
  config = cli.FLAGS.config
  figures = benchmark(config, cli.FLAGS.what, cli.FLAGS.timed_steps, cli.FLAGS.loop_steps,
                      cli.FLAGS.infer_batch, cli.FLAGS.rounds)
  print(json.dumps(report(config, figures), indent=1))


def report(config: ml_collections.ConfigDict, figures: dict) -> dict:
  """``figures`` under the config file and overrides the command line gave."""
  return dict(config=config_flags.get_config_filename(cli.FLAGS['config']),
              overrides=config_flags.get_override_values(cli.FLAGS['config']),
              batch_size=config.batch_size, **figures)


def define_flags():
  flags.DEFINE_list('what', ['train', 'infer', 'input'],
                    f'What to measure, any of {",".join(SECTIONS)}.')
  flags.DEFINE_integer('infer_batch', 32, 'Batch of the inference throughput.', lower_bound=1)
  flags.DEFINE_integer('timed_steps', 5, 'Timed calls per measurement; medians are reported.',
                       lower_bound=5)
  flags.DEFINE_integer('loop_steps', 200, 'Steps of the loop run (several logging windows).',
                       lower_bound=1)
  flags.DEFINE_integer('rounds', 3, 'Rounds of the loop, each a run between two timings of '
                       'the step.', lower_bound=1)


if __name__ == '__main__':
  cli.run(main, required=('config',), define_flags=define_flags)
