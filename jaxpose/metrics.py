"""Per-example 3D pose errors (numpy): MPJPE under four alignments, 3D PCK and AUC.

Definitions follow the benchmarks' official code (see ``jaxpose.protocols``); the README
("Evaluate a checkpoint") says which of the paper's tables uses which alignment, and why.
Every function takes a batch: ``pred`` and ``gt`` (N, J, 3) root-relative joints in
millimetres and an optional (N, J) bool ``mask`` of the joints that count (None: all).
Alignments are fitted on the masked joints only and errors are averaged over them; an
example with no masked joint gives NaN. Every joint must be finite, masked or not (absent
joints are zeros, as in the dataset format).
"""

from __future__ import annotations

import numpy as np

from jaxpose import skeleton

# 'none': as predicted ("unscaled"); 'global_scale': scaled so that its bone lengths sum to
# a reference size, the ground truth's own or a fixed one (the paper's "globally scaled",
# after Zhou et al. 2017's evaluation);
# 'least_squares_scale': the least-squares scale (N-MPJPE, Rhodin et al. 2018);
# 'procrustes': the least-squares similarity transform (PA-MPJPE).
ALIGNMENTS = ('none', 'global_scale', 'least_squares_scale', 'procrustes')
# The MPI-INF-3DHP AUC thresholds: 0, 5, ..., 150 mm (31 of them).
AUC_THRESHOLDS = np.arange(0.0, 151.0, 5.0)
PCK_THRESHOLD = 150.0
# The fixed skeleton size of Zhou et al. 2017's released evaluation (pose-hg-3d), mm: the
# Human3.6M training skeletons' mean sum of bone lengths over their own 16-joint skeleton.
# Over skeleton.BONES, real Human3.6M frames sum to 4003-4229 mm (tests/test_metrics.py).
ZHOU_SKELETON_SIZE = 4296.99
def global_scale_reference(size: float) -> str:
  """What 'global_scale' scales to with ``size``, in words, for reports."""
  if size > 0:
    return f'a fixed skeleton size, {size:g} mm (bone-length sum over skeleton.BONES)'
  return "the ground truth's own bone-length sum"


def _check(pred, gt, mask):
  """Validated float64 ``pred``, ``gt`` and bool ``mask`` (all ones when None)."""
  pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
  if pred.ndim != 3 or pred.shape[-1] != 3:
    raise ValueError(f'pred must have shape (N, J, 3), got {pred.shape}')
  if gt.shape != pred.shape:
    raise ValueError(f'gt must have the shape of pred {pred.shape}, got {gt.shape}')
  if mask is None:
    return pred, gt, np.ones(pred.shape[:2], bool)
  mask = np.asarray(mask)
  if mask.shape != pred.shape[:2]:
    raise ValueError(f'mask must have shape (N, J) = {pred.shape[:2]}, got {mask.shape}')
  return pred, gt, mask.astype(bool)


def _masked_mean(values, mask):
  """Mean over the last axis of ``values`` where ``mask`` (NaN where nothing is masked)."""
  with np.errstate(invalid='ignore', divide='ignore'):
    return np.sum(values * mask, axis=-1) / np.sum(mask, axis=-1)


def align(pred, gt, mode, mask=None, size=0.0):
  """``pred`` (N, J, 3) aligned onto ``gt`` per example, fitted on the masked joints.

  Args:
    pred: (N, J, 3) predicted joints. gt: (N, J, 3) ground truth. mask: (N, J) bool or None.
    mode: one of ``ALIGNMENTS``: 'none' (as is); 'global_scale' (× the ratio of a reference
      size to the prediction's bone length sum, over the bones whose two joints are
      masked); 'least_squares_scale' (the least-squares scale, no rotation or
      translation); 'procrustes' (the least-squares similarity: rotation, scale and
      translation).
    size: the reference of 'global_scale', mm: 0 = the ground truth's own bone length sum,
      > 0 = that fixed size (``ZHOU_SKELETON_SIZE``).

  Returns:
    (N, J, 3) aligned prediction (every joint is moved, masked or not).
  """
  if mode not in ALIGNMENTS:
    raise ValueError(f'mode must be one of {ALIGNMENTS}, got {mode!r}')
  pred, gt, mask = _check(pred, gt, mask)
  if mode == 'none':
    return pred
  if not size >= 0:
    raise ValueError(f'size must be >= 0 (0 = the ground truth\'s own), got {size}')
  align_fn = {'global_scale': lambda *a: _align_bone_length_scale(*a, size),
              'least_squares_scale': _align_least_squares_scale,
              'procrustes': _align_similarity}[mode]
  with np.errstate(invalid='ignore', divide='ignore'):  # No masked joint: NaN, as documented.
    return align_fn(pred, gt, mask)


def _align_bone_length_scale(pred, gt, mask, size):
  # One scale for the whole skeleton that gives it the ground truth's size, whatever the
  # joint errors: unlike the least-squares scale it can raise MPJPE (the paper's Tables 1
  # and 4 show globally scaled MPJPE above unscaled).
  if pred.shape[1] != skeleton.NUM_JOINTS:
    raise ValueError(f"mode 'global_scale' measures the H36M-17 skeleton's bones: pred and gt "
                     f'must have {skeleton.NUM_JOINTS} joints, got {pred.shape[1]}')
  parent, child = skeleton.BONES.T
  both = mask[:, parent] & mask[:, child]
  length = lambda poses: np.linalg.norm(poses[:, child] - poses[:, parent], axis=-1)
  reference = np.sum(both * length(gt), axis=1) if size == 0 else size
  scale = reference / np.sum(both * length(pred), axis=1)
  return scale[:, None, None] * pred


def _align_least_squares_scale(pred, gt, mask):
  w = mask[..., None]
  # s* = sum <p, g> / sum |p|^2 about the root (N-MPJPE).
  scale = np.sum(w * pred * gt, axis=(1, 2)) / np.sum(w * pred**2, axis=(1, 2))
  return scale[:, None, None] * pred


def _align_similarity(pred, gt, mask):
  # Similarity Procrustes (Umeyama): centre on the masked centroids, take the SVD of the 3x3
  # cross-covariance, and flip the last singular vector and value where det < 0 so the fit
  # is a rotation, never a reflection.
  w = mask[..., None]
  count = np.maximum(np.sum(w, axis=1, keepdims=True), 1)  # Keeps the SVD finite.
  mu_p, mu_g = np.sum(w * pred, 1, keepdims=True) / count, np.sum(w * gt, 1, keepdims=True) / count
  p0, g0 = (pred - mu_p) * w, (gt - mu_g) * w
  u, s, vt = np.linalg.svd(np.swapaxes(p0, 1, 2) @ g0)
  sign = np.where(np.linalg.det(u @ vt) < 0, -1.0, 1.0)
  vt[:, -1] *= sign[:, None]
  s[:, -1] *= sign
  scale = np.sum(s, axis=1) / np.sum(p0**2, axis=(1, 2))
  return scale[:, None, None] * (pred - mu_p) @ (u @ vt) + mu_g


def mpjpe(pred, gt, mask=None):
  """(N,) mean per-joint position error, no alignment (poses are already root-relative)."""
  pred, gt, mask = _check(pred, gt, mask)
  return _masked_mean(np.linalg.norm(pred - gt, axis=-1), mask)


def global_scale_mpjpe(pred, gt, mask=None, size=0.0):
  """(N,) MPJPE after scaling ``pred`` to the bone length sum of ``gt``, or to ``size``
  (see ``align``; the paper's "globally scaled")."""
  return mpjpe(align(pred, gt, 'global_scale', mask, size), gt, mask)


def n_mpjpe(pred, gt, mask=None):
  """(N,) MPJPE after the per-example least-squares scale of ``pred`` onto ``gt``."""
  return mpjpe(align(pred, gt, 'least_squares_scale', mask), gt, mask)


def pa_mpjpe(pred, gt, mask=None):
  """(N,) MPJPE after the per-example similarity Procrustes alignment of ``pred``."""
  return mpjpe(align(pred, gt, 'procrustes', mask), gt, mask)


def pck_3d(pred, gt, mask=None, threshold=PCK_THRESHOLD):
  """Percentage of masked joints with an error strictly below ``threshold`` mm, unaligned.

  ``threshold`` may be a scalar, giving (N,), or a 1-D array of T thresholds, giving (N, T).
  """
  pred, gt, mask = _check(pred, gt, mask)
  threshold = np.asarray(threshold, np.float64)
  if threshold.ndim > 1:
    raise ValueError(f'threshold must be a scalar or 1-D, got shape {threshold.shape}')
  error = np.linalg.norm(pred - gt, axis=-1)[..., None]
  pck = 100.0 * _masked_mean(np.swapaxes(error < threshold, 1, 2), mask[:, None, :])
  return pck.reshape(pck.shape[:1] + threshold.shape)


def auc_3d(pred, gt, mask=None):
  """(N,) area under the PCK curve: mean PCK (%) over thresholds 0, 5, ..., 150 mm."""
  return pck_3d(pred, gt, mask, AUC_THRESHOLDS).mean(axis=-1)
