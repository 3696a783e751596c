"""Colorization: a grayscale image in, the color image out.

On the shapes data set the input is the scene with every shape the same light
gray, and the model must color circles red and squares blue; elsewhere the
input is the image's luma.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import color, evaluate
from ae_research import metrics as metrics_lib
from ae_research.tasks import base

NAME = 'colorize'
BASELINE_NAME = 'gray'
APPLY_FILES = ()
RED = np.array([1.0, 0.0, 0.0], np.float32)
BLUE = np.array([0.0, 0.0, 1.0], np.float32)

make_model = base.rgb_model
evaluate_images = evaluate.evaluate_images
make_applier = base.image_applier


def check_config(config: Any) -> list[str]:
  del config  # Colorization has no settings of its own.
  return []


def input_channels(config: Any) -> int:
  del config
  return 1  # Luma.


def make_pair(example: dict[str, np.ndarray], rng: np.random.Generator,
              config: Any) -> dict[str, np.ndarray]:
  del rng, config  # The pair is fixed by the image.
  target_HxWx3 = example['image'].astype(np.float32) / 255.0
  if 'gray' in example:
    input_HxWx1 = example['gray'].astype(np.float32) / 255.0
  else:
    input_HxWx1 = color.luma(target_HxWx3)
  pair = {'input': input_HxWx1, 'target': target_HxWx3}
  if 'label' in example:
    pair['label'] = example['label'].astype(np.int32)
  return pair


def device_pair(target: jax.Array, key: jax.Array, config: Any) -> dict[str, jax.Array]:
  """make_pair's twin in jax, for batches made on the device."""
  del key, config
  return {'input': color.luma(target), 'target': target}


def apply_pair(image: np.ndarray, config: Any) -> dict[str, Any]:
  """A user's image as gray input (its luma, if it has color; the color
  original is then shown beside the output)."""
  del config
  if image.shape[-1] == 1:
    return {'input': image, 'shown': image}
  gray = color.luma(image)
  return {'input': gray, 'shown': gray, 'original': image}


def loss(pred_BxHxWx3: jax.Array, batch: dict[str, jax.Array],
         config: Any = None) -> jax.Array:
  del config
  return metrics_lib.mse(pred_BxHxWx3, batch['target'])


def shape_color_correct(pred_BxHxWx3: jax.Array, label_BxHxW: jax.Array):
  """Per image: (shape pixels nearer the right color than the wrong one, shape pixels)."""
  d_red = jnp.sum(jnp.square(pred_BxHxWx3 - RED.reshape(1, 1, 1, 3)), axis=-1)
  d_blue = jnp.sum(jnp.square(pred_BxHxWx3 - BLUE.reshape(1, 1, 1, 3)), axis=-1)
  correct = jnp.where(label_BxHxW == 1, d_red < d_blue, d_blue < d_red)
  is_shape = label_BxHxW > 0
  return (jnp.sum(correct & is_shape, axis=(1, 2)),
          jnp.sum(is_shape, axis=(1, 2)))


def metrics(pred_BxHxWx3: jax.Array, batch: dict[str, jax.Array],
            config: Any = None):
  del config
  mask_B = batch['mask']
  pred = jnp.clip(pred_BxHxWx3, 0.0, 1.0)
  out = metrics_lib.rgb_psnr_ssim(pred, batch)
  if 'label' not in batch:  # Photos: how vivid the colors are.
    out['colorfulness'] = metrics_lib.mean_over_batch(
        metrics_lib.colorfulness(pred), mask_B)
  else:
    correct_B, pixels_B = shape_color_correct(pred, batch['label'])
    out['shape_color_accuracy'] = (jnp.sum(correct_B * mask_B),
                                   jnp.sum(pixels_B * mask_B))
  return out


def baseline(batch: dict[str, jax.Array]) -> jax.Array:
  """The gray input, copied to every channel."""
  return jnp.repeat(batch['input'], 3, axis=-1)


def classical(pair: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
  del pair, config  # The gray baseline is the classical answer.
  return {}
