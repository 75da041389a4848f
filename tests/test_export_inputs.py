"""The SavedModel's signatures given what callers get wrong: an empty box list gives no
people, a zero-size box and wrongly shaped inputs give short errors naming the input."""

import numpy as np
import pytest
import tensorflow as tf

from jaxpose.inference import export

FOCAL = tf.constant(50.0, tf.float32)


@pytest.fixture(scope='module')
def model(predictor, tmp_path_factory):
  paths = export.export(predictor, str(tmp_path_factory.mktemp('export')))
  return tf.saved_model.load(paths['saved_model']), predictor.input_size


def _image(height=50, width=60, channels=3):
  return tf.constant(np.full((height, width, channels), 128, np.uint8))


def test_an_empty_box_list_gives_no_people(model):
  saved, _ = model
  out = saved.signatures['image'](image=_image(), boxes=tf.zeros((0, 4), tf.float32),
                                  focal=FOCAL)
  assert out['pose_3d'].shape == (0, 17, 3) and out['crop_matrix'].shape == (0, 3, 3)
  assert all(v.shape[0] == 0 for v in out.values())
  # And a box still gives its person.
  one = saved.signatures['image'](image=_image(), boxes=tf.constant([[10., 5., 20., 30.]]),
                                  focal=FOCAL)
  assert one['pose_3d'].shape == (1, 17, 3) and np.isfinite(one['pose_3d'].numpy()).all()


def _error(call) -> str:
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    call()
  text = str(raised.value)
  # A short message (the compiler's shape dumps ran to 9-12 KB) with the cause named.
  assert len(text) < 1000, text
  return text


@pytest.mark.parametrize('box', [[10., 5., 0., 30.], [10., 5., 20., 0.], [10., 5., 0., 0.],
                                 [10., float('nan'), 20., 30.]])
def test_a_box_without_size_is_refused(model, box):
  saved, _ = model
  text = _error(lambda: saved.signatures['image'](image=_image(), boxes=tf.constant([box]),
                                                  focal=FOCAL))
  assert ('boxes: expected w, h > 0 for every box (x, y, w, h)' in text
          or 'boxes: expected finite x, y, w, h' in text), text


def test_wrong_shapes_are_named_in_a_few_lines(model):
  saved, size = model
  text = _error(lambda: saved.signatures['crops'](crops=tf.zeros((2, size - 14, size, 3),
                                                                 tf.uint8)))
  assert f'crops: expected (B, {size}, {size}, 3) uint8 crops' in text
  text = _error(lambda: saved.signatures['image'](
      image=_image(channels=4), boxes=tf.constant([[10., 5., 20., 30.]]), focal=FOCAL))
  assert 'image: expected (H, W, 3) uint8 RGB' in text
  text = _error(lambda: saved.signatures['image'](
      image=_image(height=0), boxes=tf.constant([[10., 5., 20., 30.]]), focal=FOCAL))
  assert 'image: expected H, W >= 1' in text
  text = _error(lambda: saved.signatures['image'](
      image=_image(), boxes=tf.constant([[10., 5., 20., 30.]]), focal=tf.constant(0.0)))
  assert 'focal: expected a focal length > 0 px' in text
