"""The CPU quickstart: a reduced network trained on the built-in synthetic humans.

3D-labelled "studio" images and 2D-only "wild" images are mixed half and half in every
batch, as the paper mixes H3.6M with MPII/LSP; evaluation is on both test domains. The
network keeps the paper's structure (heatmaps in res4-tap and res5a, latent, lifter with
the residual, camera head) at a width and input size that train in minutes on 2 cores.
Its variants ``baseline``, ``latent_2d``, ``projection``, ``all`` (the paper's Table 5 rows),
``stage1`` and ``study`` are the study of ``python -m jaxpose.ablation``.

Choices below were measured on 2 CPU cores with the same wall time per run (wild_test /
studio_test MPJPE in mm; the mean pose scores 265 / 263):

* no flips: 273 / 242 → 213 / 179 (1000 steps at 128 px);
* the 3D, bone and projection losses × 5 against the heatmaps: → 209 / 166 (these weights,
  weights, in the units of jaxpose.losses, are now every config's default);
* 96 instead of 128 px, 1.8× the steps in the same time: → 180 / 145;
* batches of 16 instead of 32, twice the steps in the same time: → 161 / 135;
* 7000 steps: 141 / 122 (at 80 px and 10,000 steps in the same time: 144 / 123; batches
  of 8 and 11,500 steps: 146 / 125; those three losses × 10: 145 / 123);
* no geometric augmentation: → 134 / 117 (rotation 0, scale 0.1, translation 0.05: 137 / 119);
* 8000 steps, this config: 130 / 116 (8500: 131 / 116; 9000: 130 / 115).
"""

from jaxpose import config as base


def get_config(arg=None):
  c = base.base_config()
  src = base.source
  c.data.train = dict(
      studio=src('synthetic_humans', 'studio_train', builder_config='default', fraction=0.5),
      wild=src('synthetic_humans', 'wild_train', builder_config='default', fraction=0.5),
  )
  c.data.eval = dict(
      wild_test=src('synthetic_humans', 'wild_test', builder_config='default'),
      studio_test=src('synthetic_humans', 'studio_test', builder_config='default'),
  )
  c.data.input_size = 96
  # The synthetic people wear warm colours on their right limbs and cool ones on their
  # left (jaxpose.data.synthetic): a mirrored crop, its labels swapped, would teach the
  # opposite half the time and leave front and back views ambiguous.
  c.data.augment.flip = False
  # Test crops are centred on the person and upright, like the training crops, and a run
  # this short underfits (train MPJPE ≈ test MPJPE): rotating, scaling and shifting the
  # crops spends capacity on variation the tests never show. Colour jitter stays.
  c.data.augment.update(rotation_deg=0.0, scale=0.0, translation=0.0)
  c.model.stage_sizes = (2, 2, 2)
  c.model.width = 16
  c.model.heatmap_block = 1
  c.model.res5a_width = 64
  c.model.res5a_channels = 32
  c.model.lifter_width = 256
  c.model.camera_hidden = 64
  c.batch_size = 16
  c.total_steps = 8000
  c.optim.decay_steps = c.total_steps
  c.log_every_steps = 50
  c.image_every_steps = 1000
  c.checkpoint_every_steps = 1000
  c.eval_every_steps = 4000
  c.ablation.stage1 = 'synthetic.py:stage1'
  c.ablation.rows = base.TABLE5_ROWS
  return base.apply_variant(c, arg, {'smoke': smoke, 'stage1': stage1, 'study': study,
                                     **base.table5_variants('studio')})


def smoke(c):
  for sources in (c.data.train, c.data.eval):
    for name in sources:
      sources[name].builder_config = 'smoke'
  return base.smoke(c)


def stage1(c):
  """Stage 1 of the ablation study (paper §4.2 on MPII + LSP): heatmaps only, on the 2D
  labels of the wild images, from random weights (no ImageNet at this size). Nothing to
  evaluate: the lifter and camera stay untrained."""
  c.data.train = dict(wild=c.data.train.wild)
  c.data.train.wild.fraction = 1.0
  c.loss.pose_3d = 0.0
  c.loss.bone = 0.0
  c.loss.projection = 0.0
  c.data.eval = base.ConfigDict()
  return c


def study(c):
  """Run lengths for the Table 5 study, ``python -m jaxpose.ablation
  --config=configs/synthetic.py:study --workdir=DIR``: stage 1 and the four rows × 3 seeds,
  13 runs, in at most 2 hours on 2 free cores.

  This config trains at about 0.11 s per step on 2 free cores (the quickstart: 8000 steps
  and two evaluations in 15 minutes); on 2 cores shared with other jobs (load average 6-10)
  we measured 0.22-0.33 s per step (400- and 1000-step runs; the process got half a core),
  0.12 s while the load fell to 5. Setting up, compiling and evaluating the 1200 test crops
  took 60-90 s per run at that load: about 30 s on free cores. 13 runs × (4000 × 0.11 s +
  30 s) = 6100 s, 1 h 42 min, leaves 15% of the 2 hours for slower steps than the
  quickstart's. Stage 1 runs as long as a row (the paper's stage 1 is 0.8 times its stage
  2: 186k and 240k iterations). Network and batch are the quickstart's, whose numbers at
  8000 steps say what longer runs would gain.
  """
  c.total_steps = 4000
  c.optim.decay_steps = c.total_steps
  c.eval_every_steps = c.total_steps
  return c
