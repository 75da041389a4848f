"""Stage 1 (paper §3.3, §4.2): the backbone, from ImageNet weights, trained on 2D heatmaps
only (res4d and res5a), on MPII and LSP.

Set ``--config.init.backbone`` to converted ImageNet weights
(``python -m jaxpose.tools.import_resnet50``).
"""

from jaxpose import config as base


def get_config(arg=None):
  c = base.base_config()
  src = base.source
  # MISSING: the mixing proportions; roughly the datasets' sizes (MPII ~25k people,
  # LSP-extended 10k, LSP 1k).
  c.data.train = dict(
      mpii=src('mpii', 'train', builder_config='mat', fraction=0.6),
      lsp_extended=src('lsp', 'train', builder_config='lsp_extended', fraction=0.3),
      lsp=src('lsp', 'train', builder_config='lsp', fraction=0.1),
  )
  # Heatmaps only: no 3D, bone or projection supervision in this stage (§4.2).
  c.loss.pose_3d = 0.0
  c.loss.bone = 0.0
  c.loss.projection = 0.0
  c.total_steps = 186_000                      # §4.2
  c.optim.decay_steps = 60_000                 # MISSING for stage 1; as stage 2.
  return base.apply_variant(c, arg, {'smoke': base.smoke_on_dummy_data})
