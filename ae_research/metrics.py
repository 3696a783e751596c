"""Image quality metrics on batches of images BxHxWxC, one value per image.

Images are floats in [0, max_value] (max_value 1 unless given) or integers
(uint8: 0-255, max_value the dtype's max unless given). Integers are cast to
float32 before any arithmetic: uint8 differences would wrap around.
"""

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np


def _checked(fn: str, *images, max_value=None):
  """The images as arrays to score and the max_value to score them with.

  Args:
    fn: the metric's name, for the messages.
    *images: one or two batches BxHxWxC.
    max_value: the brightest value; None for the dtype's (1.0 for floats).

  Returns:
    ([float arrays], max_value).

  Raises:
    ValueError: a batch is not BxHxWxC, the shapes differ, a dtype is not
      integer or float, or the dtypes mix floats with integers or two
      integer dtypes (their max_value would differ).
  """
  arrays = [x if hasattr(x, 'shape') and hasattr(x, 'dtype') else np.asarray(x)
            for x in images]
  shapes = [tuple(x.shape) for x in arrays]
  shown = ' and '.join(str(s) for s in shapes)
  if any(len(s) != 4 for s in shapes):
    hint = ('; for one HxWxC image add a batch axis, e.g. x[None]'
            if any(len(s) == 3 for s in shapes) else '')
    raise ValueError(
        f'{fn} takes batches BxHxWxC (4-D); got shape {shown}{hint}')
  if len(set(shapes)) > 1:
    raise ValueError(f'{fn} takes two batches of the same shape; got {shown}')
  dtypes = [np.dtype(x.dtype) for x in arrays]
  for d in dtypes:
    # jnp.issubdtype, unlike np's, counts bfloat16 as floating.
    if not (jnp.issubdtype(d, jnp.integer) or jnp.issubdtype(d, jnp.floating)):
      raise ValueError(f'{fn} takes integer or float images; got dtype {d}')
  integer = jnp.issubdtype(dtypes[0], jnp.integer)
  if any(jnp.issubdtype(d, jnp.integer) != integer for d in dtypes) or (
      integer and len(set(dtypes)) > 1):
    raise ValueError(
        f'{fn} takes images of one kind of dtype, both float or both the same '
        f'integer dtype; got {" and ".join(map(str, dtypes))} (e.g. convert '
        'uint8 with x.astype(np.float32) / 255)')
  if max_value is None:
    max_value = float(np.iinfo(dtypes[0]).max) if integer else 1.0
  if integer:
    return [jnp.asarray(x, jnp.float32) for x in arrays], max_value
  return [jnp.asarray(x) for x in arrays], max_value


def mse(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array,
        max_value: float | None = None) -> jax.Array:
  """Mean squared error per image, on the scale where max_value is 1.

  Args:
    a_BxHxWxC: a batch of images, float or integer.
    b_BxHxWxC: a batch of the same shape and kind of dtype.
    max_value: the brightest value; None for 1.0 (floats) or the dtype's max.

  Returns:
    float B: uint8 images score as the same images divided by 255.
  """
  (a, b), max_value = _checked('mse', a_BxHxWxC, b_BxHxWxC, max_value=max_value)
  return dm_pix.mse(a, b) / jnp.square(max_value)


def psnr(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array,
         max_value: float | None = None) -> jax.Array:
  """Peak signal-to-noise ratio in dB per image; a perfect match gives +inf.

  Args:
    a_BxHxWxC: a batch of images, float or integer.
    b_BxHxWxC: a batch of the same shape and kind of dtype.
    max_value: the brightest value; None for 1.0 (floats) or the dtype's max.

  Returns:
    float B.
  """
  (a, b), max_value = _checked('psnr', a_BxHxWxC, b_BxHxWxC,
                               max_value=max_value)
  # dm_pix.psnr assumes max_value 1: PSNR = 20 log10(max) - 10 log10(MSE).
  return dm_pix.psnr(a, b) + 20.0 * jnp.log10(max_value)


def ssim(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array,
         max_value: float | None = None) -> jax.Array:
  """SSIM with a Gaussian 11x11 window (sigma 1.5), averaged over channels.

  Args:
    a_BxHxWxC: a batch of images, float or integer.
    b_BxHxWxC: a batch of the same shape and kind of dtype.
    max_value: the brightest value; None for 1.0 (floats) or the dtype's max.

  Returns:
    float B.
  """
  (a, b), max_value = _checked('ssim', a_BxHxWxC, b_BxHxWxC,
                               max_value=max_value)
  return dm_pix.ssim(a, b, max_val=max_value)


def mean_over_batch(values_B: jax.Array, mask_B: jax.Array):
  """(sum of values over valid examples, number of valid examples).

  Padding examples may hold inf or nan (the PSNR of two zero images), so
  they are selected away rather than multiplied by 0.
  """
  return jnp.sum(jnp.where(mask_B > 0, values_B, 0.0)), jnp.sum(mask_B)


def rgb_psnr_ssim(pred_BxHxWxC: jax.Array, batch: dict[str, jax.Array]):
  """{'psnr', 'ssim'}: (sum over valid examples, count), output clipped to [0, 1]."""
  pred = jnp.clip(pred_BxHxWxC, 0.0, 1.0)
  mask_B = batch['mask']
  return {'psnr': mean_over_batch(psnr(pred, batch['target']), mask_B),
          'ssim': mean_over_batch(ssim(pred, batch['target']), mask_B)}


def colorfulness(x_BxHxWx3: jax.Array,
                 max_value: float | None = None) -> jax.Array:
  """Hasler and Suesstrunk's colorfulness (on the 0-255 scale), per image.

  Args:
    x_BxHxWx3: a batch of RGB images, float or integer.
    max_value: the brightest value; None for 1.0 (floats) or the dtype's max.

  Returns:
    float B.
  """
  (x,), max_value = _checked('colorfulness', x_BxHxWx3, max_value=max_value)
  if x.shape[-1] != 3:
    raise ValueError(
        f'colorfulness takes RGB batches BxHxWx3; got shape {x.shape}')
  x = x * (255.0 / max_value)
  rg = x[..., 0] - x[..., 1]
  yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
  std = jnp.sqrt(jnp.var(rg, axis=(1, 2)) + jnp.var(yb, axis=(1, 2)))
  mean = jnp.sqrt(jnp.mean(rg, axis=(1, 2)) ** 2 + jnp.mean(yb, axis=(1, 2)) ** 2)
  return std + 0.3 * mean


MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _gaussian_filter(x_BxHxWxC: jax.Array, size: int, sigma: float) -> jax.Array:
  """Separable Gaussian filter of each channel, 'VALID' (no padding)."""
  t = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
  g = jnp.exp(-0.5 * jnp.square(t / sigma))
  g = g / jnp.sum(g)
  c = x_BxHxWxC.shape[-1]
  dn = ('NHWC', 'HWIO', 'NHWC')
  rows = jnp.tile(g.reshape(size, 1, 1, 1), (1, 1, 1, c))
  cols = jnp.tile(g.reshape(1, size, 1, 1), (1, 1, 1, c))
  x = jax.lax.conv_general_dilated(x_BxHxWxC, rows, (1, 1), 'VALID',
                                   dimension_numbers=dn, feature_group_count=c)
  return jax.lax.conv_general_dilated(x, cols, (1, 1), 'VALID',
                                      dimension_numbers=dn, feature_group_count=c)


def _ssim_and_cs(a, b, max_value, size, sigma, k1, k2):
  """Per image and channel: mean SSIM and mean contrast-structure term."""
  f = lambda x: _gaussian_filter(x, size, sigma)
  mu_a, mu_b = f(a), f(b)
  var_a = f(a * a) - mu_a * mu_a
  var_b = f(b * b) - mu_b * mu_b
  cov = f(a * b) - mu_a * mu_b
  c1, c2 = (k1 * max_value) ** 2, (k2 * max_value) ** 2
  luminance = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
  cs = (2 * cov + c2) / (var_a + var_b + c2)
  return jnp.mean(luminance * cs, axis=(1, 2)), jnp.mean(cs, axis=(1, 2))


def _halve(x_BxHxWxC: jax.Array) -> jax.Array:
  """2x2 average pooling; an odd side is first padded by mirroring its edge."""
  _, h, w, _ = x_BxHxWxC.shape
  x = jnp.pad(x_BxHxWxC, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)),
              mode='symmetric')
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim_min_side(num_scales: int = len(MS_SSIM_WEIGHTS),
                     filter_size: int = 11) -> int:
  """The smallest side MS-SSIM accepts: the coarsest scale must hold the filter."""
  return (filter_size - 1) * 2 ** (num_scales - 1) + 1


def ms_ssim(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array,
            max_value: float | None = None, weights=MS_SSIM_WEIGHTS,
            filter_size: int = 11, filter_sigma: float = 1.5, k1: float = 0.01,
            k2: float = 0.03) -> jax.Array:
  """Multi-scale SSIM (Wang et al. 2003) per image, as tf.image.ssim_multiscale.

  Contrast-structure at the finer scales and full SSIM at the coarsest, each
  clipped at 0 and weighted geometrically, averaged over channels.

  Args:
    a_BxHxWxC: a batch of images, float or integer, sides of at least
      ms_ssim_min_side().
    b_BxHxWxC: a batch of the same shape and kind of dtype.
    max_value: the brightest value; None for 1.0 (floats) or the dtype's max.
    weights: one weight per scale, finest first.
    filter_size: the Gaussian window's side.
    filter_sigma: the Gaussian window's sigma.
    k1: SSIM's luminance constant.
    k2: SSIM's contrast constant.

  Returns:
    float B.
  """
  (a, b), max_value = _checked('ms_ssim', a_BxHxWxC, b_BxHxWxC,
                               max_value=max_value)
  side = min(a.shape[1:3])
  if side < ms_ssim_min_side(len(weights), filter_size):
    raise ValueError(
        f'MS-SSIM over {len(weights)} scales needs images of at least '
        f'{ms_ssim_min_side(len(weights), filter_size)} pixels a side; got '
        f'{a.shape[1]}x{a.shape[2]}')
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  terms = []
  for k in range(len(weights)):
    if k:
      a, b = _halve(a), _halve(b)
    s, cs = _ssim_and_cs(a, b, max_value, filter_size, filter_sigma, k1, k2)
    terms.append(jax.nn.relu(cs if k < len(weights) - 1 else s))
  w = jnp.asarray(weights, jnp.float32).reshape(1, 1, -1)
  values = jnp.prod(jnp.stack(terms, -1) ** w, axis=-1)  # [B, C]
  return jnp.mean(values, axis=-1)
