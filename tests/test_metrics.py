"""Metrics against independent implementations (scikit-image) and definitions."""

import jax.numpy as jnp
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ae_research import corruptions, metrics


def _pair(seed=0):
  rng = np.random.default_rng(seed)
  a = rng.random((2, 40, 36, 3)).astype(np.float32)
  b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
  return a, b


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
    ref = structural_similarity(a[i], b[i], data_range=1.0, channel_axis=-1,
                                gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    np.testing.assert_allclose(ours[i], ref, atol=2e-3)


def test_y_channel_in_jax_matches_numpy():
  a, _ = _pair(2)
  np.testing.assert_allclose(metrics.rgb_to_y(jnp.asarray(a)),
                             np.stack([corruptions.rgb_to_y(x) for x in a]), atol=1e-6)


def test_colorfulness_by_definition():
  gray = np.full((1, 8, 8, 3), 0.4, np.float32)
  assert float(metrics.colorfulness(jnp.asarray(gray))[0]) == 0.0
  red = np.zeros((1, 8, 8, 3), np.float32)
  red[..., 0] = 1.0
  # rg = 255, yb = 127.5 everywhere: no spread, 0.3 * |mean|.
  np.testing.assert_allclose(metrics.colorfulness(jnp.asarray(red))[0],
                             0.3 * np.hypot(255.0, 127.5), rtol=1e-5)


def test_mean_over_batch_ignores_padding_even_when_infinite():
  values = jnp.array([1.0, 3.0, jnp.inf])
  total, count = metrics.mean_over_batch(values, jnp.array([1.0, 1.0, 0.0]))
  assert float(total) == 4.0 and float(count) == 2.0
