"""Colorization: a grayscale image in, the color image out.

On the shapes data set the input is the scene with every shape the same light
gray, and the model must color circles red and squares blue; elsewhere the
input is the image's luma.

config.colorize.chroma_bins = 0 (the default) regresses RGB (mean squared
error); N > 0 predicts a distribution over N x N bins of the chroma plane
instead (zoo.ChromaClassifier; Zhang, Isola and Efros, ECCV 2016), trained
with cross-entropy against the true chroma spread over its four nearest
bins, each pixel weighted against the frequency of its colour in the batch
(`rebalance`: the share of the uniform distribution in that prior, 1 = no
reweighting), and decoded as the annealed mean at `temperature`.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import checks, color, zoo
from ae_research import metrics as metrics_lib
from ae_research.tasks import base

# The features the model gives the chroma classifier's 1x1 layer.
CLASSIFIER_FEATURES = 64
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


FIELDS = {  # config.colorize: default, check.
    'chroma_bins': (0, checks.non_negative),
    'chroma_max': (0.4, lambda x: None if isinstance(x, (int, float))
                   and 0 < x <= 0.5 else 'a number in (0, 0.5]'),
    'temperature': (0.38, checks.positive_float),
    'rebalance': (0.5, lambda x: None if isinstance(x, (int, float))
                  and 0 < x <= 1 else 'a number in (0, 1] (1: no reweighting)'),
}


def soft_bins(cbcr_BxHxWx2: jax.Array, bins: int, chroma_max: float) -> jax.Array:
  """The chroma as a distribution over the bins x bins grid of
  `zoo.chroma_bin_centers`: bilinear weights on its four nearest centres
  (their mean is the chroma, clipped to the grid): [B, H, W, bins**2]."""
  u = (jnp.clip(cbcr_BxHxWx2, -chroma_max, chroma_max) + chroma_max) / (
      2 * chroma_max) * (bins - 1)
  low = jnp.clip(jnp.floor(u), 0, bins - 2)
  frac = u - low
  def axis(k):  # [B, H, W, bins]: the weights along Cb (k=0) or Cr (k=1).
    low_k = low[..., k].astype(jnp.int32)
    return (jax.nn.one_hot(low_k, bins) * (1 - frac[..., k:k + 1])
            + jax.nn.one_hot(low_k + 1, bins) * frac[..., k:k + 1])
  q = axis(0)[..., :, None] * axis(1)[..., None, :]
  return q.reshape(q.shape[:-2] + (bins * bins,))


def classification_loss(pred: jax.Array, batch: dict[str, jax.Array],
                        config: Any) -> dict[str, jax.Array]:
  """Per example: the rebalanced cross-entropy of the chroma bins ('loss')
  and the mean squared error of the decoded RGB (reported)."""
  c = config.colorize
  rgb, logits = pred[..., :3], pred[..., 3:]
  q = soft_bins(color.chroma(batch['target']), c.chroma_bins, c.chroma_max)
  # Rebalancing: a bin's weight is 1 / ((1 - r) p + r / Q), p the bins'
  # frequency in this batch, scaled so a pixel weighs 1 on average.
  p = jax.lax.stop_gradient(jnp.mean(q, axis=(0, 1, 2)))
  w = 1.0 / ((1 - c.rebalance) * p + c.rebalance / p.shape[0])
  w = w / jnp.sum(p * w)
  cross_entropy = -jnp.sum(q * jax.nn.log_softmax(logits, -1), -1)
  weighted = jnp.sum(q * w.reshape(1, 1, 1, -1), -1) * cross_entropy
  return {'loss': jnp.mean(weighted, axis=(1, 2)),
          'mse': metrics_lib.mse(rgb, batch['target'])}


class Colorize(base.Task):
  """Gray in (one channel), RGB out; scored beside the gray input."""

  name = 'colorize'
  group = 'colorize'

  def group_defaults(self) -> dict[str, Any]:
    return {k: d for k, (d, _) in FIELDS.items()}

  def check_config(self, config: Any) -> list[str]:
    """config.colorize: regression or the chroma bins, and their fields."""
    found = checks.problems(config, {f'colorize.{k}': check
                                     for k, (_, check) in FIELDS.items()})
    if not found and config.colorize.chroma_bins == 1:
      found.append('config.colorize.chroma_bins=1 is not allowed: use 0 '
                   '(regression) or at least 2 bins per axis, e.g. 13')
    return found

  def make_model(self, config: Any, norm_axis_name: Optional[str] = None):
    """config.model, RGB out; with chroma bins inside a
    zoo.ChromaClassifier (the model then gives 64 features, not RGB)."""
    c = config.colorize
    if not c.chroma_bins:
      return super().make_model(config, norm_axis_name)
    model_config = dict(config.model)
    if 'residual' in model_config:
      model_config['residual'] = False  # Features, not an image.
    inner = zoo.from_config(model_config, out_features=CLASSIFIER_FEATURES,
                            norm_axis_name=norm_axis_name)
    return zoo.ChromaClassifier(inner=inner, bins=c.chroma_bins,
                                chroma_max=float(c.chroma_max),
                                temperature=float(c.temperature))

  def loss(self, pred: Any, batch: dict[str, jax.Array], config: Any) -> Any:
    """Mean squared error of RGB; with chroma bins the rebalanced
    cross-entropy (`classification_loss`)."""
    if config is not None and config.colorize.chroma_bins:
      return classification_loss(pred, batch, config)
    return super().loss(pred, batch, config)

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
