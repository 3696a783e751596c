"""Corruptions and degradations, each reproducible from its rng."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ae_research import color
from ae_research import corruptions as C
from ae_research.datasets import folder

TESTSETS = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'testsets')


def _image(h=40, w=48, seed=0):
  return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _same_for_same_seed(fn):
  a = fn(np.random.default_rng(7))
  b = fn(np.random.default_rng(7))
  c = fn(np.random.default_rng(8))
  for x, y in zip(np.atleast_1d(a), np.atleast_1d(b)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(np.atleast_1d(a)[0], np.atleast_1d(c)[0])


def test_gaussian_noise_has_the_asked_sigma_and_is_not_clipped():
  clean = np.full((200, 200, 3), 0.5, np.float32)
  noisy = C.gaussian_noise(clean, np.random.default_rng(0), 25.0)
  assert abs(np.std(noisy - clean) * 255 - 25.0) < 0.5
  assert abs(np.mean(noisy - clean)) < 0.01
  bright = C.gaussian_noise(clean + 0.45, np.random.default_rng(0), 25.0)
  assert (bright > 1.0).mean() > 0.3  # Not clipped.
  _same_for_same_seed(lambda r: C.gaussian_noise(clean, r, 25.0))


def test_blind_sigma_is_drawn_from_the_range():
  rng = np.random.default_rng(0)
  sigmas = [C.draw_sigma(rng, 25.0, (5.0, 50.0)) for _ in range(200)]
  assert 5.0 <= min(sigmas) and max(sigmas) <= 50.0 and np.std(sigmas) > 5
  assert C.draw_sigma(rng, 25.0, (0.0, 0.0)) == 25.0


def test_salt_and_pepper():
  clean = np.full((100, 100, 3), 0.5, np.float32)
  out = C.salt_and_pepper(clean, np.random.default_rng(0), 0.2)
  hit = np.any(out != 0.5, axis=-1)
  assert abs(hit.mean() - 0.2) < 0.03
  assert set(np.unique(out[hit])) == {0.0, 1.0}
  _same_for_same_seed(lambda r: C.salt_and_pepper(clean, r, 0.2))


def test_random_mask_removes_blocks():
  clean = np.ones((64, 64, 3), np.float32)
  out, mask = C.random_mask(clean, np.random.default_rng(0), 0.3, block=8)
  assert abs(mask.mean() - 0.3) < 0.15
  np.testing.assert_array_equal(out[mask[..., 0] > 0], 0.0)
  np.testing.assert_array_equal(out[mask[..., 0] == 0], 1.0)
  blocks = mask[..., 0].reshape(8, 8, 8, 8)
  assert np.all((blocks.min(axis=(1, 3)) == blocks.max(axis=(1, 3))))


def test_crosshair_is_one_row_and_one_column():
  clean = np.ones((50, 60, 3), np.float32)
  out, mask = C.crosshair(clean, np.random.default_rng(3), thickness=1)
  m = mask[..., 0] > 0
  rows, cols = np.where(m.all(axis=1))[0], np.where(m.all(axis=0))[0]
  assert len(rows) == 1 and len(cols) == 1
  assert m.sum() == 50 + 60 - 1
  assert 50 // 4 <= rows[0] < 3 * 50 // 4 and 60 // 4 <= cols[0] < 3 * 60 // 4
  np.testing.assert_array_equal(out[m], 0.0)
  _same_for_same_seed(lambda r: C.crosshair(clean, r)[1])


def test_bicubic_shapes_and_mod_crop():
  img = C.mod_crop(_image(41, 50), 3)
  assert img.shape == (39, 48, 3)
  lr = C.bicubic_downscale(img, 3)
  assert lr.shape == (13, 16, 3)
  assert C.bicubic_upscale(lr, 3).shape == img.shape
  with pytest.raises(ValueError, match='mod_crop'):
    C.bicubic_downscale(_image(41, 50), 3)
  flat = np.full((30, 30, 3), 0.25, np.float32)
  np.testing.assert_allclose(C.bicubic_downscale(flat, 3), 0.25, atol=1e-6)


def test_random_crop_pads_small_images():
  rng = np.random.default_rng(0)
  assert C.random_crop(_image(40, 48), rng, 32).shape == (32, 32, 3)
  assert C.random_crop(_image(20, 48), rng, 32).shape == (32, 32, 3)


@pytest.mark.skipif(not os.path.isdir(os.path.join(TESTSETS, 'Set5')),
                    reason='../shared/testsets/Set5 is not beside this checkout')
def test_bicubic_on_set5_x3_gives_the_published_psnr():
  """30.39 dB (Y channel, 3-pixel border cropped) within 0.05 dB."""
  source = folder.FolderSource(os.path.join(TESTSETS, 'Set5'))
  psnrs = []
  for i in range(len(source)):
    hr = C.mod_crop(source[i]['image'].astype(np.float32) / 255.0, 3)
    up = C.quantize(C.bicubic_upscale(C.quantize(C.bicubic_downscale(hr, 3)), 3))
    y_hr, y_up = color.rgb_to_y(hr)[3:-3, 3:-3], color.rgb_to_y(up)[3:-3, 3:-3]
    psnrs.append(10 * np.log10(1.0 / np.mean((y_hr - y_up) ** 2)))
  assert len(psnrs) == 5
  assert abs(np.mean(psnrs) - 30.39) < 0.05, np.mean(psnrs)


# -- Valid input: the same output as before the input checks ------------------
# The formulas as they were, so a change of rng calls or arithmetic shows.


def _old_gaussian_noise(image, rng, sigma):
  return image + rng.normal(0.0, sigma / 255.0, image.shape).astype(np.float32)


def _old_salt_and_pepper(image, rng, amount):
  h, w = image.shape[:2]
  hit, salt = rng.random((h, w)) < amount, rng.random((h, w)) < 0.5
  out = image.copy()
  out[hit & salt], out[hit & ~salt] = 1.0, 0.0
  return out


def _old_random_mask(image, rng, fraction, block=8):
  h, w = image.shape[:2]
  cells = rng.random((-(-h // block), -(-w // block))) < fraction
  mask = np.kron(cells, np.ones((block, block), bool))[:h, :w, None]
  return np.where(mask, 0.0, image).astype(np.float32), mask.astype(np.float32)


def _old_crosshair(image, rng, thickness=1, value=0.0):
  h, w = image.shape[:2]
  cy = int(rng.integers(h // 4, max(h // 4 + 1, 3 * h // 4)))
  cx = int(rng.integers(w // 4, max(w // 4 + 1, 3 * w // 4)))
  mask = np.zeros((h, w, 1), bool)
  mask[cy:cy + thickness, :] = True
  mask[:, cx:cx + thickness] = True
  return np.where(mask, value, image).astype(np.float32), mask.astype(np.float32)


def _old_resize(image, size_wh):
  return np.stack([np.asarray(Image.fromarray(image[..., c].astype(np.float32), mode='F')
                              .resize(size_wh, Image.BICUBIC))
                   for c in range(image.shape[-1])], -1).astype(np.float32)


def _old_random_crop(image, rng, size):
  h, w = image.shape[:2]
  if h < size or w < size:
    pad = ((0, max(0, size - h)), (0, max(0, size - w)), (0, 0))
    image = np.pad(image, pad, mode='reflect' if min(h, w) > 1 else 'edge')
    h, w = image.shape[:2]
  y = int(rng.integers(0, h - size + 1))
  x = int(rng.integers(0, w - size + 1))
  return image[y:y + size, x:x + size]


def _uint8(h=40, w=48, seed=0):
  return (_image(h, w, seed) * 255).round().astype(np.uint8)


OLD_AND_NEW = [
    (lambda x, r: _old_gaussian_noise(x, r, 25.0), lambda x, r: C.gaussian_noise(x, r, 25.0)),
    (lambda x, r: _old_salt_and_pepper(x, r, 0.2), lambda x, r: C.salt_and_pepper(x, r, 0.2)),
    (lambda x, r: _old_random_mask(x, r, 0.3, 4), lambda x, r: C.random_mask(x, r, 0.3, 4)),
    (lambda x, r: _old_crosshair(x, r, 2), lambda x, r: C.crosshair(x, r, 2)),
    (lambda x, r: _old_random_crop(x, r, 32), lambda x, r: C.random_crop(x, r, 32)),
    (lambda x, r: _old_random_crop(x, r, 56), lambda x, r: C.random_crop(x, r, 56)),
    (lambda x, r: _old_resize(x, (17, 23)), lambda x, r: C.resize(x, (17, 23))),
    (lambda x, r: _old_resize(x, (24, 20)), lambda x, r: C.bicubic_downscale(x, 2)),
    (lambda x, r: _old_resize(x, (144, 120)), lambda x, r: C.bicubic_upscale(x, 3)),
    (lambda x, r: np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0,
     lambda x, r: C.quantize(x)),
    (lambda x, r: x[:x.shape[0] // 7 * 7, :x.shape[1] // 7 * 7],
     lambda x, r: C.mod_crop(x, 7)),
]


@pytest.mark.parametrize('old, new', OLD_AND_NEW, ids=[
    'gaussian_noise', 'salt_and_pepper', 'random_mask', 'crosshair', 'random_crop',
    'random_crop_padded', 'resize', 'bicubic_downscale', 'bicubic_upscale', 'quantize',
    'mod_crop'])
def test_valid_input_gives_the_same_output_and_rng_state_as_before(old, new):
  images = [_image(), _image(40, 48, 1)[..., :1], _image().astype(np.float64) * 1.2 - 0.1]
  for image in images:
    r_old, r_new = np.random.default_rng(5), np.random.default_rng(5)
    want, got = old(image.copy(), r_old), new(image.copy(), r_new)
    for w, g in zip(want if isinstance(want, tuple) else (want,),
                    got if isinstance(got, tuple) else (got,)):
      assert g.dtype == w.dtype
      np.testing.assert_array_equal(g, w)
    assert r_new.random() == r_old.random()  # The same draws were made.


def test_random_crop_and_mod_crop_take_uint8_as_the_data_sets_give():
  image = _uint8()
  np.testing.assert_array_equal(C.random_crop(image, np.random.default_rng(1), 32),
                                _old_random_crop(image, np.random.default_rng(1), 32))
  assert C.random_crop(image, np.random.default_rng(1), 32).dtype == np.uint8
  np.testing.assert_array_equal(C.random_crop(_uint8(20, 48), np.random.default_rng(1), 32),
                                _old_random_crop(_uint8(20, 48), np.random.default_rng(1), 32))
  assert C.mod_crop(image, 7).shape == (35, 42, 3)


def test_draw_sigma_draws_as_before():
  r_old, r_new = np.random.default_rng(3), np.random.default_rng(3)
  assert C.draw_sigma(r_new, 25.0, (5.0, 50.0)) == float(r_old.uniform(5.0, 50.0))


# -- What they refuse -----------------------------------------------------------

CALLS = {
    'gaussian_noise': lambda x, r: C.gaussian_noise(x, r, 25.0),
    'salt_and_pepper': lambda x, r: C.salt_and_pepper(x, r, 0.2),
    'random_mask': lambda x, r: C.random_mask(x, r, 0.3),
    'crosshair': lambda x, r: C.crosshair(x, r),
    'random_crop': lambda x, r: C.random_crop(x, r, 16),
    'mod_crop': lambda x, r: C.mod_crop(x, 3),
    'resize': lambda x, r: C.resize(x, (10, 12)),
    'bicubic_downscale': lambda x, r: C.bicubic_downscale(x, 2),
    'bicubic_upscale': lambda x, r: C.bicubic_upscale(x, 2),
    'quantize': lambda x, r: C.quantize(x),
}
DRAWING = ('gaussian_noise', 'salt_and_pepper', 'random_mask', 'crosshair', 'random_crop')
FLOATS_ONLY = [n for n in CALLS if n not in ('random_crop', 'mod_crop')]


@pytest.mark.parametrize('name', CALLS)
def test_refuses_a_batch(name):
  batch = np.stack([_image(40, 48), _image(40, 48, 1)])
  with pytest.raises(ValueError, match=rf'{name} takes one HxWxC.*4-D.*\(2, 40, 48, 3\)'
                     '.*each image'):
    CALLS[name](batch, np.random.default_rng(0))


@pytest.mark.parametrize('name', CALLS)
def test_refuses_a_2d_image(name):
  with pytest.raises(ValueError,
                     match=rf'{name} takes one HxWxC.*2-D.*\(40, 48\).*x\[\.\.\., None\]'):
    CALLS[name](_image()[..., 0], np.random.default_rng(0))


@pytest.mark.parametrize('name', CALLS)
def test_refuses_a_jax_array(name):
  with pytest.raises(TypeError, match=rf'{name} takes .*numpy array; got a jax Array '
                     r'of shape \(40, 48, 3\).*jax.jit.*jax.random'):
    CALLS[name](jnp.asarray(_image()), np.random.default_rng(0))


@pytest.mark.parametrize('name', CALLS)
def test_refuses_to_be_traced_by_jit(name):
  """Under jit the noise would be drawn once and frozen into the program."""
  fn = jax.jit(lambda x: CALLS[name](x, np.random.default_rng(0)))
  with pytest.raises(TypeError, match=rf'{name} takes .*numpy array; got a jax tracer'
                     r'.*\(40, 48, 3\).*trace time'):
    fn(jnp.asarray(_image()))


@pytest.mark.parametrize('name', FLOATS_ONLY)
def test_refuses_integer_images_where_floats_are_needed(name):
  with pytest.raises(TypeError, match=rf'{name} takes one HxWxC float image.*got dtype uint8'):
    CALLS[name](_uint8(), np.random.default_rng(0))


@pytest.mark.parametrize('name', ['random_crop', 'mod_crop'])
def test_refuses_bool_images(name):
  with pytest.raises(TypeError, match=rf'{name} takes .*integers or floats; got dtype bool'):
    CALLS[name](_image() > 0.5, np.random.default_rng(0))


@pytest.mark.parametrize('name', DRAWING)
@pytest.mark.parametrize('rng', [np.random.RandomState(0), jax.random.key(0), 0])
def test_refuses_an_rng_that_is_not_a_generator(name, rng):
  with pytest.raises(TypeError, match=rf'{name} takes a numpy Generator'):
    CALLS[name](_image(), rng)
  with pytest.raises(TypeError, match='draw_sigma takes a numpy Generator'):
    C.draw_sigma(rng, 25.0, (5.0, 50.0))
