"""Colorization: a grayscale image in, the color image out.

On the shapes data set the input is the scene with every shape the same light
gray, and the model must color circles red and squares blue; elsewhere the
input is the image's luma.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import color
from ae_research import metrics as metrics_lib
from ae_research.tasks import base

RED = np.array([1.0, 0.0, 0.0], np.float32)
BLUE = np.array([0.0, 0.0, 1.0], np.float32)


def shape_color_correct(pred_BxHxWx3: jax.Array, label_BxHxW: jax.Array):
  """Per image: (shape pixels nearer the right color than the wrong one, shape pixels)."""
  d_red = jnp.sum(jnp.square(pred_BxHxWx3 - RED.reshape(1, 1, 1, 3)), axis=-1)
  d_blue = jnp.sum(jnp.square(pred_BxHxWx3 - BLUE.reshape(1, 1, 1, 3)), axis=-1)
  correct = jnp.where(label_BxHxW == 1, d_red < d_blue, d_blue < d_red)
  is_shape = label_BxHxW > 0
  return (jnp.sum(correct & is_shape, axis=(1, 2)),
          jnp.sum(is_shape, axis=(1, 2)))


class Colorize(base.Task):
  """Gray in (one channel), RGB out; scored beside the gray input."""

  name = 'colorize'

  def input_channels(self, config: Any) -> int:
    del config
    return 1  # Luma.

  def make_pair(self, example: dict[str, Any], rng: Any,
                config: Any) -> dict[str, Any]:
    del rng, config  # The pair is fixed by the image.
    target_HxWx3 = base.pixels(example['image'])
    if 'gray' in example:
      input_HxWx1 = base.pixels(example['gray'])
    else:
      input_HxWx1 = color.luma(target_HxWx3)
    pair = {'input': input_HxWx1, 'target': target_HxWx3}
    if 'label' in example:
      pair['label'] = example['label'].astype(np.int32)
    return pair

  def metrics(self, pred: Any, batch: dict[str, jax.Array], config: Any):
    """RGB PSNR and SSIM; on shapes the fraction of shape pixels of the
    right color, on photos the colorfulness (Hasler and Suesstrunk) of the
    output and of the true image."""
    del config
    mask_B = batch['mask']
    pred = jnp.clip(pred, 0.0, 1.0)
    out = metrics_lib.rgb_psnr_ssim(pred, batch)
    if 'label' not in batch:  # Photos: how vivid the colors are, and the
      # true images' (a washed-out output cannot hide behind its PSNR).
      out['colorfulness'] = metrics_lib.mean_over_batch(
          metrics_lib.colorfulness(pred), mask_B)
      out['colorfulness_target'] = metrics_lib.mean_over_batch(
          metrics_lib.colorfulness(batch['target']), mask_B)
    else:
      correct_B, pixels_B = shape_color_correct(pred, batch['label'])
      out['shape_color_accuracy'] = (jnp.sum(correct_B * mask_B),
                                     jnp.sum(pixels_B * mask_B))
    return out

  def baseline_name(self, config: Any) -> str:
    del config
    return 'gray'

  def baseline(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The gray input, copied to every channel."""
    return jnp.repeat(batch['input'], 3, axis=-1)

  def apply_pair(self, image: np.ndarray, config: Any) -> dict[str, Any]:
    """A user's image as gray input (its luma, if it has color; the color
    original is then shown beside the output)."""
    del config
    if image.shape[-1] == 1:
      return {'input': image, 'shown': image}
    gray = color.luma(image)
    return {'input': gray, 'shown': gray, 'original': image}
