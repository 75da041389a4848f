"""The CPU quickstart: a reduced network trained on the built-in synthetic humans.

3D-labelled "studio" images and 2D-only "wild" images are mixed half and half in every
batch, as the paper mixes H3.6M with MPII/LSP; evaluation is on both test domains. The
network keeps the paper's structure (heatmaps in res4-tap and res5a, latent, lifter with
the residual, camera head) at a width and input size that train in minutes on 2 cores.
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
  c.data.input_size = 128
  c.model.stage_sizes = (2, 2, 2)
  c.model.width = 16
  c.model.heatmap_block = 1
  c.model.res5a_width = 64
  c.model.res5a_channels = 32
  c.model.lifter_width = 256
  c.model.camera_hidden = 64
  c.batch_size = 32
  c.total_steps = 3000
  c.optim.decay_steps = 3000
  c.log_every_steps = 50
  c.image_every_steps = 500
  c.checkpoint_every_steps = 500
  c.eval_every_steps = 1500
  return base.apply_variant(c, arg, {'smoke': smoke})


def smoke(c):
  for sources in (c.data.train, c.data.eval):
    for name in sources:
      sources[name].builder_config = 'smoke'
  return base.smoke(c)
