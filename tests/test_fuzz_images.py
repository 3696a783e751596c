"""Hostile image files (`ae_research.fuzz_images`, a short run, as
benchmarks/fuzz_images.py runs it): mutated files either decode or raise
ImageError, nothing else escapes, nothing hangs; and decompression bombs are
refused from their headers, before any decoding."""

import contextlib
import io
import os
import time
import warnings

import numpy as np
import png
import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from ae_research import fuzz_images, fuzzing, image_io
from ae_research.datasets import folder

_SEEDS = fuzz_images.seed_files()
_KINDS = sorted({s.name for s in _SEEDS})


def _seed(name):
  return next(s for s in _SEEDS if s.name == name)


def _write(tmp_path, seed, data):
  directory = tmp_path / seed.name.replace(' ', '_')
  directory.mkdir()
  path = directory / ('image' + fuzz_images.EXTENSION[seed.fmt])
  path.write_bytes(data)
  return str(path)


def _bomb(seed, size):
  return fuzz_images.restate(seed.fmt, seed.data, *size, np.random.default_rng(0))


@pytest.mark.slow
def test_a_short_fuzzing_run_neither_crashes_nor_hangs():
  # Input 128 is made to hang (its worker sleeps): the parent kills that
  # worker and goes on with another.
  report = fuzzing.fuzz(fuzz_images.Target(seed=0), 80 * len(fuzz_images.FORMATS),
                        workers=1, time_limit=3.0,
                        sabotage={128: 'hang'}, log=print)
  text = fuzz_images.summary(report)
  print(text)
  assert [(f['index'], f['outcome']) for f in report.failures] == [(128, 'hang')], text
  assert report.restarts == 1 and 'hangs:         1 (inputs 128)' in text
  for fmt in fuzz_images.FORMATS:
    kinds = {k: report.groups.get(f'{fmt} {k}', fuzzing.Tally()) for k in
             ('bytes', 'size', 'bomb')}
    assert sum(t.inputs for t in kinds.values()) == 80, fmt
    counts = sum((t.counts for t in kinds.values()), start=fuzzing.Tally().counts)
    assert counts['decoded'] > 0 and counts['refused'] > 0, (fmt, text)  # Both occur.
    bombs = kinds['bomb']
    assert bombs.inputs > 0 and bombs.counts['refused'] == bombs.inputs, (fmt, text)
    assert bombs.growth[0] < fuzz_images.BOMB_GROWTH, (fmt, text)
  assert report.facts['bomb'].low > report.target.max_pixels


def test_inputs_are_made_again_the_same_from_seed_and_index():
  for index in (0, 7, 1234):
    a = fuzz_images.make_case(_SEEDS, 3, index, 4, 1000)
    b = fuzz_images.make_case(fuzz_images.seed_files(), 3, index, 4, 1000)
    assert a.data == b.data and a.what == b.what
  assert fuzz_images.make_case(_SEEDS, 3, 7, 4, 1000).data != fuzz_images.make_case(
      _SEEDS, 4, 7, 4, 1000).data
  groups = {fuzz_images.make_case(_SEEDS, 0, i, 4, 1000).group for i in range(400)}
  assert groups == {f'{f} {k}' for f in fuzz_images.FORMATS
                    for k in ('bytes', 'size', 'bomb')}


def test_seed_files_are_real_images_of_every_kind(tmp_path):
  assert {s.fmt for s in _SEEDS} == set(fuzz_images.FORMATS)
  for seed in _SEEDS:
    path = _write(tmp_path, seed, seed.data)
    image = image_io.read(path)
    assert min(image.pixels.shape[:2]) >= 20, seed.name
    assert image.bit_depth == (16 if '16' in seed.name else 8), seed.name
  # WebP's three headers, which image_io reads itself.
  assert {s.data[12:16] for s in _SEEDS if s.fmt == 'webp'} == {b'VP8 ', b'VP8L', b'VP8X'}


@pytest.mark.parametrize('fmt', fuzz_images.FORMATS)
def test_a_restated_header_is_read_as_written(tmp_path, monkeypatch, fmt):
  # Over the limit, image_io's own refusal names the size (for WebP, read
  # by image_io itself: Pillow decodes a WebP file to open it).
  monkeypatch.setattr(image_io, 'MAX_PIXELS', 1000)
  rng = np.random.default_rng(0)
  for seed in (s for s in _SEEDS if s.fmt == fmt):
    for size in ((20, 20), (3, 70), (5000, 3), (16384, 16383), (60000, 2)):
      path = _write(tmp_path, seed, fuzz_images.restate(fmt, seed.data, *size, rng))
      if size[0] * size[1] > 1000:
        with pytest.raises(image_io.ImageError, match=f'states {size[0]}x{size[1]} = '):
          image_io.header_size(path)
      elif fmt != 'webp':  # Pillow's WebP reader refuses a size its data lacks.
        assert image_io.header_size(path) == size, (seed.name, size)
      os.remove(path)
      os.rmdir(os.path.dirname(path))


@pytest.mark.parametrize('name', _KINDS)
def test_a_bomb_is_refused_from_its_header(tmp_path, name):
  seed = _seed(name)
  path = _write(tmp_path, seed, _bomb(seed, (60000, 60000)))
  start = time.perf_counter()
  with pytest.raises(image_io.ImageError) as e:
    image_io.read(path)
  assert time.perf_counter() - start < 1.0  # 10 GB were not decoded.
  message = str(e.value)
  assert path in message and '60000x60000' in message
  assert f'{image_io.MAX_PIXELS:,}' in message and 'AE_RESEARCH_MAX_PIXELS' in message
  with pytest.raises(image_io.ImageError, match='60000x60000'):
    folder.FolderSource([os.path.dirname(path)]).decoded_bytes()
  with pytest.raises(image_io.ImageError, match='60000x60000'):
    image_io.header_size(path)


@pytest.fixture
def no_decoding(monkeypatch):
  """Any decoding fails the test: Pillow's, pypng's, libwebp's."""
  def fail(*args, **kwargs):
    raise AssertionError('pixels were decoded or allocated')
  monkeypatch.setattr(ImageFile.ImageFile, 'load', fail)
  monkeypatch.setattr(Image.Image, 'load', fail)
  monkeypatch.setattr(png.Reader, 'asDirect', fail)
  monkeypatch.setattr(png.Reader, 'read', fail)
  # Pillow hands WebP files to libwebp's decoder on open, which allocates.
  monkeypatch.setattr(WebPImagePlugin._webp, 'WebPAnimDecoder', fail)


@pytest.mark.parametrize('name', _KINDS)
def test_a_normal_file_over_a_lowered_limit_is_refused_before_decoding(
    tmp_path, monkeypatch, no_decoding, name):
  seed = _seed(name)
  path = _write(tmp_path, seed, seed.data)
  monkeypatch.setattr(image_io, 'MAX_PIXELS', 100)
  with pytest.raises(image_io.ImageError, match='more than the limit of 100 '):
    image_io.read(path)
  with pytest.raises(image_io.ImageError, match='more than the limit of 100 '):
    folder.FolderSource([os.path.dirname(path)]).decoded_bytes()


@pytest.mark.parametrize('name', ['png rgb', 'png 16-bit rgba', 'jpeg rotated',
                                  'tiff 16-bit gray', 'webp lossless', 'bmp rgb'])
def test_the_limit_itself_is_allowed(tmp_path, monkeypatch, name):
  seed = _seed(name)
  path = _write(tmp_path, seed, seed.data)
  width, height = image_io.header_size(path)
  monkeypatch.setattr(image_io, 'MAX_PIXELS', width * height)
  assert image_io.read(path).pixels.size // image_io.read(path).pixels.shape[2] == (
      width * height)
  monkeypatch.setattr(image_io, 'MAX_PIXELS', width * height - 1)
  with pytest.raises(image_io.ImageError, match='more than the limit'):
    image_io.read(path)


def test_pillow_does_not_refuse_what_max_pixels_allows(tmp_path):
  # 15000x15000 is over Pillow's default limit (and twice it, its error),
  # under MAX_PIXELS: the header is read without Pillow's warning or error.
  # (Not WebP: Pillow reads its size through libwebp's decoder, which would
  # allocate the canvas, and refuses a canvas larger than the image in it.)
  assert 2 * (1024 * 1024 * 1024 // 4 // 3) < 15000 * 15000 <= image_io.MAX_PIXELS
  for name in ('png rgb', 'png 16-bit rgba', 'jpeg cmyk', 'tiff lzw rgba'):
    seed = _seed(name)
    path = _write(tmp_path, seed, _bomb(seed, (15000, 15000)))
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      assert image_io.header_size(path) == (15000, 15000), name


_UNCOMPRESSED = ('bmp rgb', 'bmp gray', 'tiff 16-bit gray', 'tiff float',
                 'tiff raw rgb', 'ppm rgb', 'pgm gray', 'pgm 16-bit', 'pbm bilevel')


@pytest.mark.parametrize('name', _UNCOMPRESSED)
def test_an_uncompressed_file_stating_more_than_it_holds_is_refused_from_its_header(
    tmp_path, name):
  seed = _seed(name)
  with Image.open(io.BytesIO(seed.data)) as img:
    w, h = img.size
  as_is = _write(tmp_path, seed, _bomb(seed, (w, h)))
  assert image_io.read(as_is).pixels.shape[:2] == (h, w)  # Restated as it was.
  # Just under the pixel limit, a few hundred bytes: Pillow would allocate it
  # all (3.2 GB for this BMP once decoded as float pixels).
  side = int(np.sqrt(image_io.MAX_PIXELS)) - 1
  (tmp_path / 'big').mkdir()
  big = str(tmp_path / 'big' / os.path.basename(as_is))
  with open(big, 'wb') as f:
    f.write(_bomb(seed, (side, side)))
  fuzzing._reset_peak()  # pylint: disable=protected-access
  before = fuzzing.peak_memory_bytes()
  for read in (image_io.header_size, image_io.read):
    with pytest.raises(image_io.ImageError) as e:
      read(big)
    message = str(e.value)
    assert message.startswith(big) and 'uncompressed' in message, message
    assert f'{side}x{side}' in message and f'{os.path.getsize(big):,} bytes' in message
  assert fuzzing.peak_memory_bytes() - before < 8 << 20
  # Truncated to a third of its pixel bytes: refused the same way.
  (tmp_path / 'cut').mkdir()
  cut = str(tmp_path / 'cut' / os.path.basename(as_is))
  with open(cut, 'wb') as f:
    f.write(seed.data[:len(seed.data) // 3])
  with pytest.raises(image_io.ImageError, match='uncompressed'):
    image_io.read(cut)


def test_compressed_files_are_not_held_to_their_raw_size(tmp_path):
  # A PNG of one flat colour holds far fewer bytes than its pixels: decoded.
  for fmt, options in (('PNG', {}), ('TIFF', {'compression': 'tiff_lzw'})):
    path = str(tmp_path / f'flat.{fmt.lower()}')
    Image.new('RGB', (512, 512), (10, 200, 30)).save(path, fmt, **options)
    assert os.path.getsize(path) * image_io.RAW_FACTOR < 512 * 512 * 3
    with Image.open(path) as img:
      assert image_io.raw_bytes(img) is None
    assert image_io.read(path).pixels.shape == (512, 512, 3)


def test_pillow_limit_set_again_by_other_code_still_gives_an_image_error(
    tmp_path, monkeypatch):
  seed = _seed('png rgb')
  path = _write(tmp_path, seed, seed.data)
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)  # Pillow's error at 200.
  with pytest.raises(image_io.ImageError, match='PIL.Image.MAX_IMAGE_PIXELS=100'):
    image_io.read(path)
  monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)  # Pillow's warning only.
  with warnings.catch_warnings():
    warnings.simplefilter('error', Image.DecompressionBombWarning)
    with pytest.raises(image_io.ImageError, match='decompression bomb'):
      image_io.read(path)


@pytest.mark.parametrize('value,limit', [('', 1 << 28), ('1000', 1000),
                                         (' 5_000_000 ', 5_000_000)])
def test_the_limit_from_the_environment(monkeypatch, value, limit):
  monkeypatch.setenv('AE_RESEARCH_MAX_PIXELS', value)
  assert image_io._max_pixels_from_environment() == limit


@pytest.mark.parametrize('value', ['lots', '0', '-5', '1e9'])
def test_a_bad_limit_in_the_environment_says_so(monkeypatch, value):
  monkeypatch.setenv('AE_RESEARCH_MAX_PIXELS', value)
  with pytest.raises(ValueError, match='AE_RESEARCH_MAX_PIXELS'):
    image_io._max_pixels_from_environment()


def _target(tmp_path, **kwargs):
  target = fuzz_images.Target(**kwargs)
  target.start(str(tmp_path))
  return target


def test_what_only_the_fallback_caught_is_a_crash(tmp_path, monkeypatch):
  def broken(*args):
    raise IndexError('index out of range')
  monkeypatch.setattr(image_io, '_from_pillow', broken)
  target = _target(tmp_path)
  seed = _seed('png rgb')
  result = target.check(fuzz_images.Case(seed.data, 'png bytes', '', '.png'))
  assert result.outcome == 'crash' and 'IndexError' in result.detail
  assert 'only the last resort' in result.detail


def test_a_reader_broken_on_purpose_is_a_crash_or_a_wrong_result(tmp_path, monkeypatch):
  """The contract checked, against image_io broken on purpose: errors that
  escape unwrapped, and a size limit that is not checked."""
  target = _target(tmp_path)
  bomb = next(i for i in range(0, 480, len(fuzz_images.FORMATS)) if target.make(i).group == 'png bomb'
              and np.prod(target.make(i).stated) < 100 * target.max_pixels)
  assert fuzzing.check_one(target, bomb)['o'] == 'refused'
  with monkeypatch.context() as m:
    m.setattr(image_io, '_check_pixels', lambda *args: None)
    found = fuzzing.check_one(target, bomb)
  assert found['o'] == 'wrong' and 'not refused by its header' in found['d'], found
  monkeypatch.setattr(image_io, '_reading', lambda path: contextlib.nullcontext())
  corrupt = next(i for i in range(0, 480, len(fuzz_images.FORMATS)) if fuzzing.check_one(target, i)['o'] == 'crash')
  found = fuzzing.check_one(target, corrupt)
  escaped = found['d'].splitlines()[-1]  # The traceback's last line.
  assert escaped.startswith(('PIL.', 'OSError', 'SyntaxError', 'ValueError')), escaped


def test_the_memory_measure_sees_a_decoded_image(tmp_path):
  # What makes "grew by 0.0 MiB while refusing a bomb" mean something.
  buf = io.BytesIO()
  Image.new('RGB', (1500, 1500), (10, 20, 30)).save(buf, format='PNG')
  big = fuzz_images.Seed('big', 'png', buf.getvalue())
  target = _target(tmp_path, max_pixels=1500 * 1500)
  target.make = lambda index: fuzz_images.Case(big.data, 'png bytes', 'big', '.png')
  message = fuzzing.check_one(target, 0)
  assert message['o'] == 'decoded', message
  assert message['m'] > 1500 * 1500 * 3 * 4  # The float32 pixels.
