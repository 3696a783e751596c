"""Denoising: a corrupted image in, the clean one out.

config.denoise.noise picks the corruption: 'gaussian' (sigma on the 0-255
scale, or drawn from sigma_range for blind denoising), 'salt_and_pepper',
'mask' (random blocks removed) or 'crosshair' (a thin dark cross to remove).
Classical baselines, by corruption: scikit-image's non-local means (and BM3D
when the optional `bm3d` package is installed) for Gaussian noise, a 3x3
median filter for salt and pepper, biharmonic inpainting of the known damaged
pixels for masks and the crosshair.

A model that takes the noise level (config.model.arch 'ffdnet') gets it as
one more input channel after the image: sigma / 255 at every pixel, the
sigma drawn for that image (blind training) or config.denoise.sigma.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import median_filter
from skimage.restoration import denoise_nl_means, inpaint_biharmonic

try:
  import bm3d  # Optional (pip install bm3d): CBM3D beside non-local means.
except ImportError:
  bm3d = None

from ae_research import checks, corruptions, device_data, evaluate, zoo
from ae_research import metrics as metrics_lib
from ae_research.tasks import base

NAME = 'denoise'
BASELINE_NAME = 'noisy input'
APPLY_FILES = ()
NOISES = ('gaussian', 'salt_and_pepper', 'mask', 'crosshair')

make_model = base.rgb_model
evaluate_images = evaluate.evaluate_images
make_applier = base.image_applier


def check_config(config: Any) -> list[str]:
  """config.denoise: the corruption and its strength."""
  found = checks.problems(config, {
      'denoise.noise': checks.one_of(NOISES),
      'denoise.sigma': checks.non_negative_float,
      'denoise.amount': checks.fraction,
      'denoise.crosshair_thickness': checks.positive,
  })
  if takes_noise_map(config) and config.denoise.noise != 'gaussian':
    found.append(f'config.model.arch={config.model.arch!r} takes the noise '
                 'level as an input: it denoises Gaussian noise '
                 f"(config.denoise.noise='gaussian'), not {config.denoise.noise!r}")
  lo, hi = config.denoise.sigma_range
  if not 0 <= lo <= hi:
    found.append(f'config.denoise.sigma_range={(lo, hi)} must be (low, high) '
                 'with 0 <= low <= high; (0, 0) means the fixed sigma')
  return found


def takes_noise_map(config: Any) -> bool:
  """Whether the model's input ends with a noise-level map."""
  return config.model.arch in zoo.NOISE_MAP_ARCHS


def input_channels(config: Any) -> int:
  return 4 if takes_noise_map(config) else 3


def with_noise_map(noisy: np.ndarray, sigma: float) -> np.ndarray:
  """The image with one more channel: sigma / 255 everywhere."""
  level = np.full(noisy.shape[:2] + (1,), sigma / 255.0, np.float32)
  return np.concatenate([noisy.astype(np.float32), level], -1)


def corrupt(clean: np.ndarray, rng: np.random.Generator, c: Any
            ) -> tuple[np.ndarray, np.ndarray | None, float]:
  """(corrupted image, HxWx1 map of the damaged pixels or None, Gaussian
  sigma or 0)."""
  if c.noise == 'gaussian':
    sigma = corruptions.draw_sigma(rng, c.sigma, tuple(c.sigma_range))
    return corruptions.gaussian_noise(clean, rng, sigma), None, sigma
  if c.noise == 'salt_and_pepper':
    return corruptions.salt_and_pepper(clean, rng, c.amount), None, 0.0
  if c.noise == 'mask':
    return corruptions.random_mask(clean, rng, c.amount) + (0.0,)
  if c.noise == 'crosshair':
    return corruptions.crosshair(clean, rng, c.crosshair_thickness) + (0.0,)
  raise ValueError(f'config.denoise.noise={c.noise!r}; choose one of {NOISES}')


def make_pair(example: dict[str, np.ndarray], rng: np.random.Generator,
              config: Any) -> dict[str, np.ndarray]:
  clean = example['image'].astype(np.float32) / 255.0
  corrupted, damage, sigma = corrupt(clean, rng, config.denoise)
  pair = {'input': corrupted, 'target': clean}
  if takes_noise_map(config):
    pair.update(input=with_noise_map(corrupted, sigma), shown=corrupted)
  if damage is not None:
    pair['damage'] = damage
  return pair


def device_pair(clean: jax.Array, key: jax.Array, config: Any) -> dict[str, jax.Array]:
  """make_pair's twin in jax, for batches made on the device."""
  c = config.denoise
  sigma_key, noise_key = jax.random.split(key)
  pair = {'target': clean}
  if c.noise == 'gaussian':
    sigma = device_data.draw_sigma(sigma_key, c.sigma, tuple(c.sigma_range))
    pair['input'] = device_data.gaussian_noise(clean, noise_key, sigma)
    if takes_noise_map(config):
      level = jnp.full(clean.shape[:2] + (1,), sigma / 255.0, jnp.float32)
      pair.update(input=jnp.concatenate([pair['input'], level], -1),
                  shown=pair['input'])
  elif c.noise == 'salt_and_pepper':
    pair['input'] = device_data.salt_and_pepper(clean, noise_key, c.amount)
  elif c.noise == 'mask':
    pair['input'], pair['damage'] = device_data.random_mask(clean, noise_key, c.amount)
  elif c.noise == 'crosshair':
    pair['input'], pair['damage'] = device_data.crosshair(
        clean, noise_key, c.crosshair_thickness)
  else:
    raise ValueError(f'config.denoise.noise={c.noise!r}; choose one of {NOISES}')
  return pair


def apply_pair(image: np.ndarray, config: Any) -> dict[str, Any]:
  """A user's corrupted image as the model's input. A gray image goes in as
  RGB and comes out gray. For the inpainting corruptions, the damaged pixels
  the classical method fills are guessed as those at the corruption's value
  (black in every channel). A model that takes the noise level is told
  config.denoise.sigma."""
  x = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
  pair = {'input': x, 'shown': x, 'gray': image.shape[-1] == 1}
  if takes_noise_map(config):
    pair['input'] = with_noise_map(x, config.denoise.sigma)
  if config.denoise.noise in ('mask', 'crosshair'):
    pair['damage'] = np.all(x <= 0.5 / 255.0, axis=-1, keepdims=True).astype(np.float32)
  return pair


def loss(pred: jax.Array, batch: dict[str, jax.Array],
         config: Any = None) -> jax.Array:
  del config
  return metrics_lib.mse(pred, batch['target'])


def metrics(pred: jax.Array, batch: dict[str, jax.Array], config: Any = None):
  del config
  return metrics_lib.rgb_psnr_ssim(pred, batch)


def baseline(batch: dict[str, jax.Array]) -> jax.Array:
  """The corrupted input itself (its image, without a noise map)."""
  return batch['input'][..., :3]


def _nl_means(noisy: np.ndarray, sigma: float) -> np.ndarray:
  s = sigma / 255.0
  return denoise_nl_means(noisy, h=0.8 * s, sigma=s, patch_size=5,
                          patch_distance=6, fast_mode=True,
                          channel_axis=-1).astype(np.float32)


def classical(pair: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
  """The classical methods for this corruption, on one whole image."""
  c = config.denoise
  noisy = np.clip(pair['input'][..., :3], 0.0, 1.0)
  if c.noise == 'salt_and_pepper':
    return {'median_3x3': median_filter(noisy, size=(3, 3, 1))}
  if c.noise in ('mask', 'crosshair'):
    hole = pair['damage'][..., 0] > 0
    return {'biharmonic': inpaint_biharmonic(noisy, hole, channel_axis=-1)
                          .astype(np.float32)}
  # Gaussian: with a sigma range (blind), the baseline is told the mean sigma.
  lo, hi = c.sigma_range
  sigma = (lo + hi) / 2 if hi > lo else c.sigma
  out = {'nl_means': _nl_means(noisy, sigma)}
  if bm3d is None:
    return out
  out['bm3d'] = np.asarray(bm3d.bm3d_rgb(noisy, sigma / 255.0), np.float32)
  return out
