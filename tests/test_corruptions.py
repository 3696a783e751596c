"""Corruptions and degradations: each reproducible from its rng, one code for
numpy with a Generator and jax with a key (under jit and vmap)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data
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


# -- One code on both paths: numpy with a Generator, jax with a key -------------
HOW = ['numpy', 'jax']


def _corrupt(fn, clean_NxHxWxC, how, seed=0):
  """fn(image, rng) on each image: numpy images with Generators, or jax under
  jit and vmap with a key per image. The outputs as numpy, stacked."""
  if how == 'numpy':
    outs = [fn(x, np.random.default_rng(seed + i)) for i, x in enumerate(clean_NxHxWxC)]
    for out in jax.tree.leaves(outs):
      assert isinstance(out, (np.ndarray, float))  # draw_sigma gives a float.
    return jax.tree.map(lambda *x: np.stack(x), *outs)
  keys = jax.random.split(jax.random.key(seed), len(clean_NxHxWxC))
  outs = jax.jit(jax.vmap(fn))(jnp.asarray(clean_NxHxWxC), keys)
  for out in jax.tree.leaves(outs):
    assert isinstance(out, jax.Array)
  return jax.tree.map(np.asarray, outs)


def _flat(value, n=8, h=50, w=60):
  return np.full((n, h, w, 3), value, np.float32)


@pytest.mark.parametrize('how', HOW)
def test_gaussian_noise_has_the_asked_sigma_and_is_not_clipped(how):
  clean = _flat(0.5, 4, 100, 100)
  noisy = _corrupt(lambda x, r: C.gaussian_noise(x, r, 25.0), clean, how)
  assert noisy.dtype == np.float32
  assert abs(np.std(noisy - clean) * 255 - 25.0) < 0.5
  assert abs(np.mean(noisy - clean)) < 0.01
  assert not np.array_equal(noisy[0], noisy[1])  # Each image its own noise.
  bright = _corrupt(lambda x, r: C.gaussian_noise(x, r, 25.0), clean + 0.45, how)
  assert (bright > 1.0).mean() > 0.3  # Not clipped.


def test_gaussian_noise_is_reproducible_from_the_seed():
  clean = _flat(0.5, 1)[0]
  _same_for_same_seed(lambda r: C.gaussian_noise(clean, r, 25.0))


@pytest.mark.parametrize('how', HOW)
def test_blind_sigma_is_drawn_from_the_range(how):
  sigmas = _corrupt(lambda x, r: C.draw_sigma(r, 25.0, (5.0, 50.0)),
                    _flat(0.0, 200, 1, 1), how)
  assert 5.0 <= sigmas.min() and sigmas.max() <= 50.0 and np.std(sigmas) > 5
  fixed = _corrupt(lambda x, r: C.draw_sigma(r, 25.0, (0.0, 0.0)), _flat(0.0, 2, 1, 1), how)
  np.testing.assert_array_equal(fixed, 25.0)
  assert C.draw_sigma(np.random.default_rng(0), 25.0, (0.0, 0.0)) == 25.0


@pytest.mark.parametrize('how', HOW)
def test_salt_and_pepper(how):
  clean = _flat(0.5, 4, 100, 100)
  out = _corrupt(lambda x, r: C.salt_and_pepper(x, r, 0.2), clean, how)
  hit = np.any(out != 0.5, axis=-1)
  assert abs(hit.mean() - 0.2) < 0.02
  assert set(np.unique(out[hit])) == {0.0, 1.0}
  assert abs((out[hit][:, 0] == 1).mean() - 0.5) < 0.05
  assert np.all(out[hit] == out[hit][:, :1])  # Every channel of a pixel alike.
  _same_for_same_seed(lambda r: C.salt_and_pepper(clean[0], r, 0.2))


@pytest.mark.parametrize('how', HOW)
def test_random_mask_removes_blocks(how):
  clean = _flat(1.0, 8, 64, 64)
  out, mask = _corrupt(lambda x, r: C.random_mask(x, r, 0.3, block=8), clean, how)
  assert out.dtype == mask.dtype == np.float32 and mask.shape == (8, 64, 64, 1)
  assert abs(mask.mean() - 0.3) < 0.1
  np.testing.assert_array_equal(out[mask[..., 0] > 0], 0.0)
  np.testing.assert_array_equal(out[mask[..., 0] == 0], 1.0)
  blocks = mask[..., 0].reshape(8, 8, 8, 8, 8)
  assert np.all((blocks.min(axis=(2, 4)) == blocks.max(axis=(2, 4))))
  ragged = _corrupt(lambda x, r: C.random_mask(x, r, 0.5, block=8), _flat(1.0, 2, 20, 13), how)
  assert ragged[1].shape == (2, 20, 13, 1)


@pytest.mark.parametrize('how', HOW)
@pytest.mark.parametrize('thickness', [1, 2])
def test_crosshair_is_one_row_and_one_column_in_the_middle_half(how, thickness):
  h, w = 50, 60
  out, mask = _corrupt(lambda x, r: C.crosshair(x, r, thickness=thickness),
                       _flat(1.0, 16, h, w), how)
  assert out.dtype == mask.dtype == np.float32 and mask.shape == (16, h, w, 1)
  centres = set()
  for o, m in zip(out, mask[..., 0] > 0):
    rows, cols = np.where(m.all(axis=1))[0], np.where(m.all(axis=0))[0]
    assert len(rows) == len(cols) == thickness
    assert np.all(np.diff(rows) == 1) and np.all(np.diff(cols) == 1)
    assert m.sum() == thickness * (h + w) - thickness ** 2
    assert h // 4 <= rows[0] < 3 * h // 4 and w // 4 <= cols[0] < 3 * w // 4
    np.testing.assert_array_equal(o[m], 0.0)
    np.testing.assert_array_equal(o[~m], 1.0)
    centres.add((rows[0], cols[0]))
  assert len(centres) > 8  # The centre is drawn per image.
  _same_for_same_seed(lambda r: C.crosshair(_flat(1.0, 1, h, w)[0], r)[1])


DRAWN = {
    'gaussian_noise': lambda x, r: C.gaussian_noise(x, r, 25.0),
    'salt_and_pepper': lambda x, r: C.salt_and_pepper(x, r, 0.2),
    'random_mask': lambda x, r: C.random_mask(x, r, 0.3, 4),
    'crosshair': lambda x, r: C.crosshair(x, r, 2),
}


@pytest.mark.parametrize('name', DRAWN)
def test_a_jax_image_with_a_generator_gives_the_numpy_result(name):
  """The same draws, the same code after them: equal across the libraries."""
  image = _image()
  ours = DRAWN[name](jnp.asarray(image), np.random.default_rng(3))
  host = DRAWN[name](image, np.random.default_rng(3))
  for o, h in zip(jax.tree.leaves(ours), jax.tree.leaves(host)):
    assert isinstance(o, jax.Array) and o.dtype == h.dtype
    np.testing.assert_allclose(np.asarray(o), h, atol=1e-7)


@pytest.mark.parametrize('name', DRAWN)
def test_a_key_gives_the_same_corruption_traced_or_not_and_on_numpy_images(name):
  image, key = _image(), jax.random.key(4)
  eager = DRAWN[name](jnp.asarray(image), key)
  traced = jax.jit(DRAWN[name])(jnp.asarray(image), key)
  on_numpy = DRAWN[name](image, key)  # Numpy in, numpy out.
  traced_key = jax.jit(lambda k: DRAWN[name](image, k))(key)  # Computed in jax.
  other = DRAWN[name](jnp.asarray(image), jax.random.key(5))
  for e, t, n, k, o in zip(*map(jax.tree.leaves, (eager, traced, on_numpy, traced_key, other))):
    assert isinstance(n, np.ndarray) and isinstance(k, jax.Array)
    np.testing.assert_allclose(t, e, atol=1e-6)
    np.testing.assert_allclose(n, e, atol=1e-6)
    np.testing.assert_allclose(k, e, atol=1e-6)
  assert not np.array_equal(jax.tree.leaves(eager)[0], jax.tree.leaves(other)[0])


def test_sigma_drawn_from_a_key_feeds_the_noise_traced():
  def pair(x, key):
    level_key, noise_key = jax.random.split(key)
    sigma = C.draw_sigma(level_key, 25.0, (10.0, 40.0))
    return C.gaussian_noise(x, noise_key, sigma), sigma
  clean = _flat(0.5, 16, 64, 64)
  noisy, sigma = _corrupt(pair, clean, 'jax')
  assert sigma.shape == (16,) and sigma.std() > 3
  np.testing.assert_allclose(np.std(noisy - clean, axis=(1, 2, 3)) * 255, sigma, rtol=0.1)


# -- Bicubic: PIL's, to float32 rounding, on numpy and in jax ------------------


def _pil(image, size_wh):
  return _old_resize(image, size_wh)


@pytest.mark.parametrize('scale', [2, 3, 4])
@pytest.mark.parametrize('hw', [(24, 36), (60, 12), (13, 7), (1, 5)])
def test_bicubic_equals_pil_on_numpy_and_jax(scale, hw):
  h, w = hw
  rng = np.random.default_rng(scale)
  big = rng.random((h * scale, w * scale, 3), np.float32)
  small = rng.random((h, w, 2)).astype(np.float64) * 1.2 - 0.1  # Any C, float64, out of [0, 1].
  down_pil, up_pil = _pil(big, (w, h)), _pil(small, (w * scale, h * scale))
  jit = lambda f: jax.jit(f, static_argnums=1)
  for down, up in [(C.bicubic_downscale(big, scale), C.bicubic_upscale(small, scale)),
                   (jit(C.bicubic_downscale)(jnp.asarray(big), scale),
                    jit(C.bicubic_upscale)(jnp.asarray(small, jnp.float32), scale))]:
    assert down.dtype == up.dtype == np.float32
    assert down.shape == down_pil.shape and up.shape == up_pil.shape
    np.testing.assert_allclose(np.asarray(down), down_pil, atol=1e-5)
    np.testing.assert_allclose(np.asarray(up), up_pil, atol=1e-5)


def test_bicubic_equals_pil_on_a_photo_and_under_vmap():
  photo = C.mod_crop(skimage.data.chelsea().astype(np.float32) / 255.0, 12)
  h, w = photo.shape[:2]
  for s in (2, 3, 4):
    np.testing.assert_allclose(C.bicubic_downscale(photo, s), _pil(photo, (w // s, h // s)),
                               atol=1e-5)
    lr = _pil(photo, (w // s, h // s))
    np.testing.assert_allclose(C.bicubic_upscale(lr, s), _pil(lr, (w, h)), atol=1e-5)
  patches = jnp.asarray(np.stack([photo[:48, :48], photo[48:96, 96:144]]))
  pairs = jax.jit(jax.vmap(lambda x: C.bicubic_upscale(C.bicubic_downscale(x, 3), 3)))(patches)
  for x, ours in zip(np.asarray(patches), np.asarray(pairs)):
    np.testing.assert_allclose(ours, _pil(_pil(x, (16, 16)), (48, 48)), atol=1e-5)


def test_quantize_and_mod_crop_are_the_same_on_jax():
  image = _image().astype(np.float64) * 1.2 - 0.1
  ours = jax.jit(C.quantize)(jnp.asarray(image, jnp.float32))
  host = C.quantize(image.astype(np.float32))
  # The same 8-bit levels; XLA may divide by 255 as a product, an ulp apart.
  np.testing.assert_array_equal(np.round(np.asarray(ours) * 255), np.round(host * 255))
  np.testing.assert_allclose(np.asarray(ours), host, atol=1e-7)
  assert ours.dtype == jnp.float32
  assert jax.jit(lambda x: C.mod_crop(x, 7))(jnp.asarray(_uint8())).shape == (35, 42, 3)


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
    (lambda x, r: np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0,
     lambda x, r: C.quantize(x)),
    (lambda x, r: x[:x.shape[0] // 7 * 7, :x.shape[1] // 7 * 7],
     lambda x, r: C.mod_crop(x, 7)),
]


@pytest.mark.parametrize('old, new', OLD_AND_NEW, ids=[
    'gaussian_noise', 'salt_and_pepper', 'random_mask', 'crosshair', 'random_crop',
    'random_crop_padded', 'resize', 'quantize', 'mod_crop'])
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
    'dihedral': lambda x, r: C.dihedral(x, 1),
    'mod_crop': lambda x, r: C.mod_crop(x, 3),
    'resize': lambda x, r: C.resize(x, (10, 12)),
    'bicubic_downscale': lambda x, r: C.bicubic_downscale(x, 2),
    'bicubic_upscale': lambda x, r: C.bicubic_upscale(x, 2),
    'quantize': lambda x, r: C.quantize(x),
}
DRAWING = ('gaussian_noise', 'salt_and_pepper', 'random_mask', 'crosshair')
HOST_ONLY = ('random_crop', 'dihedral', 'resize')
ANY_DTYPE = ('random_crop', 'dihedral', 'mod_crop')
FLOATS_ONLY = [n for n in CALLS if n not in ANY_DTYPE]


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


@pytest.mark.parametrize('name', HOST_ONLY)
def test_host_only_functions_refuse_jax_arrays(name):
  with pytest.raises(TypeError, match=rf'{name} takes .*numpy array; got a jax Array '
                     r'of shape \(40, 48, 3\).*np.asarray'):
    CALLS[name](jnp.asarray(_image()), np.random.default_rng(0))
  fn = jax.jit(lambda x: CALLS[name](x, np.random.default_rng(0)))
  with pytest.raises(TypeError, match=rf'{name} takes .*numpy array; got a jax tracer'):
    fn(jnp.asarray(_image()))


@pytest.mark.parametrize('name', DRAWING)
def test_refuses_a_tracer_with_a_generator(name):
  """Under jit the noise would be drawn once and frozen into the program."""
  fn = jax.jit(lambda x: CALLS[name](x, np.random.default_rng(0)))
  with pytest.raises(TypeError, match=rf'{name} got a jax tracer.*\(40, 48, 3\) and a numpy '
                     'Generator.*trace time.*pass a jax key'):
    fn(jnp.asarray(_image()))


@pytest.mark.parametrize('name', FLOATS_ONLY)
def test_refuses_integer_images_where_floats_are_needed(name):
  for image in (_uint8(), jnp.asarray(_uint8())):
    if name in HOST_ONLY and not isinstance(image, np.ndarray):
      continue
    with pytest.raises(TypeError, match=rf'{name} takes one HxWxC float image.*got dtype uint8'):
      CALLS[name](image, np.random.default_rng(0))


@pytest.mark.parametrize('name', ANY_DTYPE)
def test_refuses_bool_images(name):
  with pytest.raises(TypeError, match=rf'{name} takes .*integers or floats; got dtype bool'):
    CALLS[name](_image() > 0.5, np.random.default_rng(0))


@pytest.mark.parametrize('name', DRAWING)
@pytest.mark.parametrize('rng, why', [
    (np.random.RandomState(0), 'numpy.random.mtrand.RandomState'),
    (0, 'builtins.int'),
    (jax.random.PRNGKey(0), r'raw uint32 key.*use jax.random.key\(seed\)')])
def test_refuses_an_rng_that_is_neither_a_generator_nor_a_key(name, rng, why):
  wanted = r'takes a numpy Generator \(np.random.default_rng\) or a jax key \(jax.random.key\)'
  with pytest.raises(TypeError, match=rf'{name} {wanted}; got .*{why}'):
    CALLS[name](_image(), rng)
  with pytest.raises(TypeError, match=rf'draw_sigma {wanted}; got .*{why}'):
    C.draw_sigma(rng, 25.0, (5.0, 50.0))


@pytest.mark.parametrize('name', DRAWING)
def test_refuses_a_batch_of_keys(name):
  with pytest.raises(ValueError, match=rf'{name} takes .*one per image; got keys of shape '
                     r'\(4,\): jax.vmap'):
    CALLS[name](jnp.asarray(_image()), jax.random.split(jax.random.key(0), 4))


def test_random_crop_takes_a_generator_only():
  with pytest.raises(TypeError, match='random_crop takes a numpy Generator.*jax Array'):
    C.random_crop(_image(), jax.random.key(0), 16)


@pytest.mark.parametrize('scale', [0, 2.0, True])
def test_bicubic_refuses_a_scale_that_is_no_whole_number(scale):
  with pytest.raises(ValueError, match=rf'bicubic_upscale takes an integer scale >= 1.*{scale!r}'):
    C.bicubic_upscale(_image(), scale)
  with pytest.raises(ValueError, match='not a multiple of scale 3; mod_crop'):
    C.bicubic_downscale(jnp.zeros((10, 9, 3)), 3)
