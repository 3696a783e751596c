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
