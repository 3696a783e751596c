"""Degradations applied to clean images on the host, reproducible from an rng.

Images are float32 HxWxC in [0, 1]. Each function takes a numpy Generator
(the input pipeline derives one from the seed and the example's index), so
the same seed gives the same corruption.
"""

import numpy as np
from PIL import Image

LUMA_BT601 = np.array([0.299, 0.587, 0.114], np.float32)


def gaussian_noise(image: np.ndarray, rng: np.random.Generator,
                   sigma: float) -> np.ndarray:
  """Additive white Gaussian noise; sigma on the 0-255 scale, not clipped
  (the protocol of the denoising literature)."""
  return image + rng.normal(0.0, sigma / 255.0, image.shape).astype(np.float32)


def draw_sigma(rng: np.random.Generator, sigma: float,
               sigma_range: tuple[float, float]) -> float:
  """`sigma`, or one drawn uniformly from `sigma_range` when it is not empty
  (blind denoising)."""
  lo, hi = sigma_range
  return float(rng.uniform(lo, hi)) if hi > lo else float(sigma)


def salt_and_pepper(image: np.ndarray, rng: np.random.Generator,
                    amount: float) -> np.ndarray:
  """A fraction `amount` of pixels set to black or white (all channels)."""
  h, w = image.shape[:2]
  hit = rng.random((h, w)) < amount
  salt = rng.random((h, w)) < 0.5
  out = image.copy()
  out[hit & salt] = 1.0
  out[hit & ~salt] = 0.0
  return out


def random_mask(image: np.ndarray, rng: np.random.Generator, fraction: float,
                block: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Blocks of `block`x`block` pixels zeroed until about `fraction` of the
  image is gone. Returns (masked image, HxWx1 mask with 1 where removed)."""
  h, w = image.shape[:2]
  gh, gw = -(-h // block), -(-w // block)
  cells = rng.random((gh, gw)) < fraction
  mask = np.kron(cells, np.ones((block, block), bool))[:h, :w, None]
  return np.where(mask, 0.0, image).astype(np.float32), mask.astype(np.float32)


def crosshair(image: np.ndarray, rng: np.random.Generator, thickness: int = 1,
              value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """A thin dark cross (one horizontal and one vertical line through a random
  point in the middle half) drawn over the image. Returns (image, mask)."""
  h, w = image.shape[:2]
  cy = int(rng.integers(h // 4, max(h // 4 + 1, 3 * h // 4)))
  cx = int(rng.integers(w // 4, max(w // 4 + 1, 3 * w // 4)))
  mask = np.zeros((h, w, 1), bool)
  mask[cy:cy + thickness, :] = True
  mask[:, cx:cx + thickness] = True
  return np.where(mask, value, image).astype(np.float32), mask.astype(np.float32)


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom and right so both sides are multiples of `scale`."""
  h, w = image.shape[:2]
  return image[:h - h % scale, :w - w % scale]


def resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
  """Bicubic resizing of float HxWxC to (width, height), channel by channel."""
  channels = [Image.fromarray(image[..., c].astype(np.float32), mode='F')
              .resize(size_wh, Image.BICUBIC) for c in range(image.shape[-1])]
  return np.stack([np.asarray(c) for c in channels], -1).astype(np.float32)


def bicubic_downscale(image: np.ndarray, scale: int) -> np.ndarray:
  """MATLAB-style bicubic downscaling (antialiased Keys kernel, a=-0.5) by an
  integer factor; `image` must be mod-cropped. PIL's bicubic reproduces the
  published bicubic PSNRs (REFERENCE: within 0.02 dB)."""
  h, w = image.shape[:2]
  if h % scale or w % scale:
    raise ValueError(f'image of {h}x{w} is not a multiple of scale {scale}; '
                     'mod_crop it first')
  return resize(image, (w // scale, h // scale))


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
  h, w = image.shape[:2]
  return resize(image, (w * scale, h * scale))


def quantize(image: np.ndarray) -> np.ndarray:
  """Rounds to 8 bits, as an image saved to disk would be."""
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def grayscale(image: np.ndarray) -> np.ndarray:
  """Luma (ITU-R BT.601) as HxWx1."""
  return (image @ LUMA_BT601)[..., None].astype(np.float32)


def rgb_to_y(image: np.ndarray) -> np.ndarray:
  """The Y of YCbCr in [16, 235]/255, as the super-resolution protocol uses:
  Y = 16 + (65.481 R + 128.553 G + 24.966 B), R,G,B in [0, 1]."""
  y = 16.0 + image @ np.array([65.481, 128.553, 24.966], np.float32)
  return (y / 255.0)[..., None].astype(np.float32)


def random_crop(image: np.ndarray, rng: np.random.Generator,
                size: int) -> np.ndarray:
  """A random `size`x`size` crop; smaller images are reflect-padded first."""
  h, w = image.shape[:2]
  if h < size or w < size:
    pad = ((0, max(0, size - h)), (0, max(0, size - w))) + ((0, 0),) * (image.ndim - 2)
    image = np.pad(image, pad, mode='reflect' if min(h, w) > 1 else 'edge')
    h, w = image.shape[:2]
  y = int(rng.integers(0, h - size + 1))
  x = int(rng.integers(0, w - size + 1))
  return image[y:y + size, x:x + size]
