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

from ae_research import archs, checks, color, corruptions, zoo
from ae_research import metrics as metrics_lib
from ae_research.tasks import base

SCALES = (2, 3, 4)


def low_resolution_input(config: Any) -> bool:
  """Whether the model takes the low-resolution image itself."""
  return archs.get(config.model.arch).low_resolution


class SuperResolution(base.Task):
  """Low resolution in (config.sr.scale), high resolution out; scored on
  the Y channel beside bicubic."""

  name = 'super_resolution'
  group = 'sr'

  def group_defaults(self) -> dict[str, Any]:
    return {'scale': 3}

  def make_model(self, config: Any, norm_axis_name: Optional[str] = None) -> nn.Module:
    """config.model's architecture, RGB out; the low-resolution models
    upsample by config.sr.scale."""
    return zoo.from_config(config.model, out_features=3,
                           norm_axis_name=norm_axis_name, scale=config.sr.scale)

  def check_config(self, config: Any) -> list[str]:
    """config.sr.scale, and training patches that it divides."""
    found = checks.problems(config, {'sr.scale': checks.one_of(SCALES)})
    if found:
      return found
    s = config.sr.scale
    if config.patch_size % s:
      found.append(f'config.patch_size={config.patch_size} must be a multiple '
                   f'of config.sr.scale={s}')
    elif low_resolution_input(config):
      multiple = self.make_model(config).downsampling
      if (config.patch_size // s) % multiple:
        found.append(f'config.patch_size={config.patch_size} must be a multiple '
                     f'of {s * multiple} (config.sr.scale x what the model '
                     'downsamples by)')
    return found

  def make_pair(self, example: dict[str, Any], rng: Any,
                config: Any) -> dict[str, Any]:
    """The image mod-cropped to the scale (target), bicubic-downscaled and
    saved to 8 bits (input of a low-resolution model, which gets the
    bicubic upscaling beside it as its baseline), or that upscaled back by
    bicubic (input of the others)."""
    del rng  # The degradation is fixed.
    s = config.sr.scale
    hr = corruptions.mod_crop(base.pixels(example['image']), s)
    lr = corruptions.quantize(corruptions.bicubic_downscale(hr, s))
    bicubic = corruptions.quantize(corruptions.bicubic_upscale(lr, s))
    if low_resolution_input(config):
      return {'input': lr, 'target': hr, 'bicubic': bicubic}
    return {'input': bicubic, 'target': hr}

  def apply_pair(self, image: np.ndarray, config: Any) -> dict[str, Any]:
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

  def metrics(self, pred: Any, batch: dict[str, jax.Array], config: Any):
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

  def baseline_name(self, config: Any) -> str:
    del config
    return 'bicubic'

  def baseline(self, batch: dict[str, jax.Array]) -> jax.Array:
    """Bicubic upsampling (the input itself, for a model that takes it)."""
    return batch.get('bicubic', batch['input'])
