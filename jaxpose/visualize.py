"""Pictures of poses for people to look at (conventions in ``jaxpose.skeleton``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from jaxpose import skeleton

# RGB per skeleton.SIDE value: the person's right warm, left cool (as the synthetic people
# are dressed), centre green.
SIDE_COLOURS = {-1: (255, 90, 30), 1: (30, 140, 255), 0: (60, 220, 90)}
_OUTLINE = (15, 15, 15)


def draw_skeleton_2d(image: np.ndarray, joints_2d: np.ndarray, valid: np.ndarray | None = None,
                     *, width: int = 2, joint_radius: float = 2.0,
                     outline: int = 1) -> np.ndarray:
  """A copy of ``image`` with the 2D skeleton drawn on it.

  Each bone takes the colour of its child joint's side (``SIDE_COLOURS``), over a dark
  outline so that it shows on any background; bones with an invalid end are left out.

  Args:
    image: (H, W, 3) image, uint8 or float in [0, 1].
    joints_2d: (17, 2) pixels.
    valid: (17,) bool, or None for all valid.
    width: bone width in pixels. joint_radius: joint dot radius in pixels.
    outline: width of the dark border around bones and dots.

  Returns:
    (H, W, 3) uint8.
  """
  image = np.asarray(image)
  if image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'image must have shape (H, W, 3), got {image.shape}')
  if image.dtype != np.uint8:
    image = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
  joints = np.asarray(joints_2d, np.float64)
  if joints.shape != (skeleton.NUM_JOINTS, 2):
    raise ValueError(f'joints_2d must have shape ({skeleton.NUM_JOINTS}, 2), got {joints.shape}')
  valid = (np.ones(skeleton.NUM_JOINTS, bool) if valid is None
           else np.asarray(valid, bool).reshape(-1))
  if valid.shape != (skeleton.NUM_JOINTS,):
    raise ValueError(f'valid must have shape ({skeleton.NUM_JOINTS},), got {valid.shape}')

  pil = Image.fromarray(image)
  draw = ImageDraw.Draw(pil)
  # PIL addresses a pixel by its index, jaxpose by its corner: centres differ by 0.5.
  points = [tuple(p) for p in joints - 0.5]
  bones = [(p, c) for p, c in skeleton.BONES if valid[p] and valid[c]]
  for border, colour_of in ((outline, lambda c: _OUTLINE),
                            (0, lambda c: SIDE_COLOURS[int(skeleton.SIDE[c])])):
    for parent, child in bones:
      draw.line([points[parent], points[child]], fill=colour_of(child),
                width=width + 2 * border)
    for j in np.flatnonzero(valid):
      r = joint_radius + border
      x, y = points[j]
      draw.ellipse((x - r, y - r, x + r, y + r), fill=colour_of(j))
  return np.asarray(pil)


def image_grid(images: Sequence[np.ndarray], cols: int, *, pad: int = 2,
               fill: int = 255) -> np.ndarray:
  """Tiles equally sized (H, W, 3) uint8 images row by row, ``cols`` to a row."""
  if not len(images):
    raise ValueError('images is empty')
  if cols < 1:
    raise ValueError(f'cols must be >= 1, got {cols}')
  shape = np.shape(images[0])
  if any(np.shape(image) != shape for image in images):
    raise ValueError(f'images must share one shape, got {sorted({np.shape(i) for i in images})}')
  h, w = shape[:2]
  rows = -(-len(images) // cols)
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad) + tuple(shape[2:]), fill,
                 np.uint8)
  for i, image in enumerate(images):
    y, x = pad + (i // cols) * (h + pad), pad + (i % cols) * (w + pad)
    grid[y:y + h, x:x + w] = image
  return grid


# Viewpoints of ``skeleton_3d_views``: (title, elevation, azimuth) in matplotlib's mplot3d
# terms, with the camera frame plotted as (x, z, -y) so that "up" is the person's up.
# Azimuth -90 looks along the camera's own optical axis; 0 looks from the camera's right,
# with depth growing to the right (the camera is on the left).
FRONT_AND_SIDE = (('front (camera view)', 0.0, -90.0), ('side (camera on the left)', 0.0, 0.0))


def skeleton_3d_views(pose_3d: np.ndarray, *, size: int = 320,
                      views: Sequence[tuple[str, float, float]] = FRONT_AND_SIDE) -> np.ndarray:
  """The 3D skeleton seen from each of ``views``, side by side, orthographic and to scale.

  Bones are coloured as in ``draw_skeleton_2d`` (``SIDE_COLOURS`` of the child joint).

  Args:
    pose_3d: (17, 3) joints in the camera frame (x right, y down, z forward), any unit;
      or (P, 17, 3) for several skeletons in one scene.
    size: side of each square view in pixels.
    views: (title, elevation, azimuth) per view, in degrees (see ``FRONT_AND_SIDE``).

  Returns:
    (size, len(views) * size, 3) uint8.
  """
  # Imported here: only these pictures need matplotlib, which is slow to import.
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  joints = np.asarray(pose_3d, np.float64)
  if joints.shape[-2:] != (skeleton.NUM_JOINTS, 3) or joints.ndim not in (2, 3):
    raise ValueError(f'pose_3d must have shape ({skeleton.NUM_JOINTS}, 3) or (P, '
                     f'{skeleton.NUM_JOINTS}, 3), got {joints.shape}')
  if not np.all(np.isfinite(joints)):
    raise ValueError('pose_3d has non-finite values')
  if size < 32:
    raise ValueError(f'size must be >= 32 pixels, got {size}')
  if not views:
    raise ValueError('views is empty')
  people = joints.reshape(-1, skeleton.NUM_JOINTS, 3)[..., [0, 2, 1]] * [1.0, 1.0, -1.0]
  points = people.reshape(-1, 3)
  centre = (points.min(0) + points.max(0)) / 2
  half = max(float(np.ptp(points, axis=0).max()) / 2 * 1.1, 1e-6)
  dpi = 100
  figure = Figure(figsize=(len(views) * size / dpi, size / dpi), dpi=dpi)
  canvas = FigureCanvasAgg(figure)
  for i, (title, elevation, azimuth) in enumerate(views):
    ax = figure.add_subplot(1, len(views), i + 1, projection='3d')
    ax.set_proj_type('ortho')
    ax.view_init(elev=elevation, azim=azimuth)
    for person in people:
      for parent, child in skeleton.BONES:
        colour = np.array(SIDE_COLOURS[int(skeleton.SIDE[child])]) / 255
        ax.plot(*person[[parent, child]].T, color=colour, linewidth=2.5)
      ax.scatter(*person.T, c=[np.array(SIDE_COLOURS[int(s)]) / 255 for s in skeleton.SIDE],
                 s=10, depthshade=False)
    for axis, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre):
      axis(c - half, c + half)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    ax.set_title(title, fontsize=9, pad=0)
  figure.subplots_adjust(left=0, right=1, bottom=0, top=0.94, wspace=0)
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()
