"""Metrics against independent implementations (scikit-image) and definitions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import (mean_squared_error, peak_signal_noise_ratio,
                             structural_similarity)

from ae_research import color, metrics

PAIRED = [metrics.mse, metrics.psnr, metrics.ssim, metrics.ms_ssim]


def _pair(seed=0, shape=(2, 40, 36, 3)):
  rng = np.random.default_rng(seed)
  a = rng.random(shape).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
  return a, b


def _uint8_pair(seed=0, shape=(2, 40, 36, 3)):
  return tuple((x * 255).round().astype(np.uint8) for x in _pair(seed, shape))


def _skimage_ssim(a, b, data_range):
  return structural_similarity(a, b, data_range=data_range, channel_axis=-1,
                               gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False)


def test_psnr_matches_scikit_image():
  a, b = _pair()
  ours = np.asarray(metrics.psnr(jnp.asarray(a), jnp.asarray(b)))
  for i in range(2):
    np.testing.assert_allclose(ours[i], peak_signal_noise_ratio(a[i], b[i], data_range=1.0),
                               rtol=1e-5)


def test_ssim_matches_scikit_image():
  a, b = _pair(1)
  ours = np.asarray(metrics.ssim(jnp.asarray(a), jnp.asarray(b)))
  for i in range(2):
    np.testing.assert_allclose(ours[i], _skimage_ssim(a[i], b[i], 1.0), atol=2e-3)


def test_uint8_scores_like_scikit_image_on_the_uint8_arrays():
  """No wraparound: uint8 a - b would turn -1 into 255."""
  a, b = _uint8_pair(2)
  psnr, mse = np.asarray(metrics.psnr(a, b)), np.asarray(metrics.mse(a, b))
  ssim = np.asarray(metrics.ssim(a, b))
  for i in range(2):
    np.testing.assert_allclose(psnr[i], peak_signal_noise_ratio(a[i], b[i], data_range=255),
                               rtol=1e-5)
    np.testing.assert_allclose(mse[i], mean_squared_error(a[i], b[i]) / 255.0 ** 2,
                               rtol=1e-5)
    np.testing.assert_allclose(ssim[i], _skimage_ssim(a[i], b[i], 255), atol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize('fn', PAIRED)
def test_uint8_scores_as_the_float_images_divided_by_255(fn):
  a, b = _uint8_pair(3, shape=(2, 161, 170, 3))
  want = fn(jnp.asarray(a, jnp.float32) / 255.0, jnp.asarray(b, jnp.float32) / 255.0)
  np.testing.assert_allclose(fn(a, b), want, rtol=1e-5)
  np.testing.assert_allclose(fn(jnp.asarray(a), jnp.asarray(b)), want, rtol=1e-5)


@pytest.mark.parametrize('fn', [metrics.mse, metrics.psnr, metrics.ssim])
def test_other_integer_dtypes_use_their_max(fn):
  a, b = _uint8_pair(4)
  wide = lambda x: x.astype(np.uint16) * 257  # 255 -> 65535.
  np.testing.assert_allclose(fn(wide(a), wide(b)), fn(a, b), rtol=1e-4)


def test_explicit_max_value_overrides_the_default():
  a, b = _pair(5)
  np.testing.assert_allclose(metrics.psnr(a * 2, b * 2, max_value=2.0),
                             metrics.psnr(a, b), rtol=1e-5)


@pytest.mark.parametrize('dtype', [np.float32, np.uint8])
@pytest.mark.parametrize('fn', [metrics.mse, metrics.psnr, metrics.ssim])
def test_works_under_jit(fn, dtype):
  a, b = _uint8_pair(6) if dtype == np.uint8 else _pair(6)
  a, b = jnp.asarray(a), jnp.asarray(b)
  np.testing.assert_allclose(jax.jit(fn)(a, b), fn(a, b), rtol=1e-6)
  with pytest.raises(ValueError, match='batch axis'):
    jax.jit(fn)(a[0], b[0])


@pytest.mark.parametrize('fn', PAIRED)
@pytest.mark.parametrize('da, db', [(np.uint8, np.float32), (np.float32, np.uint8),
                                    (np.uint8, np.uint16), (np.int32, np.float64)])
def test_refuses_mixed_dtypes(fn, da, db):
  a, b = _uint8_pair(7, shape=(1, 161, 161, 3))
  with pytest.raises(ValueError,
                     match=f'one kind of dtype.*got {np.dtype(da)} and {np.dtype(db)}'):
    fn(a.astype(da), b.astype(db))


@pytest.mark.parametrize('fn', PAIRED)
@pytest.mark.parametrize('dtype', [bool, np.complex64])
def test_refuses_bool_and_complex(fn, dtype):
  x = np.zeros((1, 161, 161, 3), dtype)
  with pytest.raises(ValueError, match=f'integer or float.*{np.dtype(dtype)}'):
    fn(x, x)
  if fn is metrics.mse:
    with pytest.raises(ValueError, match=f'integer or float.*{np.dtype(dtype)}'):
      metrics.colorfulness(x)


@pytest.mark.parametrize('fn', PAIRED)
def test_refuses_an_unbatched_image_saying_to_add_the_axis(fn):
  a, b = _pair(8, shape=(1, 161, 161, 3))
  with pytest.raises(ValueError, match=r'BxHxWxC.*\(161, 161, 3\).*x\[None\]'):
    fn(a[0], b[0])
  with pytest.raises(ValueError, match=r'\(161, 161, 3\).*x\[None\]'):
    fn(a, b[0])
  with pytest.raises(ValueError, match=r'\(161, 161, 3\).*x\[None\]'):
    metrics.colorfulness(a[0])


@pytest.mark.parametrize('fn', PAIRED)
def test_refuses_different_shapes_naming_them(fn):
  a, _ = _pair(9, shape=(2, 161, 170, 3))
  with pytest.raises(ValueError,
                     match=r'same shape.*\(2, 161, 170, 3\) and \(1, 161, 170, 3\)'):
    fn(a, a[:1])
  with pytest.raises(ValueError, match=r'4-D.*\(161, 170\)'):
    fn(a[0, ..., 0], a[0, ..., 0])


def test_y_psnr_of_rgb_batches_via_color():
  """The super-resolution metric's path: color.rgb_to_y then psnr."""
  a, b = _pair(10)
  ya, yb = color.rgb_to_y(jnp.asarray(a)), color.rgb_to_y(jnp.asarray(b))
  got = np.asarray(metrics.psnr(ya, yb))
  for i in range(2):
    np.testing.assert_allclose(got[i], peak_signal_noise_ratio(
        np.asarray(color.rgb_to_y(a[i])), np.asarray(color.rgb_to_y(b[i])),
        data_range=1.0), rtol=1e-5)


def test_colorfulness_by_definition():
  gray = np.full((1, 8, 8, 3), 0.4, np.float32)
  assert float(metrics.colorfulness(jnp.asarray(gray))[0]) == 0.0
  red = np.zeros((1, 8, 8, 3), np.float32)
  red[..., 0] = 1.0
  # rg = 255, yb = 127.5 everywhere: no spread, 0.3 * |mean|.
  np.testing.assert_allclose(metrics.colorfulness(jnp.asarray(red))[0],
                             0.3 * np.hypot(255.0, 127.5), rtol=1e-5)
  np.testing.assert_allclose(metrics.colorfulness((red * 255).astype(np.uint8))[0],
                             0.3 * np.hypot(255.0, 127.5), rtol=1e-5)


def test_colorfulness_of_uint8_is_that_of_the_floats():
  a, _ = _uint8_pair(11)
  np.testing.assert_allclose(metrics.colorfulness(a),
                             metrics.colorfulness(a.astype(np.float32) / 255.0),
                             rtol=1e-5)
  with pytest.raises(ValueError, match=r'BxHxWx3.*\(2, 40, 36, 1\)'):
    metrics.colorfulness(a[..., :1])


def test_mean_over_batch_ignores_padding_even_when_infinite():
  values = jnp.array([1.0, 3.0, jnp.inf])
  total, count = metrics.mean_over_batch(values, jnp.array([1.0, 1.0, 0.0]))
  assert float(total) == 4.0 and float(count) == 2.0


def test_rgb_psnr_ssim_clips_and_sums_over_valid_examples():
  a, b = _pair(12)
  batch = {'target': jnp.asarray(b), 'mask': jnp.array([1.0, 0.0])}
  out = metrics.rgb_psnr_ssim(jnp.asarray(a) * 1.5 - 0.25, batch)
  clipped = np.clip(a * 1.5 - 0.25, 0, 1)
  assert float(out['psnr'][1]) == 1.0
  np.testing.assert_allclose(out['psnr'][0], peak_signal_noise_ratio(
      b[0], clipped[0], data_range=1.0), rtol=1e-5)
  np.testing.assert_allclose(out['ssim'][0], _skimage_ssim(clipped[0], b[0], 1.0),
                             atol=2e-3)
