"""The CPU quickstart: a reduced network trained on the built-in synthetic humans.

3D-labelled "studio" images and 2D-only "wild" images are mixed half and half in every
batch, as the paper mixes H3.6M with MPII/LSP; training evaluates the validation splits of
both domains (``data.eval``), and the test splits (``data.test``) are read once, after
training, for a report (``jaxpose.evaluate --config=configs/synthetic.py:test``, or the
ablation study). The network keeps the paper's structure (heatmaps in res4-tap and res5a,
latent, lifter with the residual, camera head) at a width and input size that train in
minutes on 2 cores. Its variants ``baseline``, ``latent_2d``, ``projection``, ``all`` (the
paper's Table 5 rows), ``stage1`` and ``study`` are the study of ``python -m
jaxpose.ablation``.

How the settings were chosen, and on what, and how long the study runs: docs/ablation.md.
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
      wild_val=src('synthetic_humans', 'wild_val', builder_config='default'),
      studio_val=src('synthetic_humans', 'studio_val', builder_config='default'),
  )
  c.data.test = dict(
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
  for sources in (c.data.train, c.data.eval, c.data.test):
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
  # From random weights at the full rate, as configs/pretrain_2d.py trains from ImageNet's.
  c.optim.pretrained_lr_multiplier = 1.0
  c.data.eval = base.ConfigDict()
  c.data.test = base.ConfigDict()
  return c


def study(c):
  """Run lengths for the Table 5 study, ``python -m jaxpose.ablation
  --config=configs/synthetic.py:study --workdir=DIR``: stage 1 and the four rows × 5 seeds,
  21 runs, in at most 2.5 hours on 2 free cores.

  Stage 1 runs as long as a row (the paper's stage 1 is 0.8 times its stage 2: 186k and
  240k iterations); the sizing is measured in docs/ablation.md.
  """
  c.total_steps = 3000
  c.optim.decay_steps = c.total_steps
  c.eval_every_steps = c.total_steps
  # Every row of the paper's Table 5 trains with the learning-rate discrepancy on its
  # stage-1 modules, as configs/h36m_only.py (× 0.1); stage 1 itself at the full rate.
  c.optim.pretrained_lr_multiplier = 0.1
  return c
