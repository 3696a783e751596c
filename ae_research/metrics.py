"""Image quality metrics on batches of images in [0, 1], one value per image."""

import dm_pix
import jax
import jax.numpy as jnp


def mse(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array) -> jax.Array:
  return jnp.mean(jnp.square(a_BxHxWxC - b_BxHxWxC), axis=(1, 2, 3))


def psnr(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array,
         max_value: float = 1.0) -> jax.Array:
  """Peak signal-to-noise ratio in dB; a perfect match gives +inf."""
  return 10.0 * jnp.log10(max_value ** 2 / mse(a_BxHxWxC, b_BxHxWxC))


def ssim(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array,
         max_value: float = 1.0) -> jax.Array:
  """SSIM with a Gaussian 11x11 window (sigma 1.5), averaged over channels."""
  return dm_pix.ssim(a_BxHxWxC, b_BxHxWxC, max_val=max_value)


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


def rgb_to_y(x_BxHxWx3: jax.Array) -> jax.Array:
  """Y of YCbCr in [16, 235]/255 (the super-resolution protocol)."""
  w = jnp.array([65.481, 128.553, 24.966]) / 255.0
  return (16.0 / 255.0 + jnp.einsum('bhwc,c->bhw', x_BxHxWx3, w))[..., None]


def colorfulness(x_BxHxWx3: jax.Array) -> jax.Array:
  """Hasler and Suesstrunk's colorfulness (on the 0-255 scale), per image."""
  x = x_BxHxWx3 * 255.0
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


def ms_ssim(a_BxHxWxC: jax.Array, b_BxHxWxC: jax.Array, max_value: float = 1.0,
            weights=MS_SSIM_WEIGHTS, filter_size: int = 11,
            filter_sigma: float = 1.5, k1: float = 0.01,
            k2: float = 0.03) -> jax.Array:
  """Multi-scale SSIM (Wang et al. 2003) per image, as tf.image.ssim_multiscale
  computes it: contrast-structure at the finer scales, full SSIM at the
  coarsest, each clipped at 0 and weighted geometrically, averaged over
  channels."""
  side = min(a_BxHxWxC.shape[1:3])
  if side < ms_ssim_min_side(len(weights), filter_size):
    raise ValueError(
        f'MS-SSIM over {len(weights)} scales needs images of at least '
        f'{ms_ssim_min_side(len(weights), filter_size)} pixels a side; got '
        f'{a_BxHxWxC.shape[1]}x{a_BxHxWxC.shape[2]}')
  a = a_BxHxWxC.astype(jnp.float32)
  b = b_BxHxWxC.astype(jnp.float32)
  terms = []
  for k in range(len(weights)):
    if k:
      a, b = _halve(a), _halve(b)
    s, cs = _ssim_and_cs(a, b, max_value, filter_size, filter_sigma, k1, k2)
    terms.append(jax.nn.relu(cs if k < len(weights) - 1 else s))
  w = jnp.asarray(weights, jnp.float32).reshape(1, 1, -1)
  values = jnp.prod(jnp.stack(terms, -1) ** w, axis=-1)  # [B, C]
  return jnp.mean(values, axis=-1)
