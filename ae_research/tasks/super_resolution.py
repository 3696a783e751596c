"""Super-resolution: a low-resolution image in, the high-resolution one out.

Low-resolution images are made by MATLAB-style bicubic downscaling by
config.sr.scale (2, 3 or 4) of the mod-cropped image, saved to 8 bits. The
low-resolution models (config.model.arch 'espcn', 'fsrcnn', 'edsr'; see
zoo.py) take that image itself and compute at its resolution; the others
(the autoencoder, the U-Net) see it upsampled back by bicubic interpolation
and restore detail at full resolution, `scale`² times the work per layer.
Scored the way super-resolution papers score: PSNR and SSIM on the Y channel
with `scale` pixels cropped from each border; the baseline is bicubic.
"""

from typing import Any, Optional

import flax.linen as nn
import jax
import numpy as np

from ae_research import checks, color, corruptions, device_data, evaluate, zoo
from ae_research import metrics as metrics_lib
from ae_research.tasks import base

NAME = 'super_resolution'
BASELINE_NAME = 'bicubic'
APPLY_FILES = ()
SCALES = (2, 3, 4)

evaluate_images = evaluate.evaluate_images
make_applier = base.image_applier


def low_resolution_input(config: Any) -> bool:
  """Whether the model takes the low-resolution image itself."""
  return config.model.arch in zoo.SUPER_RESOLUTION_ARCHS


def make_model(config: Any, norm_axis_name: Optional[str] = None) -> nn.Module:
  """config.model's architecture, RGB out; the low-resolution models
  upsample by config.sr.scale."""
  return zoo.from_config(config.model, out_features=3,
                         norm_axis_name=norm_axis_name, scale=config.sr.scale)


def check_config(config: Any) -> list[str]:
  """config.sr.scale, and training patches that it divides."""
  found = checks.problems(config, {'sr.scale': checks.one_of(SCALES)})
  if found:
    return found
  s = config.sr.scale
  if config.patch_size % s:
    found.append(f'config.patch_size={config.patch_size} must be a multiple '
                 f'of config.sr.scale={s}')
  elif low_resolution_input(config):
    multiple = make_model(config).downsampling
    if (config.patch_size // s) % multiple:
      found.append(f'config.patch_size={config.patch_size} must be a multiple '
                   f'of {s * multiple} (config.sr.scale x what the model '
                   'downsamples by)')
  return found


def input_channels(config: Any) -> int:
  del config
  return 3


def make_pair(example: dict[str, np.ndarray], rng: np.random.Generator,
              config: Any) -> dict[str, np.ndarray]:
  del rng  # The degradation is fixed.
  scale = config.sr.scale
  hr = corruptions.mod_crop(example['image'].astype(np.float32) / 255.0, scale)
  lr = corruptions.quantize(corruptions.bicubic_downscale(hr, scale))
  bicubic = corruptions.quantize(corruptions.bicubic_upscale(lr, scale))
  if low_resolution_input(config):
    return {'input': lr, 'target': hr, 'bicubic': bicubic}
  return {'input': bicubic, 'target': hr}


def device_pair(hr: jax.Array, key: jax.Array, config: Any) -> dict[str, jax.Array]:
  """make_pair's twin in jax, for batches made on the device (the patch's
  sides are multiples of the scale). Without the bicubic image a
  low-resolution model's pair keeps only for evaluation."""
  del key
  s = config.sr.scale
  lr = device_data.quantize(device_data.bicubic_downscale(hr, s))
  if low_resolution_input(config):
    return {'input': lr, 'target': hr}
  return {'input': device_data.quantize(device_data.bicubic_upscale(lr, s)),
          'target': hr}


def apply_pair(image: np.ndarray, config: Any) -> dict[str, Any]:
  """A user's low-resolution image, as the model takes it (itself, or
  upsampled by bicubic as in training); it is shown beside the output with
  its pixels enlarged (nearest)."""
  s = config.sr.scale
  x = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
  shown = np.repeat(np.repeat(x, s, axis=0), s, axis=1)
  bicubic = corruptions.quantize(corruptions.bicubic_upscale(x, s))
  pair = {'input': bicubic, 'shown': shown, 'gray': image.shape[-1] == 1}
  if low_resolution_input(config):
    pair.update(input=x, bicubic=bicubic)
  return pair


def loss(pred: jax.Array, batch: dict[str, jax.Array],
         config: Any = None) -> jax.Array:
  del config
  return metrics_lib.mse(pred, batch['target'])


def metrics(pred: jax.Array, batch: dict[str, jax.Array], config: Any):
  """Y-channel PSNR and SSIM with `scale` border pixels cropped, and RGB PSNR."""
  s = config.sr.scale
  crop = lambda y: y[:, s:-s, s:-s]
  pred = jax.numpy.clip(pred, 0.0, 1.0)
  y_pred = crop(color.rgb_to_y(pred))
  y_true = crop(color.rgb_to_y(batch['target']))
  mask_B = batch['mask']
  return {
      'psnr_y': metrics_lib.mean_over_batch(metrics_lib.psnr(y_pred, y_true), mask_B),
      'ssim_y': metrics_lib.mean_over_batch(metrics_lib.ssim(y_pred, y_true), mask_B),
      'psnr_rgb': metrics_lib.mean_over_batch(
          metrics_lib.psnr(crop(pred), crop(batch['target'])), mask_B),
  }


def baseline(batch: dict[str, jax.Array]) -> jax.Array:
  """Bicubic upsampling (the input itself, for a model that takes it)."""
  return batch.get('bicubic', batch['input'])


def classical(pair: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
  del pair, config  # Bicubic is the baseline, already scored.
  return {}
