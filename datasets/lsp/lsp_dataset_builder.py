"""LSP and LSP-extended as person crops in jaxpose's common example format.

Both releases label 2D joints only: every example has ``has_3d`` false and no
intrinsics, and trains the 3D output through the projection loss. README.md says what
we assume about the visibility flag, which joints count as valid, and how to build.
"""

from __future__ import annotations

import collections
import dataclasses

from absl import logging
from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from jaxpose import skeleton
from jaxpose.data import readers
from jaxpose.data import features

NUM_LSP_JOINTS = 14
# The annotations are MATLAB image coordinates (centre of the top-left pixel at (1, 1));
# jaxpose puts that centre at (0.5, 0.5).
MATLAB_TO_JAXPOSE = -0.5


@dataclasses.dataclass
class LspConfig(tfds.core.BuilderConfig):
  """One of the two releases.

  Attributes:
    folder: where the release's zip is extracted, relative to the manual directory.
    image_name: file name in ``<folder>/images`` of the image with 1-based number i.
    labelled_flag: the value of the third annotation row (or column) that marks a
      labelled joint; None where every joint is labelled and the flag only tells
      whether it is occluded.
    test_half: whether the second half of the images is the test split (else all train).
    image_size: side of the stored person crop in pixels (the tight box is 1/1.5 of it).
  """
  folder: str = ''
  image_name: str = ''
  labelled_flag: int | None = None
  test_half: bool = False
  image_size: int = 384


class Builder(tfds.core.GeneratorBasedBuilder):
  """Leeds Sports Pose and its extended training set, one person per image."""

  VERSION = tfds.core.Version('1.1.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.',
                   '1.1.0': 'The common format gains mask and has_mask.'}
  BUILDER_CONFIGS = [
      # LSP's flag is 1 for occluded joints, which are labelled too (README.md).
      LspConfig(name='lsp', description='LSP: im0001-im1000 train, im1001-im2000 test.',
                folder='lsp_dataset', image_name='im{:04d}.jpg', labelled_flag=None,
                test_half=True),
      # LSPET labels visible joints only, with flag 1 (README.md).
      LspConfig(name='lsp_extended', description='LSP-extended: 10000 training images.',
                folder='lspet_dataset', image_name='im{:05d}.jpg', labelled_flag=1),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Download from http://sam.johnson.io/research/lsp.html and
  http://sam.johnson.io/research/lspet.html and unzip into the manual directory (default
  <data_dir>/downloads/manual/, or pass --manual_dir), one folder per release:

  * config `lsp`: lsp_dataset.zip
      unzip lsp_dataset.zip -d <manual_dir>/lsp_dataset
      # -> <manual_dir>/lsp_dataset/joints.mat, <manual_dir>/lsp_dataset/images/im0001.jpg ...
  * config `lsp_extended`: lspet_dataset.zip
      unzip lspet_dataset.zip -d <manual_dir>/lspet_dataset
      # -> <manual_dir>/lspet_dataset/joints.mat, <manual_dir>/lspet_dataset/images/im00001.jpg ...
  """

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features.example_features(),
        homepage='http://sam.johnson.io/research/lsp.html',
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = epath.Path(dl_manager.manual_dir) / self.builder_config.folder
    path = root / 'joints.mat'
    if not path.exists():
      raise FileNotFoundError(
          f'{path} not found: expected the joints.mat of the '
          f'{self.builder_config.name} release there.\n{self.MANUAL_DOWNLOAD_INSTRUCTIONS}')
    joints = read_joints(path)
    n = len(joints)
    # The flag's meaning is assumed, not checked against the real data (README.md): its
    # share of ones lets a user see whether the assumption is plausible.
    logging.info('%s: %d images, flag 1 on %.1f%% of the joints.', path, n,
                 100.0 * np.mean(joints[..., 2] == 1))
    if not self.builder_config.test_half:
      return {'train': self._generate_examples(root, path, joints, range(n))}
    if n % 2:
      raise ValueError(f'{path}: {n} images; expected an even number, the first half '
                       'for training and the second for testing (LSP has 2000)')
    return {'train': self._generate_examples(root, path, joints, range(n // 2)),
            'test': self._generate_examples(root, path, joints, range(n // 2, n))}

  def _generate_examples(self, root: epath.Path, path: epath.Path, joints: np.ndarray,
                         indices: range):
    config = self.builder_config
    skipped = collections.Counter()
    for i in indices:
      name = config.image_name.format(i + 1)
      image = readers.read_image(root / 'images' / name,
                                 f'the image of {path}, as every image of the release')
      if image is None:
        skipped['undecodable images'] += 1
        continue
      xy = joints[i, :, :2] + MATLAB_TO_JAXPOSE
      labelled = (np.ones(NUM_LSP_JOINTS, bool) if config.labelled_flag is None
                  else joints[i, :, 2] == config.labelled_flag)
      # Joints outside the image carry no pixel evidence, and LSPET marks missing joints
      # with non-positive coordinates, which fall outside too.
      height, width = image.shape[:2]
      inside = np.all((xy >= 0) & (xy <= [width, height]), axis=1)
      joints_17, valid = skeleton.convert_joints(xy, labelled & inside,
                                                 skeleton.LSP_TO_H36M)
      if valid.sum() < 2:
        skipped['images with fewer than 2 valid joints'] += 1
        continue
      yield epath.Path(name).stem, readers.example_2d(
          image, joints_17, valid, config.image_size, sequence=name, frame=i)
    if skipped:
      logging.warning('%s, images %d-%d: skipped %s.', path, indices.start + 1,
                      indices.stop, ', '.join(f'{what}: {n}' for what, n in skipped.items()))


def read_joints(path: epath.Path) -> np.ndarray:
  """(N, 14, 3) x, y, flag from a joints.mat stored 3×14×N (LSP) or 14×3×N (LSPET)."""
  mat = readers.load_mat_v5(path, 'the joints.mat of lsp_dataset.zip or lspet_dataset.zip')
  if 'joints' not in mat:
    raise ValueError(f'{path}: no variable "joints"; expected the joints.mat of '
                     'lsp_dataset.zip or lspet_dataset.zip')
  joints = np.asarray(mat['joints'], np.float64)
  if joints.ndim == 3 and joints.shape[:2] == (3, NUM_LSP_JOINTS):
    return joints.transpose(2, 1, 0)
  if joints.ndim == 3 and joints.shape[:2] == (NUM_LSP_JOINTS, 3):
    return joints.transpose(2, 0, 1)
  raise ValueError(f'{path}: joints has shape {joints.shape}; expected 3×14×N (LSP) or '
                   '14×3×N (LSP-extended)')
