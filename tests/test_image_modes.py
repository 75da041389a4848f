"""Every image mode PIL opens from a file becomes the right 8-bit RGB (each against a
conversion written independently of PIL's, from the file's raw values), and the --image
inputs people have: folders, glob patterns, oversized photos."""

import cv2
import numpy as np
import pytest
from PIL import Image

from jaxpose.inference import images

RNG = np.random.default_rng(28)
SIZE = (24, 32)  # height, width


def _grey(dtype, high):
  return RNG.integers(0, high, SIZE, endpoint=True).astype(dtype)


def _write(path, array, mode=None, **kwargs):
  Image.fromarray(array, mode).save(path, **kwargs) if mode else Image.fromarray(array).save(
      path, **kwargs)
  return path


def _case_i16_png(tmp_path):
  values = _grey(np.uint16, 65535)
  path = tmp_path / 'grey16.png'
  cv2.imwrite(str(path), values)  # not PIL: a 16-bit PNG as other programs write it
  return path, np.round(values / 257.0)


def _case_i16_tiff(tmp_path):
  values = _grey(np.uint16, 65535)
  path = tmp_path / 'grey16.tif'
  cv2.imwrite(str(path), values)
  return path, np.round(values / 257.0)


def _case_i32_tiff(tmp_path):
  values = _grey(np.int32, 65535)  # 16-bit levels held in 32-bit integers
  return _write(tmp_path / 'grey32.tif', values, 'I'), np.round(values / 257.0)


def _case_float_tiff(tmp_path):
  values = RNG.random(SIZE, np.float32)
  path = tmp_path / 'float.tif'
  cv2.imwrite(str(path), values)
  return path, np.round(values.astype(np.float64) * 255)


def _case_1(tmp_path):
  bits = RNG.random(SIZE) > 0.5
  return _write(tmp_path / 'bits.png', bits), np.where(bits, 255.0, 0.0)


def _case_l(tmp_path):
  values = _grey(np.uint8, 255)
  return _write(tmp_path / 'grey.png', values), values.astype(float)


def _case_la(tmp_path):
  values = RNG.integers(0, 256, SIZE + (2,), np.uint8)
  return _write(tmp_path / 'grey_alpha.png', values, 'LA'), values[..., 0].astype(float)


def _case_p(tmp_path):
  palette = RNG.integers(0, 256, (256, 3), np.uint8)
  index = RNG.integers(0, 256, SIZE, np.uint8)
  image = Image.fromarray(index, 'P')
  image.putpalette(palette.tobytes())
  image.save(tmp_path / 'palette.png')
  return tmp_path / 'palette.png', palette[index].astype(float)


def _case_rgba(tmp_path):
  values = RNG.integers(0, 256, SIZE + (4,), np.uint8)
  return _write(tmp_path / 'rgba.png', values, 'RGBA'), values[..., :3].astype(float)


def _case_cmyk(tmp_path):
  values = RNG.integers(0, 256, SIZE + (4,), np.uint8)
  ink = values.astype(np.float64) / 255
  rgb = np.round(255 * (1 - ink[..., :3]) * (1 - ink[..., 3:]))
  return _write(tmp_path / 'cmyk.tif', values, 'CMYK'), rgb


def _case_lab(tmp_path):
  # OpenCV's 8-bit Lab: L * 255 / 100, a + 128, b + 128; PIL's stores a and b as int8.
  lab = RNG.integers(0, 256, SIZE + (3,)).astype(np.uint8)
  lab[..., 1:] = lab[..., 1:] // 8 + 112  # colours well inside sRGB's gamut
  stored = lab.copy()
  stored[..., 1:] = (lab[..., 1:].astype(np.int16) - 128).astype(np.int8).view(np.uint8)
  return (_write(tmp_path / 'lab.tif', stored, 'LAB'),
          cv2.cvtColor(lab, cv2.COLOR_Lab2RGB).astype(float))


CASES = {'I;16 png': ('I;16', _case_i16_png), 'I;16 tiff': ('I;16', _case_i16_tiff),
         'I': ('I', _case_i32_tiff), 'F': ('F', _case_float_tiff), '1': ('1', _case_1),
         'L': ('L', _case_l), 'LA': ('LA', _case_la), 'P': ('P', _case_p),
         'RGBA': ('RGBA', _case_rgba), 'CMYK': ('CMYK', _case_cmyk),
         'LAB': ('LAB', _case_lab)}


@pytest.mark.parametrize('case', CASES)
def test_every_mode_becomes_8_bit_rgb(case, tmp_path):
  mode, make = CASES[case]
  path, expected = make(tmp_path)
  with Image.open(path) as pil:
    assert pil.mode == mode  # the file exercises the mode meant
  image, _ = images.load_image(path)
  assert image.dtype == np.uint8 and image.shape == SIZE + (3,)
  expected = np.broadcast_to(np.asarray(expected)[..., None] if np.ndim(expected) == 2
                             else expected, image.shape)
  error = np.abs(image.astype(float) - expected)
  if mode == 'LAB':
    # PIL converts through a D50 white, OpenCV through D65: a few levels apart.
    assert error.mean() < 2.0 and error.max() <= 16, (error.mean(), error.max())
  else:
    assert error.max() <= 1.0, error.max()


def test_a_16_bit_photo_keeps_its_brightness(tmp_path):
  """The reported case: mid-grey 16-bit levels came out white (254.7 against 129.1)."""
  values = np.full(SIZE, 129 * 257, np.uint16)
  cv2.imwrite(str(tmp_path / 'grey16.png'), values)
  image, _ = images.load_image(tmp_path / 'grey16.png')
  assert image.mean() == pytest.approx(129, abs=0.5)


def test_folders_and_patterns_become_their_images(tmp_path):
  for name in ('b.jpg', 'a.PNG', 'c.tif'):
    _write(tmp_path / name, _grey(np.uint8, 255))
  (tmp_path / 'notes.txt').write_text('not an image')
  (tmp_path / 'sub').mkdir()
  assert images.image_paths([str(tmp_path)]) == [
      str(tmp_path / n) for n in ('a.PNG', 'b.jpg', 'c.tif')]
  assert images.image_paths([str(tmp_path / '*.jpg'), str(tmp_path / 'c.tif')]) == [
      str(tmp_path / 'b.jpg'), str(tmp_path / 'c.tif')]
  with pytest.raises(FileNotFoundError, match=r'--image=.*/sub: the folder holds no image'):
    images.image_paths([str(tmp_path / 'sub')])
  with pytest.raises(FileNotFoundError, match=r'--image=.*/\*\.gif: no file matches'):
    images.image_paths([str(tmp_path / '*.gif')])


def test_an_oversized_image_names_the_limit_and_the_flag(tmp_path, monkeypatch):
  # PIL refuses images over twice MAX_IMAGE_PIXELS; a lower limit stands in for 182 MP.
  path = _write(tmp_path / 'huge.png', _grey(np.uint8, 255))
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 300)
  with pytest.raises(ValueError, match=r'image .*huge.png: Image size \(768 pixels\) exceeds '
                     r'limit of 600 pixels.*decompression bombs: twice '
                     r'PIL.Image.MAX_IMAGE_PIXELS = 300\); to read it, raise the limit with '
                     r'--max_image_pixels=384'):
    images.load_image(path)
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 384)
  assert images.load_image(path)[0].shape == SIZE + (3,)
