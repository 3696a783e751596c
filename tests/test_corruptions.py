"""Corruptions and degradations, each reproducible from its rng."""

import os

import numpy as np
import pytest

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


def test_y_channel_matches_scikit_image():
  from skimage.color import rgb2ycbcr
  img = _image()
  np.testing.assert_allclose(C.rgb_to_y(img)[..., 0] * 255, rgb2ycbcr(img)[..., 0],
                             atol=1e-3)


@pytest.mark.skipif(not os.path.isdir(os.path.join(TESTSETS, 'Set5')),
                    reason='../shared/testsets/Set5 is not beside this checkout')
def test_bicubic_on_set5_x3_gives_the_published_psnr():
  """30.39 dB (Y channel, 3-pixel border cropped) within 0.05 dB."""
  source = folder.FolderSource(os.path.join(TESTSETS, 'Set5'))
  psnrs = []
  for i in range(len(source)):
    hr = C.mod_crop(source[i]['image'].astype(np.float32) / 255.0, 3)
    up = C.quantize(C.bicubic_upscale(C.quantize(C.bicubic_downscale(hr, 3)), 3))
    y_hr, y_up = C.rgb_to_y(hr)[3:-3, 3:-3], C.rgb_to_y(up)[3:-3, 3:-3]
    psnrs.append(10 * np.log10(1.0 / np.mean((y_hr - y_up) ** 2)))
  assert len(psnrs) == 5
  assert abs(np.mean(psnrs) - 30.39) < 0.05, np.mean(psnrs)
