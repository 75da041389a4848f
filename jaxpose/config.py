"""Every configuration key with its default, in one place.

Experiment files in ``configs/`` start from ``base_config()``, change what their experiment
needs and end with ``apply_variant(config, arg)`` so that any of them accepts ``:smoke``.
Values the paper gives are cited by section; values our copy of the paper lost are marked
MISSING with the reason for the choice.
"""

from __future__ import annotations

import math
import os
import tempfile

import ml_collections

from jaxpose import metrics

ConfigDict = ml_collections.ConfigDict


def source(dataset: str, split: str, *, builder_config: str = '', fraction: float = 1.0,
           manual_dir: str = '', protocol: str = 'generic', max_examples: int = 0) -> ConfigDict:
  """One dataset split used for training (``fraction`` of every batch) or evaluation
  (scored with ``protocol``, see ``jaxpose.protocols``; ``max_examples`` > 0 truncates)."""
  return ConfigDict(dict(dataset=dataset, builder_config=builder_config, split=split,
                         fraction=fraction, manual_dir=manual_dir, protocol=protocol,
                         max_examples=max_examples))


def base_config() -> ConfigDict:
  """The paper's network and optimiser; no data sources (experiments add them)."""
  c = ConfigDict()
  c.seed = 0

  c.model = ConfigDict()
  # ResNet-50 up to res4f in the original (Caffe/Keras) arrangement (paper §3.3).
  c.model.stage_sizes = (3, 4, 6)
  c.model.width = 64
  # Blocks of the last stage whose output carries the first heatmaps: 3 = res4d (§3.3).
  c.model.heatmap_block = 3
  c.model.res5a_width = 512
  # MISSING: res5a's reduced output channels. 64 keeps the latent fully connected layer at
  # 16·16·64 × 1024 ≈ 16.8M weights at 256 px, the same order as the backbone, which is the
  # reason the paper gives for the cut; 17 of the 64 are heatmaps.
  c.model.res5a_channels = 64
  # Lifter after Martinez et al.: four layers of width 1024 (§3.1).
  c.model.lifter_width = 1024
  c.model.lifter_layers = 4
  # The camera MLP's hidden width is not given in the paper; one hidden layer of 256.
  c.model.camera_hidden = 256
  # Compute dtype: 'float32', or 'bfloat16' for mixed precision (parameters, optimiser
  # state, BatchNorm statistics, the output heads and the losses stay float32).
  c.model.dtype = 'float32'

  c.init = ConfigDict(dict(
      # Converted ImageNet weights for the backbone (a .npz written by
      # `python -m jaxpose.tools.import_resnet50`), loaded when training starts from
      # scratch; '' = random init.
      backbone='',
      # Warm start (stage 1 -> stage 2, §4.2): the workdir of an earlier run whose
      # checkpoint initialises `modules` of a fresh run (step 0, new optimiser state, data
      # from the start); '' = none. A workdir with checkpoints of its own resumes instead.
      checkpoint='',
      checkpoint_step=ml_collections.config_dict.placeholder(int),  # None = the latest
      # What stage 1 trains: the backbone (with its res4d heatmap channels) and res5a
      # (with its heatmap channels). The learning-rate discrepancy applies to them.
      modules=('backbone', 'res5a'),
  ))

  c.data = ConfigDict()
  # Where the built datasets live; '' = TFDS's own default: $TFDS_DATA_DIR, else
  # ~/tensorflow_datasets (jaxpose.data.tfds_io.resolve_data_dir).
  c.data.data_dir = ''
  # Build a missing dataset (from its manual_dir, or generated for synthetic_humans).
  c.data.build_if_missing = True
  # Of several processes, process 0 builds and the others wait this long for it.
  c.data.build_timeout_s = 6 * 3600
  c.data.input_size = 256
  c.data.train = ConfigDict()  # name -> source(...)
  # name -> source(...): what training evaluates, periodically and at its end, and every
  # choice is made on (validation splits; `jaxpose.evaluate` reads them too).
  c.data.eval = ConfigDict()
  # name -> source(...): the test splits, read once per run for its report, never to choose
  # (`jaxpose.ablation` after each run; `jaxpose.evaluate --config=<file>:test`).
  c.data.test = ConfigDict()
  # Rotate 3D targets into the virtual camera looking through the crop centre, and rotate
  # predictions back for evaluation (perspective correction, paper §4).
  c.data.virtual_camera = True
  c.data.heatmap_sigma = 1.0  # Gaussian std of heatmap targets, latent-grid cells.
  # MISSING: the magnitudes. The paper augments its 2D data "by random crop, translation
  # and rotation" (§4.2) and gives no numbers; these are the common ones of 2D pose work
  # (Newell et al. 2016: scale ±25%, rotation ±30°). MISSING too: whether the 3D sources
  # (H3.6M, 3DHP) are flipped and colour-jittered; every source gets the same augmentation
  # here, since a flip with the left/right labels swapped and a colour change are as true
  # of a studio image as of an outdoor one.
  c.data.augment = ConfigDict(dict(
      scale=0.25,          # crop side × U(1 - s, 1 + s)
      rotation_deg=30.0,   # U(-r, r)
      translation=0.1,     # fraction of the crop side, per axis
      flip=True,
      color=0.2,           # brightness/contrast/saturation jitter
      # Probability that a training example with masks (has_mask; of the benchmarks only
      # MPI-INF-3DHP's training split has them) gets a new background behind the person
      # and a texture on the chair, before the moves above (§4.1); 0 = off.
      background=0.0,
      # Training sources (names in data.train) whose crops give the background of half
      # of those examples, procedural textures the other half; () = textures only.
      background_sources=(),
  ))
  c.data.num_parallel_calls = 4
  c.data.prefetch = 2
  # Training examples read for the training subjects' bone lengths (bone loss of 2D-only
  # examples, §3.2) and the mean pose (the baseline printed beside evaluations).
  c.data.pose_statistics_examples = 2000

  # The paper gives no weights. In the units of jaxpose.losses (3D in body boxes, 2D in crop
  # sides, heatmaps averaged over the grid) these are the weights that trained the synthetic
  # quickstart best (configs/synthetic.py); every term's gradient on the backbone is then
  # within a factor 6 of the others at initialisation, at 96 and at 256 px
  # (`python -m jaxpose.tools.loss_balance --config=configs/synthetic.py[:paper_model]`).
  # Their overall scale matters too: Adadelta's eps (1e-6) exceeds most squared gradients
  # late in training, where the step then grows with the gradient (the same weights / 5
  # ended the quickstart at 145 instead of 130 mm wild-test MPJPE).
  c.loss = ConfigDict(dict(pose_3d=20.0, bone=20.0, heatmap=36.0, projection=5.0))

  c.optim = ConfigDict()
  # Adadelta (§4.2). Its "momentum" in Caffe is the decay rate rho: MISSING, Caffe's
  # AdaDelta default 0.95 with delta 1e-6.
  c.optim.rho = 0.95
  c.optim.eps = 1e-6
  # MISSING: initial rate; 1.0 is Adadelta's customary rate (Zeiler 2012).
  c.optim.learning_rate = 1.0
  # Exponential decay "over 60k iterations" (§4.2): × decay_rate every decay_steps, smoothly
  # (optax.exponential_decay). MISSING: the factor and the form; 0.1, an order of magnitude
  # per 60k steps, as Caffe's "exp"/"step" policies are commonly set, leaves 1e-4 of the rate
  # at 240k steps.
  c.optim.decay_steps = 60_000
  c.optim.decay_rate = 0.1
  # Learning-rate discrepancy on the pretrained backbone (§4.2); 1 = off.
  c.optim.pretrained_lr_multiplier = 1.0
  c.optim.grad_clip_norm = 0.0  # 0 = no clipping.

  # MISSING: minibatch size; 32 per batch fits the paper's 2019 GPUs at 256 px.
  c.batch_size = 32
  c.total_steps = 240_000  # stage 2 (§4.2)
  # Shard the latent fully connected kernel over the data axis (FSDP) instead of
  # replicating it.
  c.fsdp = False

  c.log_every_steps = 100
  c.image_every_steps = 5000
  c.checkpoint_every_steps = 5000
  c.keep_checkpoints = 3
  c.eval_every_steps = 20_000
  c.eval_batch_size = 64
  # The size "globally scaled" gives the prediction (its bone lengths' sum over
  # skeleton.BONES, mm): 0 = each ground truth's own sum; > 0 = one fixed size for every
  # example, as Zhou et al. 2017's evaluation (metrics.ZHOU_SKELETON_SIZE), which the
  # paper's tables follow (the paper configs set it). Reports name the reference.
  c.global_scale_size = 0.0

  # The study of `python -m jaxpose.ablation` (the paper's Table 5) for a stage-2
  # experiment: its stage-1 config, `<file>[:<variants>]` with the file relative to this
  # config's directory ('' = the experiment has none), and the variants that are its rows.
  c.ablation = ConfigDict(dict(stage1='', rows=()))
  return c


def smoke(c: ConfigDict) -> ConfigDict:
  """Shrinks any experiment so that tests and CI run its real code path in seconds."""
  c.model.stage_sizes = (1, 1, 1)
  c.model.width = 8
  c.model.heatmap_block = 0
  c.model.res5a_width = 16
  c.model.res5a_channels = 24
  c.model.lifter_width = 32
  c.model.camera_hidden = 16
  c.data.input_size = 64
  c.data.num_parallel_calls = 2
  c.data.pose_statistics_examples = 64
  c.batch_size = 8
  c.total_steps = 6
  c.log_every_steps = 2
  c.image_every_steps = 3
  c.checkpoint_every_steps = 3
  c.eval_every_steps = 6
  c.eval_batch_size = 8
  for sources in (c.data.eval, c.data.test):
    for name in sources:
      sources[name].max_examples = 16
  return c


def paper_model(c: ConfigDict) -> ConfigDict:
  """The paper's network at its input size on any experiment's data (its compute dtype
  kept), e.g. ``python -m jaxpose.benchmark --config=configs/synthetic.py:paper_model``."""
  paper = base_config()
  c.model.update({k: v for k, v in paper.model.items() if k != 'dtype'})
  c.data.input_size = paper.data.input_size
  return c


def smoke_on_dummy_data(c: ConfigDict) -> ConfigDict:
  """``smoke`` for experiments on the benchmark datasets: every source is built from the
  fake data in its builder's ``dummy_data/`` folder (the real on-disk layout), into a
  scratch data_dir so that it can never be mistaken for a real build."""
  from jaxpose.data import tfds_io  # pylint: disable=g-import-not-at-top
  for sources in (c.data.train, c.data.eval, c.data.test):
    for name in sources:
      sources[name].manual_dir = str(tfds_io.DATASETS_DIR / sources[name].dataset /
                                     'dummy_data')
  c.data.data_dir = os.path.join(tempfile.gettempdir(), 'jaxpose_dummy_tfds')
  return smoke(c)


def paper_tests(c: ConfigDict) -> ConfigDict:
  """The paper's test sets in ``data.test``, read once after training: the benchmarks ship
  no validation split and the paper names none, so nothing is chosen by evaluating and
  training evaluates nothing (``data.eval`` stays empty). "Globally scaled" to the fixed
  skeleton of Zhou et al. 2017's evaluation, which the paper follows (README, "Evaluate a
  checkpoint")."""
  c.data.test = dict(
      mpi_inf_3dhp=source('mpi_inf_3dhp', 'test', protocol='mpi_inf_3dhp'),
      h36m=source('h36m', 'test', builder_config='h80k', protocol='h36m'))
  c.global_scale_size = metrics.ZHOU_SKELETON_SIZE
  return c


# The rows of the paper's Table 5, in its order; ``all`` is the experiment as configured.
TABLE5_ROWS = ('baseline', 'latent_2d', 'projection', 'all')


def table5_variants(studio: str) -> dict:
  """The rows of Table 5 (``TABLE5_ROWS``) as variants of a stage-2 experiment whose only
  3D-labelled training source is ``data.train[studio]`` and whose other sources are 2D-only
  ("outdoor data"). Each switches what its row of the paper adds or leaves out."""

  def baseline(c):
    """Row 1: direct 3D regression with the bone loss, on the 3D data only."""
    c.loss.heatmap = 0.0
    c.loss.projection = 0.0
    c.data.train = {studio: c.data.train[studio]}
    c.data.train[studio].fraction = 1.0
    return c

  def latent_2d(c):
    """Row 2: + explicit 2D in the latent space, with the 2D-only data."""
    c.loss.projection = 0.0
    return c

  def projection(c):
    """Row 3: + the 3D-to-2D projection loss, with the 2D-only data, without the latent
    heatmap loss."""
    c.loss.heatmap = 0.0
    return c

  def all_(c):
    """Row 4: everything, the experiment as configured."""
    return c

  return dict(zip(TABLE5_ROWS, (baseline, latent_2d, projection, all_)))


def on_test(c: ConfigDict) -> ConfigDict:
  """Evaluates on the test splits (``data.test``) instead of the validation ones, e.g.
  ``python -m jaxpose.evaluate --config=configs/synthetic.py:test``: once per run, for
  its report."""
  c.data.eval = c.data.test
  return c


VARIANTS = {'smoke': smoke, 'paper_model': paper_model, 'test': on_test}


class ConfigError(ValueError):
  """A config that cannot run, naming each field at fault and what it should be."""


def validate(c: ConfigDict, training: bool = True) -> None:
  """Checks ``c`` against the devices of this run before anything is built or written;
  ``training`` adds the keys only training reads (evaluation runs a trained model's config
  on whatever devices it has).

  Raises:
    ConfigError: naming every field at fault.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from jaxpose.models import resnet  # pylint: disable=g-import-not-at-top
  problems = []

  def positive(key, value, also=''):
    if not isinstance(value, int) or value < 1:
      problems.append(f'config.{key}={value!r}: expected an integer >= 1{also}')
      return False
    return True

  stride = resnet.stride(len(c.model.stage_sizes))
  size = c.data.input_size
  if positive('data.input_size', size) and size % stride:
    problems.append(
        f'config.data.input_size={size}: expected a multiple of the network\'s stride '
        f'{stride} (model.stage_sizes has {len(c.model.stage_sizes)} stages), e.g. '
        f'{max(stride, size // stride * stride)}: each heatmap cell must cover '
        f'{stride}×{stride} whole pixels')
  processes = jax.process_count()
  if positive('eval_batch_size', c.eval_batch_size) and c.eval_batch_size % processes:
    problems.append(f'config.eval_batch_size={c.eval_batch_size}: expected a multiple of '
                    f'the {processes} processes')
  if not _finite_non_negative(c.global_scale_size):
    problems.append(f'config.global_scale_size={c.global_scale_size!r}: expected a finite '
                    'number >= 0 (mm; 0 = each ground truth\'s own size)')
  if training:
    devices = jax.device_count()
    if positive('batch_size', c.batch_size) and c.batch_size % devices:
      problems.append(f'config.batch_size={c.batch_size}: expected a multiple of the '
                      f'{devices} devices (every device gets an equal share)')
    positive('total_steps', c.total_steps)
    # A NaN, infinite or negative rate would only show as non-finite losses steps later
    # (0 holds the weights still, as tests do).
    for key in ('learning_rate', 'decay_rate', 'pretrained_lr_multiplier'):
      value = c.optim[key]
      if not _finite_non_negative(value):
        problems.append(f'config.optim.{key}={value!r}: expected a finite number >= 0')
    positive('optim.decay_steps', c.optim.decay_steps)
    for key in ('log_every_steps', 'checkpoint_every_steps', 'eval_every_steps',
                'keep_checkpoints'):
      positive(key, c[key])
    if not isinstance(c.image_every_steps, int) or c.image_every_steps < 0:
      problems.append(f'config.image_every_steps={c.image_every_steps!r}: expected an '
                      'integer >= 0 (0 = no pictures)')
    if c.init.checkpoint and c.init.backbone:
      problems.append(f'config.init.checkpoint={c.init.checkpoint} and '
                      f'config.init.backbone={c.init.backbone} both initialise the '
                      'backbone: set one of them')
  if problems:
    raise ConfigError('; '.join(problems))


def _finite_non_negative(value) -> bool:
  return (not isinstance(value, bool) and isinstance(value, (int, float))
          and math.isfinite(value) and value >= 0)


def apply_variant(c: ConfigDict, arg: str | None, variants: dict | None = None) -> ConfigDict:
  """Applies the comma-separated variants in ``arg`` (e.g. ``'no_projection,smoke'``).

  ``variants`` adds an experiment's own variants to the common ones.
  """
  known = dict(VARIANTS, **(variants or {}))
  for name in filter(None, (arg or '').split(',')):
    if name not in known:
      raise ValueError(f'unknown config variant {name!r}; known: {sorted(known)}')
    c = known[name](c)
  return c
