"""Hostile image files (benchmarks/fuzz_images.py, a short run): mutated files
either decode or raise ImageError, nothing else escapes, nothing hangs; and
decompression bombs are refused from their headers, before any decoding."""

import importlib.util
import io
import os
import time
import warnings

import numpy as np
import png
import pytest
from PIL import Image, ImageFile, WebPImagePlugin

from ae_research import image_io
from ae_research.datasets import folder

_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'benchmarks',
                     'fuzz_images.py')
_spec = importlib.util.spec_from_file_location('fuzz_images', _PATH)
fuzz_images = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_images)

_SEEDS = fuzz_images.seed_files()
_KINDS = sorted({s.name for s in _SEEDS})


def _seed(name):
  return next(s for s in _SEEDS if s.name == name)


def _write(tmp_path, seed, data):
  directory = tmp_path / seed.name
  directory.mkdir()
  path = directory / ('image' + fuzz_images.EXTENSION[seed.fmt])
  path.write_bytes(data)
  return str(path)


def _bomb(seed, size):
  data = bytearray(seed.data)
  fuzz_images._bomb(np.random.default_rng(0), seed.fmt, data, size)
  return bytes(data)


def test_a_short_fuzzing_run_neither_crashes_nor_hangs():
  # Input 123 is made to hang (its worker sleeps): the parent kills that
  # worker and goes on with another.
  tallies, failures, wall = fuzz_images.run(inputs=400, seed=0, workers=1,
                                            timeout=5.0, stall=123)
  report = fuzz_images.summary(tallies, failures, wall, seed=0)
  print(report)
  assert [(r['index'], r['outcome']) for r in failures] == [(123, 'hang')], report
  assert sum(t.hangs for t in tallies.values()) == 1
  for fmt, t in tallies.items():
    assert t.inputs == 80, fmt
    assert t.decoded > 0 and t.refused > 0, (fmt, report)  # Both outcomes occur.
    assert t.bombs > 0 and t.bombs_refused == t.bombs, (fmt, report)
    assert t.bomb_growth_kb < 64 * 1024, (fmt, report)


def test_inputs_are_made_again_the_same_from_seed_and_index():
  for index in (0, 7, 1234):
    a = fuzz_images.make_case(_SEEDS, 3, index)
    b = fuzz_images.make_case(fuzz_images.seed_files(), 3, index)
    assert a.data == b.data and a.mutations == b.mutations
  assert fuzz_images.make_case(_SEEDS, 3, 7).data != fuzz_images.make_case(
      _SEEDS, 4, 7).data


def test_seed_files_are_real_images_of_every_kind(tmp_path):
  assert {s.fmt for s in _SEEDS} == set(fuzz_images.FORMATS)
  for seed in _SEEDS:
    path = _write(tmp_path, seed, seed.data)
    image = image_io.read(path)
    assert min(image.pixels.shape[:2]) >= 20, seed.name
    assert image.bit_depth == (16 if '16' in seed.name else 8), seed.name


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


@pytest.mark.parametrize('name', ['png_rgb', 'png_16_rgb', 'jpeg_exif_rotated',
                                  'tiff_16', 'webp_lossless', 'bmp_rgb'])
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
  for name in ('png_rgb', 'png_16_rgb', 'jpeg_baseline', 'tiff_rgb', 'bmp_rgb'):
    seed = _seed(name)
    path = _write(tmp_path, seed, _bomb(seed, (15000, 15000)))
    with warnings.catch_warnings():
      warnings.simplefilter('error', Image.DecompressionBombWarning)
      assert image_io.header_size(path) == (15000, 15000), name


def test_pillow_limit_set_again_by_other_code_still_gives_an_image_error(
    tmp_path, monkeypatch):
  seed = _seed('png_rgb')
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


def test_the_fuzzer_counts_what_only_the_fallback_caught_as_a_crash(
    tmp_path, monkeypatch):
  def broken(*args):
    raise IndexError('index out of range')
  monkeypatch.setattr(image_io, '_from_pillow', broken)
  case = fuzz_images.Case(0, _seed('png_rgb'), _seed('png_rgb').data, [])
  result = fuzz_images.check(case, str(tmp_path))
  assert result['outcome'] == 'crash' and 'IndexError' in result['message']


def test_the_memory_measure_sees_a_decoded_image(tmp_path):
  # What makes "grew by 0 MB while refusing a bomb" mean something.
  buf = io.BytesIO()
  Image.new('RGB', (1500, 1500), (10, 20, 30)).save(buf, format='PNG')
  seed = fuzz_images.Seed('big', 'png', buf.getvalue())
  result = fuzz_images.check(fuzz_images.Case(0, seed, seed.data, []), str(tmp_path))
  assert result['outcome'] == 'decoded'
  assert result['growth_kb'] > 1500 * 1500 * 3 * 4 // 1024  # The float32 pixels.
