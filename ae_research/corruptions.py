"""Degradations applied to clean images on the host, reproducible from an rng.

Each function takes ONE image HxWxC as a numpy array (float32 in [0, 1];
`mod_crop` and `random_crop` also take integer images such as the data
sets' uint8) and, where it draws, a numpy Generator (the input pipeline
derives one from the seed and the example's index), so the same seed gives
the same corruption. They run on the host with numpy in the input pipeline:
not on batches (call them per image), not on jax arrays, not under jax.jit
(the noise would be drawn once at trace time and frozen; use jax.random on
device). Each checks its input and raises TypeError (not a numpy array, a
wrong dtype, an rng that is not a Generator) or ValueError (not HxWxC).
"""

from typing import Any

import numpy as np
from PIL import Image

_NOT_TAKEN = object()


def _check(fn: str, image: Any = _NOT_TAKEN, rng: Any = _NOT_TAKEN,
           floats: bool = True) -> None:
  """Raises unless `image` is one HxWxC numpy image and `rng` a Generator.

  Args:
    fn: the public function's name, for the message.
    image: the image it was given (not checked if not passed).
    rng: the rng it was given (not checked if not passed).
    floats: whether the image must hold floats; else integers also do.
  """
  if image is not _NOT_TAKEN:
    wanted = (f'{fn} takes one HxWxC {"float " if floats else ""}image as a '
              'numpy array')
    if not isinstance(image, np.ndarray):
      kind = type(image)
      # Without importing jax: its arrays and tracers live in jax/jaxlib.
      is_jax = kind.__module__.startswith('jax')
      if is_jax:
        got = ('a jax tracer (inside jax.jit or another transformation)'
               if 'Tracer' in kind.__name__ else 'a jax Array')
      else:
        got = f'a {kind.__module__}.{kind.__qualname__}'
      shape = getattr(image, 'shape', None)
      if shape is not None:
        got += f' of shape {tuple(shape)}'
      hint = ('. Corruptions run on the host with numpy; under jax.jit the '
              'noise would be drawn once at trace time and frozen: use '
              'jax.random for noise on device, or np.asarray(x) for a '
              'concrete array' if is_jax else '')
      raise TypeError(f'{wanted}; got {got}{hint}')
    if image.ndim != 3:
      hint = {4: ': call it on each image of the batch',
              2: ': add a channel axis, e.g. x[..., None]'}.get(image.ndim, '')
      raise ValueError(f'{wanted}; got a {image.ndim}-D array of shape '
                       f'{image.shape}{hint}')
    if floats and not np.issubdtype(image.dtype, np.floating):
      raise TypeError(f'{wanted} (values in [0, 1]); got dtype {image.dtype}: '
                      'convert uint8 with x.astype(np.float32) / 255')
    if not floats and image.dtype.kind not in 'iuf':
      raise TypeError(
          f'{wanted} of integers or floats; got dtype {image.dtype}')
  if rng is not _NOT_TAKEN and not isinstance(rng, np.random.Generator):
    raise TypeError(f'{fn} takes a numpy Generator (np.random.default_rng); '
                    f'got a {type(rng).__module__}.{type(rng).__qualname__}')


def gaussian_noise(image: np.ndarray, rng: np.random.Generator,
                   sigma: float) -> np.ndarray:
  """Additive white Gaussian noise, not clipped (the denoising protocol).

  Args:
    image: one float HxWxC numpy image in [0, 1].
    rng: the numpy Generator the noise is drawn from.
    sigma: the noise's standard deviation on the 0-255 scale.

  Returns:
    The noisy HxWxC image.
  """
  _check('gaussian_noise', image, rng)
  return image + rng.normal(0.0, sigma / 255.0, image.shape).astype(np.float32)


def draw_sigma(rng: np.random.Generator, sigma: float,
               sigma_range: tuple[float, float]) -> float:
  """The noise level of one example (blind denoising draws it).

  Args:
    rng: a numpy Generator.
    sigma: the level when `sigma_range` is empty.
    sigma_range: (lo, hi); when hi > lo the level is drawn uniformly from it.

  Returns:
    sigma, or the drawn level.
  """
  _check('draw_sigma', rng=rng)
  lo, hi = sigma_range
  return float(rng.uniform(lo, hi)) if hi > lo else float(sigma)


def salt_and_pepper(image: np.ndarray, rng: np.random.Generator,
                    amount: float) -> np.ndarray:
  """A fraction `amount` of pixels set to black or white (all channels).

  Args:
    image: one float HxWxC numpy image in [0, 1].
    rng: the numpy Generator the pixels are drawn from.
    amount: the expected fraction of pixels hit.

  Returns:
    A corrupted copy, HxWxC.
  """
  _check('salt_and_pepper', image, rng)
  h, w = image.shape[:2]
  hit = rng.random((h, w)) < amount
  salt = rng.random((h, w)) < 0.5
  out = image.copy()
  out[hit & salt] = 1.0
  out[hit & ~salt] = 0.0
  return out


def random_mask(image: np.ndarray, rng: np.random.Generator, fraction: float,
                block: int = 8) -> tuple[np.ndarray, np.ndarray]:
  """Blocks of `block`x`block` pixels zeroed until about `fraction` is gone.

  Args:
    image: one float HxWxC numpy image in [0, 1].
    rng: the numpy Generator the blocks are drawn from.
    fraction: the expected fraction of blocks removed.
    block: the blocks' side in pixels.

  Returns:
    (masked float32 HxWxC image, float32 HxWx1 mask with 1 where removed).
  """
  _check('random_mask', image, rng)
  h, w = image.shape[:2]
  gh, gw = -(-h // block), -(-w // block)
  cells = rng.random((gh, gw)) < fraction
  mask = np.kron(cells, np.ones((block, block), bool))[:h, :w, None]
  return np.where(mask, 0.0, image).astype(np.float32), mask.astype(np.float32)


def crosshair(image: np.ndarray, rng: np.random.Generator, thickness: int = 1,
              value: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
  """A thin cross over the image, through a random point of its middle half.

  Args:
    image: one float HxWxC numpy image in [0, 1].
    rng: the numpy Generator the centre is drawn from.
    thickness: the lines' width in pixels.
    value: what the lines' pixels are set to (0: dark).

  Returns:
    (float32 HxWxC image, float32 HxWx1 mask with 1 on the cross).
  """
  _check('crosshair', image, rng)
  h, w = image.shape[:2]
  cy = int(rng.integers(h // 4, max(h // 4 + 1, 3 * h // 4)))
  cx = int(rng.integers(w // 4, max(w // 4 + 1, 3 * w // 4)))
  mask = np.zeros((h, w, 1), bool)
  mask[cy:cy + thickness, :] = True
  mask[:, cx:cx + thickness] = True
  return np.where(mask, value, image).astype(np.float32), mask.astype(np.float32)


def mod_crop(image: np.ndarray, scale: int) -> np.ndarray:
  """Crops the bottom and right so both sides are multiples of `scale`.

  Args:
    image: one HxWxC numpy image, float or integer.
    scale: the factor both sides must divide by.

  Returns:
    A view of the image, cropped.
  """
  _check('mod_crop', image, floats=False)
  h, w = image.shape[:2]
  return image[:h - h % scale, :w - w % scale]


def resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
  """Bicubic resizing (PIL's, in float), channel by channel.

  Args:
    image: one float HxWxC numpy image (any C: also HxWx1 alpha planes).
    size_wh: the output's (width, height).

  Returns:
    float32 of shape (height, width, C), not clipped.
  """
  _check('resize', image)
  channels = [Image.fromarray(image[..., c].astype(np.float32), mode='F')
              .resize(size_wh, Image.BICUBIC) for c in range(image.shape[-1])]
  return np.stack([np.asarray(c) for c in channels], -1).astype(np.float32)


def bicubic_downscale(image: np.ndarray, scale: int) -> np.ndarray:
  """MATLAB-style bicubic downscaling (antialiased Keys kernel, a=-0.5).

  PIL's bicubic reproduces the published bicubic PSNRs (REFERENCE: within
  0.02 dB).

  Args:
    image: one float HxWxC numpy image, mod-cropped to `scale`.
    scale: the integer factor.

  Returns:
    float32 (H/scale)x(W/scale)xC.
  """
  _check('bicubic_downscale', image)
  h, w = image.shape[:2]
  if h % scale or w % scale:
    raise ValueError(f'image of {h}x{w} is not a multiple of scale {scale}; '
                     'mod_crop it first')
  return resize(image, (w // scale, h // scale))


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
  """Bicubic upscaling by an integer factor.

  Args:
    image: one float HxWxC numpy image.
    scale: the integer factor.

  Returns:
    float32 (H*scale)x(W*scale)xC.
  """
  _check('bicubic_upscale', image)
  h, w = image.shape[:2]
  return resize(image, (w * scale, h * scale))


def quantize(image: np.ndarray) -> np.ndarray:
  """Rounds to 8 bits, as an image saved to disk would be.

  Args:
    image: one float HxWxC numpy image; clipped to [0, 1] first.

  Returns:
    float32 HxWxC, multiples of 1/255.
  """
  _check('quantize', image)
  return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.float32) / 255.0


def random_crop(image: np.ndarray, rng: np.random.Generator,
                size: int) -> np.ndarray:
  """A random `size`x`size` crop; smaller images are reflect-padded first.

  Args:
    image: one HxWxC numpy image, uint8 as the data sets give or float.
    rng: the numpy Generator the corner is drawn from.
    size: the crop's side.

  Returns:
    size x size x C, the image's dtype.
  """
  _check('random_crop', image, rng, floats=False)
  h, w = image.shape[:2]
  if h < size or w < size:
    pad = ((0, max(0, size - h)), (0, max(0, size - w))) + ((0, 0),) * (image.ndim - 2)
    image = np.pad(image, pad, mode='reflect' if min(h, w) > 1 else 'edge')
    h, w = image.shape[:2]
  y = int(rng.integers(0, h - size + 1))
  x = int(rng.integers(0, w - size + 1))
  return image[y:y + size, x:x + size]


def dihedral(image: np.ndarray, k: int) -> np.ndarray:
  """The k-th of the 8 flips and rotations of a square's symmetry group
  (k in 0..7: k % 4 quarter turns, then a left-right flip if k >= 4): the
  augmentation of the restoration recipes.

  Args:
    image: one HxWxC numpy image, uint8 or float.
    k: which transform; 0 is the identity.

  Returns:
    The transformed image (WxHxC for odd quarter turns).
  """
  _check('dihedral', image, floats=False)
  if not 0 <= k < 8:
    raise ValueError(f'dihedral: k={k}; use 0 to 7')
  out = np.rot90(image, k % 4, axes=(0, 1))
  return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)

