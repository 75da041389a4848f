"""What the tests of the TFDS builders (``datasets/*/*_test.py``) share: building from a
manual folder the way jaxpose builds (``tfds_io.ensure_built``) into a temporary data_dir,
and a copy of a builder's dummy release for each test to break."""

import pathlib
import shutil
import tempfile

from absl.testing import absltest

from jaxpose.data import tfds_io


def build(test, builder_class, config, manual_dir):
  """``builder_class``'s ``config`` built from ``manual_dir`` into a data_dir removed after
  ``test``'s class (``test``: a TestCase, or the class itself in ``setUpClass``)."""
  data_dir = tempfile.mkdtemp()
  test.addClassCleanup(shutil.rmtree, data_dir)
  builder = builder_class(data_dir=data_dir, config=config)
  tfds_io.ensure_built(builder, str(manual_dir))
  return builder


class BrokenReleaseTest(absltest.TestCase):
  """Each test gets ``self.manual_dir``, a copy of ``DUMMY`` (a builder's dummy release) to
  break, which ``self.build`` builds with ``BUILDER`` (in ``CONFIG`` unless told another)."""
  BUILDER = None
  DUMMY = None
  CONFIG = None

  def setUp(self):
    super().setUp()
    tmp = pathlib.Path(tempfile.mkdtemp())
    self.addCleanup(shutil.rmtree, tmp)
    self.manual_dir = tmp / 'manual'
    shutil.copytree(self.DUMMY, self.manual_dir)

  def build(self, config=None, manual_dir=None):
    return build(self, self.BUILDER, config or self.CONFIG, manual_dir or self.manual_dir)

  def test_missing_manual_dir(self):
    with self.assertRaisesRegex(FileNotFoundError, r'absent.* does not exist'):
      self.build(manual_dir=self.manual_dir.parent / 'absent')
