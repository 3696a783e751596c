"""Image files: every common kind read exactly, EXIF orientation applied,
and a clear error for each kind of bad file."""

import io

import numpy as np
import png
import pytest
from PIL import Image, ImageFile, ImageOps

from ae_research import image_io
from ae_research.datasets import folder


def _rng_image(shape, dtype=np.uint8, seed=0):
  top = np.iinfo(dtype).max
  return np.random.default_rng(seed).integers(0, top + 1, shape).astype(dtype)


@pytest.mark.parametrize('mode,shape,color,alpha', [
    ('L', (9, 7), 1, False), ('LA', (9, 7, 2), 1, True),
    ('RGB', (9, 7, 3), 3, False), ('RGBA', (9, 7, 4), 3, True)])
def test_8_bit_modes(tmp_path, mode, shape, color, alpha):
  array = _rng_image(shape)
  path = str(tmp_path / 'x.png')
  Image.fromarray(array).save(path)
  image = image_io.read(path)
  want = array.reshape(9, 7, -1).astype(np.float32) / 255
  assert image.bit_depth == 8 and image.pixels.shape == (9, 7, color)
  np.testing.assert_array_equal(image.pixels, want[..., :color])
  if alpha:
    np.testing.assert_array_equal(image.alpha, want[..., color:])
  else:
    assert image.alpha is None


def test_palette_with_transparency_keeps_its_alpha(tmp_path):
  img = Image.fromarray(_rng_image((6, 5, 3))).convert('P')
  img.info['transparency'] = 0
  path = str(tmp_path / 'p.png')
  img.save(path, transparency=0)
  image = image_io.read(path)
  want = np.asarray(Image.open(path).convert('RGBA'), np.float32) / 255
  np.testing.assert_array_equal(image.pixels, want[..., :3])
  np.testing.assert_array_equal(image.alpha, want[..., 3:])


@pytest.mark.parametrize('mode,planes', [('L;16', 1), ('LA;16', 2), ('RGB;16', 3),
                                         ('RGBA;16', 4)])
def test_16_bit_png_keeps_every_bit(tmp_path, mode, planes):
  array = _rng_image((5, 6, planes), np.uint16)
  path = str(tmp_path / 'x16.png')
  png.from_array(array.reshape(5, -1), mode).save(path)
  image = image_io.read(path)
  assert image.bit_depth == 16
  color = 3 if planes >= 3 else 1
  got = image.pixels if image.alpha is None else np.concatenate(
      [image.pixels, image.alpha], -1)
  assert image.pixels.shape[-1] == color
  np.testing.assert_array_equal(np.round(got * 65535).astype(np.uint16), array)
  # The folder data source reads the same file, scaled to 8 bits.
  rgb = folder.load_rgb(path)
  assert rgb.dtype == np.uint8 and rgb.shape == (5, 6, 3)
  np.testing.assert_array_equal(rgb[..., :color], np.round(array[..., :color] / 257).astype(np.uint8)
                                if color == 3 else
                                np.round(array[..., :1] / 257).astype(np.uint8))


@pytest.mark.parametrize('bit_depth', [8, 16])
@pytest.mark.parametrize('channels,alpha', [(1, False), (1, True), (3, False), (3, True)])
def test_write_png_round_trips(tmp_path, bit_depth, channels, alpha):
  rng = np.random.default_rng(1)
  pixels = rng.random((7, 8, channels)).astype(np.float32)
  a = rng.random((7, 8, 1)).astype(np.float32) if alpha else None
  path = str(tmp_path / 'out.png')
  image_io.write_png(path, pixels, a, bit_depth)
  back = image_io.read(path)
  top = 2 ** bit_depth - 1
  assert back.bit_depth == bit_depth
  np.testing.assert_array_equal(back.pixels, np.round(pixels * top) / top)
  if alpha:
    np.testing.assert_array_equal(back.alpha, np.round(a * top) / top)
  else:
    assert back.alpha is None


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_is_applied(tmp_path, orientation):
  array = np.zeros((24, 40, 3), np.uint8)
  array[:8, :16] = (255, 0, 0)  # A marker in one corner of a wide image.
  img = Image.fromarray(array)
  exif = img.getexif()
  exif[0x0112] = orientation
  path = str(tmp_path / 'photo.jpg')
  img.save(path, quality=95, exif=exif.tobytes())
  got = image_io.read(path).pixels
  with Image.open(path) as stored:
    want = np.asarray(ImageOps.exif_transpose(stored), np.float32) / 255
  assert got.shape == want.shape
  assert got.shape[:2] == ((24, 40) if orientation < 5 else (40, 24))
  np.testing.assert_array_equal(got, want)


def _png_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format='PNG')
  return buf.getvalue()


def _jpeg_bytes(array):
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format='JPEG')
  return buf.getvalue()


def _png16_bytes(array):
  buf = io.BytesIO()
  png.from_array(array.reshape(array.shape[0], -1), 'RGB;16').write(buf)
  return buf.getvalue()


@pytest.mark.parametrize('name,make,message', [
    ('empty.png', lambda: b'', 'empty file'),
    ('notes.jpg', lambda: b'these are notes, not pixels\n' * 10, 'not an image'),
    ('truncated.png', lambda: _png_bytes(_rng_image((64, 64, 3)))[:3000],
     'truncated or corrupt'),
    ('truncated.jpg', lambda: _jpeg_bytes(_rng_image((64, 64, 3)))[:2000],
     'truncated or corrupt'),
    ('corrupt.png', lambda: (lambda b: b[:200] + bytes(300) + b[500:])(
        _png_bytes(_rng_image((64, 64, 3)))), 'truncated or corrupt'),
    ('truncated16.png', lambda: _png16_bytes(_rng_image((32, 32, 3), np.uint16))[:1500],
     'truncated or corrupt'),
])
def test_bad_files_raise_a_clear_error(tmp_path, name, make, message):
  path = tmp_path / name
  path.write_bytes(make())
  with pytest.raises(image_io.ImageError, match=message) as e:
    image_io.read(str(path))
  assert str(path) in str(e.value)


def test_missing_file(tmp_path):
  with pytest.raises(image_io.ImageError, match='no such file'):
    image_io.read(str(tmp_path / 'nothing.png'))


def _tiff_with_strip_offsets_typed(kind):
  """A TIFF whose strip offsets (tag 273) are stated as another type."""
  buf = io.BytesIO()
  Image.fromarray(_rng_image((8, 8, 3))).save(buf, format='TIFF')
  data = bytearray(buf.getvalue())
  ifd = int.from_bytes(data[4:8], 'little')
  for k in range(int.from_bytes(data[ifd:ifd + 2], 'little')):
    at = ifd + 2 + 12 * k
    if int.from_bytes(data[at:at + 2], 'little') == 273:
      data[at + 2:at + 4] = kind.to_bytes(2, 'little')
  return bytes(data)


@pytest.mark.parametrize('kind', [5, 11])  # RATIONAL, FLOAT: a TypeError in Pillow.
def test_a_tiff_tag_of_the_wrong_type_is_a_clear_error(tmp_path, kind):
  path = tmp_path / 'x.tif'
  path.write_bytes(_tiff_with_strip_offsets_typed(kind))
  with pytest.raises(image_io.ImageError, match='truncated or corrupt.*TypeError'):
    image_io.read(str(path))


def test_running_out_of_memory_is_an_image_error(tmp_path, monkeypatch):
  path = str(tmp_path / 'x.png')
  Image.fromarray(_rng_image((6, 5, 3))).save(path)
  def no_memory(*args):
    raise MemoryError()
  monkeypatch.setattr(image_io, '_from_pillow', no_memory)
  with pytest.raises(image_io.ImageError, match='not enough memory'):
    image_io.read(path)


def test_an_unforeseen_decoder_failure_is_still_an_image_error(tmp_path, monkeypatch):
  path = str(tmp_path / 'x.png')
  Image.fromarray(_rng_image((6, 5, 3))).save(path)
  def broken(*args):
    raise IndexError('index out of range')
  monkeypatch.setattr(image_io, '_from_pillow', broken)
  with pytest.raises(image_io.ImageError, match='failed unexpectedly.*IndexError') as e:
    image_io.read(path)
  assert str(path) in str(e.value)


def test_header_size_decodes_nothing(tmp_path, monkeypatch):
  path = str(tmp_path / 'x.png')
  Image.fromarray(_rng_image((6, 5, 3))).save(path)
  def decode(*args):
    raise AssertionError('decoded')
  monkeypatch.setattr(ImageFile.ImageFile, 'load', decode)
  assert image_io.header_size(path) == (5, 6)
  (tmp_path / 'notes.png').write_bytes(b'not an image')
  with pytest.raises(image_io.ImageError, match='not an image'):
    image_io.header_size(str(tmp_path / 'notes.png'))


def test_float_tiff_nan_and_infinity_stay_in_range(tmp_path):
  array = np.random.default_rng(2).random((5, 6)).astype(np.float32)
  array[0, 0], array[1, 1], array[2, 2] = np.nan, np.inf, -np.inf
  path = str(tmp_path / 'f.tif')
  Image.fromarray(array).save(path)
  got = image_io.read(path).pixels[..., 0]
  want = array.copy()
  want[0, 0], want[1, 1], want[2, 2] = 0.0, 1.0, 0.0
  np.testing.assert_array_equal(got, want)  # The range set by the finite values.


def test_folder_source_out_of_memory_is_an_image_error(tmp_path, monkeypatch):
  path = str(tmp_path / 'x.png')
  Image.fromarray(_rng_image((6, 5))).save(path)
  def no_memory(self):
    raise MemoryError()
  monkeypatch.setattr(image_io.Image, 'rgb_uint8', no_memory)
  with pytest.raises(image_io.ImageError, match='not enough memory for its 5x6 pixels'):
    folder.load_rgb(path)
