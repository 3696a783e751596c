"""Colour conversions against scikit-image and the formulas they replace."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.color import rgb2ycbcr

from ae_research import color


def _rgb(shape=(40, 48, 3), seed=0):
  return np.random.default_rng(seed).random(shape).astype(np.float32)


@pytest.mark.parametrize('shape', [(40, 48, 3), (2, 40, 48, 3), (2, 3, 8, 9, 3)])
def test_y_matches_scikit_image(shape):
  x = _rgb(shape)
  y = color.rgb_to_y(x)
  assert y.shape == shape[:-1] + (1,) and y.dtype == np.float32
  np.testing.assert_allclose(y[..., 0] * 255, rgb2ycbcr(x)[..., 0], atol=1e-3)


def test_luma_is_bt601():
  # BT.601: Y of YCbCr = 16 + 219 * luma on the 0-255 scale.
  x = _rgb((2, 20, 24, 3), seed=1)
  want = (rgb2ycbcr(x)[..., 0] - 16.0) / 219.0
  got = color.luma(x)
  assert got.shape == (2, 20, 24, 1) and got.dtype == np.float32
  np.testing.assert_allclose(got[..., 0], want, atol=1e-5)


def test_numpy_output_is_bit_identical_to_the_formulas_it_replaces():
  """corruptions.grayscale and corruptions.rgb_to_y, as they were."""
  x = _rgb(seed=2)
  old_gray = (x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]
  np.testing.assert_array_equal(color.luma(x), old_gray.astype(np.float32))
  old_y = 16.0 + x @ np.array([65.481, 128.553, 24.966], np.float32)
  np.testing.assert_array_equal(color.rgb_to_y(x),
                                (old_y / 255.0)[..., None].astype(np.float32))


@pytest.mark.parametrize('fn', [color.luma, color.rgb_to_y])
def test_jax_input_gives_jax_output_also_under_jit(fn):
  x = _rgb((2, 16, 12, 3), seed=3)
  want = fn(x)
  for got in (fn(jnp.asarray(x)), jax.jit(fn)(jnp.asarray(x))):
    assert isinstance(got, jax.Array) and got.shape == (2, 16, 12, 1)
    np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.parametrize('fn', [color.luma, color.rgb_to_y])
@pytest.mark.parametrize('shape', [(8, 8, 1), (8, 8, 4), (2, 8, 8, 1), (8, 3)])
def test_refuses_what_is_not_rgb(fn, shape):
  with pytest.raises(ValueError, match=r'\.\.\.xHxWx3.*' + re.escape(str(shape))):
    fn(np.zeros(shape, np.float32))


@pytest.mark.parametrize('fn', [color.luma, color.rgb_to_y])
def test_refuses_bool(fn):
  with pytest.raises(ValueError, match='bool'):
    fn(np.zeros((4, 4, 3), bool))


def test_y_refuses_integers_its_offset_would_misplace():
  with pytest.raises(ValueError, match=r'uint8.*/ 255'):
    color.rgb_to_y(np.zeros((4, 4, 3), np.uint8))


def test_luma_of_uint8_is_on_the_0_255_scale():
  x = (_rgb(seed=4) * 255).round().astype(np.uint8)
  np.testing.assert_allclose(color.luma(x), color.luma(x / np.float32(255)) * 255,
                             rtol=1e-5)


def test_chroma_is_bt601_cb_cr_and_inverts_with_the_luma():
  x = _rgb((2, 20, 24, 3), seed=3)
  cbcr = color.chroma(x)
  # BT.601 YCbCr: Cb = 128 + 224 * chroma_b on the 0-255 scale.
  want = (rgb2ycbcr(x)[..., 1:] - 128.0) / 224.0
  assert cbcr.shape == (2, 20, 24, 2) and cbcr.dtype == np.float32
  np.testing.assert_allclose(cbcr, want, atol=1e-5)
  np.testing.assert_allclose(color.from_luma_chroma(color.luma(x), cbcr), x,
                             atol=1e-5)
  # Jax in, jax out; the chroma does not move the luma.
  back = color.from_luma_chroma(jnp.asarray(color.luma(x)), jnp.asarray(cbcr * 0.5))
  assert isinstance(back, jax.Array)
  np.testing.assert_allclose(color.luma(np.asarray(back)), color.luma(x), atol=1e-5)
