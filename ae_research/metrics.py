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
