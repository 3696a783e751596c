"""Degradations of clean images, written once for the host and the device.

Each corruption takes ONE image HxWxC, float in [0, 1], as a numpy or a jax
array and, where it draws, an `rng`: a numpy Generator (the host input
pipeline derives one from the seed and the example's index) or a jax key
(`jax.random.key`; batches made on the device fold one in per example). The
result is of the image's library: numpy in, numpy out; jax in, jax out,
traceable under jax.jit and jax.vmap (shapes follow from the arguments
alone). The same seed gives the same corruption; a Generator and a key draw
differently from the same distributions, and everything else (where the
hits, blocks and cross go given the draws, bicubic, quantize) is the same
code on both.

A jax tracer with a numpy Generator is refused: the noise would be drawn
once, at trace time, and frozen into the program. A numpy image with a
traced key is computed in jax. `resize` (PIL, any size), `jpeg` and
`jpeg_roundtrip` (Pillow encodes the file: host only, a Generator only),
`random_crop` and `dihedral` (the host pipeline's crop and augmentation;
batches made on the device crop and flip in `device_data`) take numpy
arrays only. Each function checks its input and raises TypeError (not an
array of the libraries it takes, a wrong dtype, an rng that is neither a
Generator nor a key) or ValueError (not HxWxC, a batch of keys).
"""

import functools
import io
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image


def _describe(x: Any) -> str:
  """What a caller passed, for the messages."""
  if isinstance(x, jax.core.Tracer):
    got = 'a jax tracer (inside jax.jit or another transformation)'
  elif isinstance(x, jax.Array):
    got = 'a jax Array'
  else:
    got = f'a {type(x).__module__}.{type(x).__qualname__}'
  shape = getattr(x, 'shape', None)
  return got + (f' of shape {tuple(shape)}' if shape is not None else '')


def _check_image(fn: str, image: Any, floats: bool = True,
                 numpy_only: bool = False) -> Any:
  """Raises unless `image` is one HxWxC image; returns its array library.

  Args:
    fn: the public function's name, for the message.
    image: what it was given.
    floats: whether the image must hold floats; else integers also do.
    numpy_only: whether the function runs on the host only (PIL, numpy).

  Returns:
    numpy or jax.numpy.
  """
  wanted = (f'{fn} takes one HxWxC {"float " if floats else ""}image as a '
            f'{"numpy array" if numpy_only else "numpy or jax array"}')
  if isinstance(image, np.ndarray):
    xp = np
  elif isinstance(image, jax.Array) and not numpy_only:
    xp = jnp
  else:
    hint = ('. It runs on the host: np.asarray(x) gives a concrete jax '
            'array as numpy; under jax.jit it cannot run'
            if isinstance(image, jax.Array) else '')
    raise TypeError(f'{wanted}; got {_describe(image)}{hint}')
  if image.ndim != 3:
    hint = {4: ': call it on each image of the batch (jax.vmap on device)',
            2: ': add a channel axis, e.g. x[..., None]'}.get(image.ndim, '')
    raise ValueError(f'{wanted}; got a {image.ndim}-D array of shape '
                     f'{tuple(image.shape)}{hint}')
  if floats and not jnp.issubdtype(image.dtype, jnp.floating):
    raise TypeError(f'{wanted} (values in [0, 1]); got dtype {image.dtype}: '
                    'convert uint8 with x.astype(np.float32) / 255')
  if not floats and image.dtype.kind not in 'iuf':
    raise TypeError(f'{wanted} of integers or floats; got dtype {image.dtype}')
  return xp


def _is_generator(fn: str, rng: Any) -> bool:
  """True for a numpy Generator, False for one jax key; raises otherwise."""
  if isinstance(rng, np.random.Generator):
    return True
  wanted = (f'{fn} takes a numpy Generator (np.random.default_rng) or a jax '
            'key (jax.random.key)')
  hint = ''
  if isinstance(rng, jax.Array):
    if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
      if rng.shape == ():
        return False
      raise ValueError(f'{wanted}, one per image; got keys of shape '
                       f'{rng.shape}: jax.vmap over the images and their keys')
    if rng.dtype == jnp.uint32:
      hint = (': a raw uint32 key (jax.random.PRNGKey) is not one; use '
              'jax.random.key(seed)')
  raise TypeError(f'{wanted}; got {_describe(rng)}{hint}')


class _Draws:
  """The few draws the corruptions make, from a numpy Generator or a jax key,
  returned in the computation's library. The i-th draw from a key uses
  fold_in(key, i): the same traced or not."""

  def __init__(self, rng: Any, xp: Any):
    self._generator = rng if isinstance(rng, np.random.Generator) else None
    self._rng, self._xp, self._count = rng, xp, 0

  def _key(self) -> jax.Array:
    self._count += 1
    return jax.random.fold_in(self._rng, self._count - 1)

  def _out(self, x: jax.Array) -> Any:
    return np.asarray(x) if self._xp is np else x

  def uniform(self, shape: tuple[int, ...]) -> Any:
    """Floats in [0, 1) of `shape`."""
    if self._generator is not None:
      return self._generator.random(shape)
    return self._out(jax.random.uniform(self._key(), shape))

  def normal(self, shape: tuple[int, ...]) -> Any:
    """Standard normal floats of `shape`."""
    if self._generator is not None:
      return self._generator.standard_normal(shape)
    return self._out(jax.random.normal(self._key(), shape))

  def integer(self, lo: int, hi: int) -> Any:
    """One integer in [lo, hi)."""
    if self._generator is not None:
      return int(self._generator.integers(lo, hi))
    return self._out(jax.random.randint(self._key(), (), lo, hi))

  def between(self, lo: float, hi: float) -> Any:
    """One float drawn uniformly from [lo, hi)."""
    if self._generator is not None:
      return float(self._generator.uniform(lo, hi))
    return self._out(jax.random.uniform(self._key(), (), jnp.float32, lo, hi))


def _take(fn: str, image: Any, rng: Any) -> tuple[Any, _Draws]:
  """Checks a drawing corruption's image and rng; returns the library to
  compute in and the draws."""
  xp = _check_image(fn, image)
  if _is_generator(fn, rng):
    if isinstance(image, jax.core.Tracer):
      raise TypeError(
          f'{fn} got {_describe(image)} and a numpy Generator: the draws '
          'would be made once, at trace time, and frozen into the program; '
          'pass a jax key (jax.random.key) instead')
  elif isinstance(rng, jax.core.Tracer):
    xp = jnp  # A numpy image is a constant of the traced program.
  return xp, _Draws(rng, xp)


def gaussian_noise(image: Any, rng: Any, sigma: Any) -> Any:
  """Additive white Gaussian noise, not clipped (the denoising protocol).

  Args:
    image: one float HxWxC image in [0, 1], numpy or jax.
    rng: a numpy Generator or a jax key, the noise's source.
    sigma: the noise's standard deviation on the 0-255 scale (a jax scalar,
      as `draw_sigma` gives from a key, is fine).

  Returns:
    The noisy HxWxC image.
  """
  xp, draws = _take('gaussian_noise', image, rng)
  noise = draws.normal(tuple(image.shape)) * (sigma / 255.0)
  return image + noise.astype(xp.float32)


def draw_sigma(rng: Any, sigma: float, sigma_range: tuple[float, float]) -> Any:
  """The noise level of one example (blind denoising draws it).

  Args:
    rng: a numpy Generator or a jax key.
    sigma: the level when `sigma_range` is empty.
    sigma_range: (lo, hi); when hi > lo the level is drawn uniformly from it.

  Returns:
    sigma or the drawn level: a float from a Generator, a float32 jax scalar
    from a key.
  """
  generator = _is_generator('draw_sigma', rng)
  lo, hi = sigma_range
  if hi > lo:
    return _Draws(rng, np if generator else jnp).between(lo, hi)
  return float(sigma) if generator else jnp.float32(sigma)


def salt_and_pepper(image: Any, rng: Any, amount: float) -> Any:
  """A fraction `amount` of pixels set to black or white (all channels).

  Args:
    image: one float HxWxC image in [0, 1], numpy or jax.
    rng: a numpy Generator or a jax key, where the pixels are drawn from.
    amount: the expected fraction of pixels hit.

  Returns:
    A corrupted copy, HxWxC, the image's dtype.
  """
  xp, draws = _take('salt_and_pepper', image, rng)
  h, w = image.shape[:2]
  hit = draws.uniform((h, w, 1)) < amount
  salt = draws.uniform((h, w, 1)) < 0.5
  return xp.where(hit, salt.astype(image.dtype), image)


def random_mask(image: Any, rng: Any, fraction: float,
                block: int = 8) -> tuple[Any, Any]:
  """Blocks of `block`x`block` pixels zeroed until about `fraction` is gone.

  Args:
    image: one float HxWxC image in [0, 1], numpy or jax.
    rng: a numpy Generator or a jax key, where the blocks are drawn from.
    fraction: the expected fraction of blocks removed.
    block: the blocks' side in pixels.

  Returns:
    (masked float32 HxWxC image, float32 HxWx1 mask with 1 where removed).
  """
  xp, draws = _take('random_mask', image, rng)
  h, w = image.shape[:2]
  cells = draws.uniform((-(-h // block), -(-w // block))) < fraction
  mask = xp.repeat(xp.repeat(cells, block, axis=0), block, axis=1)[:h, :w, None]
  return xp.where(mask, 0.0, image).astype(xp.float32), mask.astype(xp.float32)


def crosshair(image: Any, rng: Any, thickness: int = 1,
              value: float = 0.0) -> tuple[Any, Any]:
  """A thin cross over the image, through a random point of its middle half.

  Args:
    image: one float HxWxC image in [0, 1], numpy or jax.
    rng: a numpy Generator or a jax key, where the centre is drawn from.
    thickness: the lines' width in pixels.
    value: what the lines' pixels are set to (0: dark).

  Returns:
    (float32 HxWxC image, float32 HxWx1 mask with 1 on the cross).
  """
  xp, draws = _take('crosshair', image, rng)
  h, w = image.shape[:2]
  cy = draws.integer(h // 4, max(h // 4 + 1, 3 * h // 4))
  cx = draws.integer(w // 4, max(w // 4 + 1, 3 * w // 4))
  rows, cols = xp.arange(h)[:, None, None], xp.arange(w)[None, :, None]
  mask = (((rows >= cy) & (rows < cy + thickness)) |
          ((cols >= cx) & (cols < cx + thickness)))
  return xp.where(mask, value, image).astype(xp.float32), mask.astype(xp.float32)


def quantize(image: Any) -> Any:
  """Rounds to 8 bits, as an image saved to disk would be.

  Args:
    image: one float HxWxC image, numpy or jax; clipped to [0, 1] first.

  Returns:
    float32 HxWxC, multiples of 1/255.
  """
  xp = _check_image('quantize', image)
  return xp.round(xp.clip(image, 0.0, 1.0) * 255.0).astype(xp.float32) / 255.0


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
  """The image saved by Pillow's JPEG at `quality` (its defaults otherwise:
  baseline, 4:2:0 chroma for color) and decoded.

  Args:
    image: one float HxWxC numpy image in [0, 1], C 1 or 3; rounded to 8
      bits first, as the file's pixels are.
    quality: Pillow's JPEG quality, 1 to 95.

  Returns:
    float32 HxWxC, multiples of 1/255.
  """
  _check_image('jpeg_roundtrip', image, numpy_only=True)
  if image.shape[-1] not in (1, 3):
    raise ValueError(f'jpeg_roundtrip takes gray or RGB images; got '
                     f'{image.shape[-1]} channels')
  if not 1 <= int(quality) <= 95:
    raise ValueError(f'jpeg_roundtrip: quality={quality}; use 1 to 95')
  pixels = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(
      buffer, 'JPEG', quality=int(quality))
  buffer.seek(0)
  with Image.open(buffer) as decoded:
    out = np.asarray(decoded, np.float32) / 255.0
  return out.reshape(image.shape)


def jpeg(image: np.ndarray, rng: np.random.Generator,
         quality_range: tuple[int, int]) -> np.ndarray:
  """JPEG's artifacts: `jpeg_roundtrip` at a quality drawn uniformly from the
  whole numbers of quality_range = (low, high), both included.

  A host corruption (Pillow encodes): `rng` is a numpy Generator, and
  batches made on the device cannot make it.

  Args:
    image: one float HxWxC numpy image in [0, 1].
    rng: a numpy Generator, where the quality is drawn from.
    quality_range: (low, high), 1 <= low <= high <= 95; (q, q) for one.

  Returns:
    float32 HxWxC, the decoded file.
  """
  _check_image('jpeg', image, numpy_only=True)
  if not isinstance(rng, np.random.Generator):
    raise TypeError('jpeg runs on the host (Pillow encodes the file): it takes '
                    f'a numpy Generator; got {_describe(rng)}')
  lo, hi = quality_range
  return jpeg_roundtrip(image, int(rng.integers(int(lo), int(hi) + 1)))


def _keys_cubic(x: np.ndarray) -> np.ndarray:
  """The Keys cubic (a = -0.5) of MATLAB's and PIL's bicubic."""
  a, x = -0.5, np.abs(x)
  return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                  np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


@functools.lru_cache(maxsize=64)
def _bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
  """[n_out, n_in] float32: PIL's bicubic resampling along one axis.

  Output pixel i reads the input around its centre (i + 0.5) * n_in / n_out
  through the Keys cubic, stretched by the scale when downscaling
  (antialiasing); the weights falling outside the image are dropped and the
  rest renormalized, PIL's border rule. Computed in float64 as PIL does.
  """
  scale = n_in / n_out
  stretch = max(scale, 1.0)
  support = 2.0 * stretch
  centre = (np.arange(n_out) + 0.5) * scale
  first = np.maximum(np.trunc(centre - support + 0.5), 0)
  stop = np.minimum(np.trunc(centre + support + 0.5), n_in)
  x = np.arange(n_in)
  weights = _keys_cubic((x - centre[:, None] + 0.5) * (1.0 / stretch))
  weights = np.where((x >= first[:, None]) & (x < stop[:, None]), weights, 0.0)
  total = weights.sum(1, keepdims=True)
  out = (weights / np.where(total == 0, 1.0, total)).astype(np.float32)
  out.setflags(write=False)  # Cached: shared by every caller.
  return out


def _bicubic(image: Any, xp: Any, out_h: int, out_w: int) -> Any:
  """The image resampled to out_h x out_w by PIL's bicubic: one matrix
  product per axis, each a single large one (rows, then columns), in float32
  (in jax at full precision, not the accelerators' faster reduced one).
  Dense matrices cost time quadratic in the side: about PIL's up to 1000
  pixels, 2x PIL's at 4000 (bicubic_upscale of 1000x1500 by 4)."""
  h, w, c = image.shape
  rows = xp.asarray(_bicubic_matrix(h, out_h))
  cols = xp.asarray(_bicubic_matrix(w, out_w))
  if xp is np:
    matmul = np.matmul
  else:
    matmul = functools.partial(jnp.matmul, precision=jax.lax.Precision.HIGHEST)
  x_HxWC = image.astype(xp.float32).reshape(h, w * c)
  x_WxHoC = matmul(rows, x_HxWC).reshape(out_h, w, c).transpose(1, 0, 2).reshape(
      w, out_h * c)
  return matmul(cols, x_WxHoC).reshape(out_w, out_h, c).transpose(1, 0, 2)


def _check_scale(fn: str, scale: Any) -> None:
  if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
    raise ValueError(f'{fn} takes an integer scale >= 1 (a Python int, static '
                     f'under jax.jit); got {scale!r}')


def bicubic_downscale(image: Any, scale: int) -> Any:
  """MATLAB-style bicubic downscaling (antialiased Keys kernel, a=-0.5).

  PIL's bicubic, to float32 rounding: it reproduces the published bicubic
  PSNRs (REFERENCE: within 0.02 dB).

  Args:
    image: one float HxWxC image, numpy or jax, mod-cropped to `scale`.
    scale: the integer factor.

  Returns:
    float32 (H/scale)x(W/scale)xC.
  """
  xp = _check_image('bicubic_downscale', image)
  _check_scale('bicubic_downscale', scale)
  h, w = image.shape[:2]
  if h % scale or w % scale:
    raise ValueError(f'image of {h}x{w} is not a multiple of scale {scale}; '
                     'mod_crop it first')
  return _bicubic(image, xp, h // scale, w // scale)


def bicubic_upscale(image: Any, scale: int) -> Any:
  """Bicubic upscaling by an integer factor, PIL's to float32 rounding.

  Args:
    image: one float HxWxC image, numpy or jax.
    scale: the integer factor.

  Returns:
    float32 (H*scale)x(W*scale)xC, not clipped.
  """
  xp = _check_image('bicubic_upscale', image)
  _check_scale('bicubic_upscale', scale)
  h, w = image.shape[:2]
  return _bicubic(image, xp, h * scale, w * scale)


def mod_crop(image: Any, scale: int) -> Any:
  """Crops the bottom and right so both sides are multiples of `scale`.

  Args:
    image: one HxWxC image, numpy or jax, float or integer.
    scale: the factor both sides must divide by.

  Returns:
    A view of the image (numpy), cropped.
  """
  _check_image('mod_crop', image, floats=False)
  h, w = image.shape[:2]
  return image[:h - h % scale, :w - w % scale]


def resize(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
  """Bicubic resizing (PIL's, in float), channel by channel, to any size.

  Args:
    image: one float HxWxC numpy image (any C: also HxWx1 alpha planes).
    size_wh: the output's (width, height).

  Returns:
    float32 of shape (height, width, C), not clipped.
  """
  _check_image('resize', image, numpy_only=True)
  channels = [Image.fromarray(image[..., c].astype(np.float32), mode='F')
              .resize(size_wh, Image.BICUBIC) for c in range(image.shape[-1])]
  return np.stack([np.asarray(c) for c in channels], -1).astype(np.float32)


def random_crop(image: np.ndarray, rng: np.random.Generator,
                size: int) -> np.ndarray:
  """A random `size`x`size` crop; smaller images are reflect-padded first.

  The host pipeline's crop (batches made on the device gather theirs in
  `device_data`).

  Args:
    image: one HxWxC numpy image, uint8 as the data sets give or float.
    rng: the numpy Generator the corner is drawn from.
    size: the crop's side.

  Returns:
    size x size x C, the image's dtype.
  """
  _check_image('random_crop', image, floats=False, numpy_only=True)
  if not isinstance(rng, np.random.Generator):
    raise TypeError('random_crop takes a numpy Generator '
                    f'(np.random.default_rng); got {_describe(rng)}')
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
  _check_image('dihedral', image, floats=False, numpy_only=True)
  if not 0 <= k < 8:
    raise ValueError(f'dihedral: k={k}; use 0 to 7')
  out = np.rot90(image, k % 4, axes=(0, 1))
  return np.ascontiguousarray(out[:, ::-1] if k >= 4 else out)
