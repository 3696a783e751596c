"""Denoising: a corrupted image in, the clean one out.

config.denoise.noise names one of `CORRUPTIONS`, each declared once below
as a `Corruption`: how it is made (one implementation, on the host and in
batches made on the device where it can be), its config.denoise fields and
their checks, its classical methods and what its baseline is called.

- 'gaussian': sigma on the 0-255 scale, or drawn from sigma_range (blind);
  scikit-image's non-local means (and CBM3D when the optional `bm3d` package
  is installed).
- 'salt_and_pepper': a fraction `amount` of pixels black or white; a 3x3
  median filter.
- 'mask' (random 8x8 blocks removed) and 'crosshair' (a thin dark cross):
  biharmonic inpainting of the known damaged pixels.
- 'jpeg': the image saved by Pillow's JPEG at a quality drawn from
  quality_range (host only: Pillow); no classical method, scored beside the
  JPEG image itself.

A model that takes the noise level (config.model.arch 'ffdnet') gets it as
one more input channel after the image: sigma / 255 at every pixel, the
sigma drawn for that image (blind training) or config.denoise.sigma.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import median_filter
from skimage.restoration import denoise_nl_means, inpaint_biharmonic

try:
  import bm3d  # Optional (pip install bm3d): CBM3D beside non-local means.
except ImportError:
  bm3d = None

from ae_research import archs, checks, color, corruptions, zoo
from ae_research import metrics as metrics_lib
from ae_research.tasks import base


def _no_classical(pair: dict[str, np.ndarray], c: Any) -> dict[str, np.ndarray]:
  del pair, c
  return {}


@dataclasses.dataclass(frozen=True)
class Corruption:
  """One corruption of the denoising experiment, declared whole.

  corrupt(clean, rng, config.denoise) -> {'input': the corrupted image,
  optionally 'damage' (HxWx1, 1 where pixels were destroyed) and 'sigma'
  (the noise level a noise-map model is told)}; `clean` is HxWx3 in [0, 1],
  numpy with a numpy Generator on the host, jax with a jax key on the device.
  """
  name: str  # config.denoise.noise
  corrupt: Callable[[Any, Any, Any], dict[str, Any]]
  # Its config.denoise fields: {name: (default, check)}; `checks` functions.
  fields: dict[str, tuple[Any, Callable[[Any], Any]]]
  # Problems between its fields, each sane on its own: c -> [messages].
  check: Callable[[Any], list[str]] = lambda c: []
  # (pair, config.denoise) -> {method: prediction} on one whole image.
  classical: Callable[[dict[str, np.ndarray], Any], dict[str, np.ndarray]] = _no_classical
  baseline_name: str = 'noisy input'  # The corrupted input, scored as is.
  on_device: bool = True  # `corrupt` runs traced with a jax key.
  has_level: bool = False  # It gives 'sigma' (noise-map models need it).
  # Destroys pixels at 0 in every channel: `apply` guesses them so.
  inpainting: bool = False


# ------------------------------------------------------------ Gaussian
def _sigma_range(c: Any) -> list[str]:
  lo, hi = c.sigma_range
  if not 0 <= lo <= hi:
    return [f'config.denoise.sigma_range={(lo, hi)} must be (low, high) with '
            '0 <= low <= high; (0, 0) means the fixed sigma']
  return []


def _two(rng: Any) -> tuple[Any, Any]:
  """Two independent streams: a numpy Generator draws on from its state, a
  jax key is split."""
  if isinstance(rng, np.random.Generator):
    return rng, rng
  first, second = jax.random.split(rng)
  return first, second


def _gaussian(clean, rng, c):
  level_rng, noise_rng = _two(rng)
  sigma = corruptions.draw_sigma(level_rng, c.sigma, tuple(c.sigma_range))
  return {'input': corruptions.gaussian_noise(clean, noise_rng, sigma),
          'sigma': sigma}


def _nl_means(noisy: np.ndarray, sigma: float) -> np.ndarray:
  s = sigma / 255.0
  return denoise_nl_means(noisy, h=0.8 * s, sigma=s, patch_size=5,
                          patch_distance=6, fast_mode=True,
                          channel_axis=-1).astype(np.float32)


def _gaussian_classical(pair, c):
  """Non-local means (and CBM3D): with a sigma range (blind), told the mean
  sigma."""
  noisy = np.clip(pair['input'][..., :3], 0.0, 1.0)
  lo, hi = c.sigma_range
  sigma = (lo + hi) / 2 if hi > lo else c.sigma
  out = {'nl_means': _nl_means(noisy, sigma)}
  if bm3d is not None:
    out['bm3d'] = np.asarray(bm3d.bm3d_rgb(noisy, sigma / 255.0), np.float32)
  return out


# ------------------------------------------------------------ the others
_AMOUNT = (0.1, checks.fraction)  # Shared by salt and pepper and the mask.


def _median(pair, c):
  del c
  return {'median_3x3': median_filter(np.clip(pair['input'][..., :3], 0.0, 1.0),
                                      size=(3, 3, 1))}


# config.denoise.inpaint: how a model meets pixels that were destroyed.
# '': it rewrites every pixel; 'told': it is told the damaged pixels (one
# more input channel) and changes only those; 'gated': it is not told, and
# learns where to change (zoo.Inpainter).
INPAINT_MODES = ('', 'told', 'gated')
_INPAINT = ('', checks.one_of(INPAINT_MODES))


def detect_damage(image: Any) -> Any:
  """The guess of the destroyed pixels that needs no telling: those at 0 in
  every channel (what the inpainting corruptions draw). HxWx1, 1 there."""
  xp = _array_lib(image)
  return xp.all(image[..., :3] <= 0.5 / 255.0, axis=-1,
                keepdims=True).astype(xp.float32)


def _biharmonic(pair, c):
  """Inpainting of the damaged pixels: told them ('biharmonic', beside a
  model that is told), and given the guess of `detect_damage`
  ('biharmonic_detected', beside a model that is not)."""
  del c
  noisy = np.clip(pair['input'][..., :3], 0.0, 1.0)
  fill = lambda hole: inpaint_biharmonic(noisy, hole, channel_axis=-1).astype(np.float32)
  return {'biharmonic': fill(pair['damage'][..., 0] > 0),
          'biharmonic_detected': fill(detect_damage(noisy)[..., 0] > 0)}


def _damaged(image_and_damage) -> dict[str, Any]:
  image, damage = image_and_damage
  return {'input': image, 'damage': damage}


def _quality_range(c: Any) -> list[str]:
  lo, hi = c.quality_range
  if not (1 <= lo <= hi <= 95 and int(lo) == lo and int(hi) == hi):
    return [f'config.denoise.quality_range={(lo, hi)} must be whole JPEG '
            'qualities (low, high) with 1 <= low <= high <= 95; (q, q) for '
            'one quality']
  return []


#: The corruptions config.denoise.noise can name, by name.
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in [
    Corruption(
        'gaussian', _gaussian,
        fields={'sigma': (25.0, checks.non_negative_float),
                'sigma_range': ((0.0, 0.0), lambda v: None)},
        check=_sigma_range, classical=_gaussian_classical, has_level=True),
    Corruption(
        'salt_and_pepper',
        lambda clean, rng, c: {'input': corruptions.salt_and_pepper(
            clean, rng, c.amount)},
        fields={'amount': _AMOUNT}, classical=_median),
    Corruption(
        'mask',
        lambda clean, rng, c: _damaged(corruptions.random_mask(clean, rng, c.amount)),
        fields={'amount': _AMOUNT, 'inpaint': _INPAINT}, classical=_biharmonic,
        inpainting=True),
    Corruption(
        'crosshair',
        lambda clean, rng, c: _damaged(corruptions.crosshair(
            clean, rng, c.crosshair_thickness)),
        fields={'crosshair_thickness': (1, checks.positive), 'inpaint': _INPAINT},
        classical=_biharmonic, inpainting=True),
    Corruption(
        'jpeg',
        lambda clean, rng, c: {'input': corruptions.jpeg(
            clean, rng, tuple(c.quality_range))},
        fields={'quality_range': ((10, 40), lambda v: None)},
        check=_quality_range, baseline_name='jpeg input', on_device=False),
]}


def _fields() -> dict[str, tuple[Any, Callable]]:
  """Every corruption's fields; a field two declare is the same field."""
  out = {}
  for c in CORRUPTIONS.values():
    for name, spec in c.fields.items():
      if name == 'noise':
        raise TypeError(f'corruption {c.name!r} declares the field noise, '
                        'which picks the corruption')
      if name in out and out[name] != spec:
        raise TypeError(f'corruption {c.name!r} declares config.denoise.{name} '
                        f'as {spec}, another as {out[name]}: one field, one '
                        'default and check')
      out[name] = spec
  return out


FIELDS = _fields()


def takes_noise_map(config: Any) -> bool:
  """Whether the model's input ends with a noise-level map."""
  return archs.get(config.model.arch).noise_map


def _array_lib(x: Any):
  return jnp if isinstance(x, jax.Array) else np


def with_noise_map(noisy: Any, sigma: Any) -> Any:
  """The image with one more channel: sigma / 255 everywhere."""
  xp = _array_lib(noisy)
  level = xp.full(noisy.shape[:2] + (1,), sigma / 255.0, xp.float32)
  return xp.concatenate([noisy.astype(xp.float32), level], -1)


class Denoise(base.Task):
  """A corrupted image in (config.denoise), the clean one out."""

  name = 'denoise'
  group = 'denoise'
  group_fixed_at_eval = False  # A run may be scored on other corruptions.

  def corruption(self, config: Any) -> Corruption:
    """The declared corruption config.denoise.noise names."""
    return CORRUPTIONS[config.denoise.noise]

  def group_defaults(self) -> dict[str, Any]:
    return {'noise': 'gaussian', **{k: d for k, (d, _) in FIELDS.items()}}

  def check_config(self, config: Any) -> list[str]:
    """config.denoise: the corruption and its fields."""
    found = checks.problems(config, {
        'denoise.noise': checks.one_of(tuple(CORRUPTIONS)),
        **{f'denoise.{k}': check for k, (_, check) in FIELDS.items()}})
    if found:
      return found
    corruption = self.corruption(config)
    found += corruption.check(config.denoise)
    if config.denoise.inpaint and not corruption.inpainting:
      with_holes = [c.name for c in CORRUPTIONS.values() if c.inpainting]
      found.append(f'config.denoise.inpaint={config.denoise.inpaint!r} is for '
                   f'damage that destroys pixels ({with_holes}), not '
                   f"config.denoise.noise={corruption.name!r}; use ''")
    if takes_noise_map(config) and not corruption.has_level:
      with_level = [c.name for c in CORRUPTIONS.values() if c.has_level]
      found.append(f'config.model.arch={config.model.arch!r} takes the noise '
                   f'level as an input: it denoises {with_level}, not '
                   f'config.denoise.noise={corruption.name!r}')
    return found

  def on_device(self, config: Any) -> bool:
    return self.corruption(config).on_device

  def input_channels(self, config: Any) -> int:
    told = config.denoise.inpaint == 'told'
    return 4 if takes_noise_map(config) or told else 3

  def make_model(self, config: Any, norm_axis_name: Optional[str] = None):
    """config.model; for config.denoise.inpaint 'told' or 'gated' inside a
    zoo.Inpainter, which changes only the pixels it should."""
    mode = config.denoise.inpaint
    if not mode:
      return super().make_model(config, norm_axis_name)
    model_config = dict(config.model)
    if mode == 'gated' and 'residual' in model_config:
      model_config['residual'] = False  # The gate keeps the input instead.
    inner = zoo.from_config(model_config, out_features=3 if mode == 'told' else 4,
                            norm_axis_name=norm_axis_name)
    return zoo.Inpainter(inner=inner, mode=mode)

  def make_pair(self, example: dict[str, Any], rng: Any,
                config: Any) -> dict[str, Any]:
    clean = base.pixels(example['image'])
    made = self.corruption(config).corrupt(clean, rng, config.denoise)
    pair = {'input': made['input'], 'target': clean}
    if takes_noise_map(config):
      pair.update(input=with_noise_map(made['input'], made['sigma']),
                  shown=made['input'])
    if 'damage' in made:
      pair['damage'] = made['damage']
    if config.denoise.inpaint == 'told':
      xp = _array_lib(made['input'])
      pair.update(input=xp.concatenate([made['input'], made['damage']], -1),
                  shown=made['input'])
    return pair

  def metrics(self, pred: Any, batch: dict[str, jax.Array], config: Any):
    """RGB PSNR and SSIM, and PSNR on the Y channel (the JPEG artifact
    literature's, e.g. ARCNN's)."""
    del config
    out = metrics_lib.rgb_psnr_ssim(pred, batch)
    y = lambda x: color.rgb_to_y(jnp.clip(x, 0.0, 1.0))
    out['psnr_y'] = metrics_lib.mean_over_batch(
        metrics_lib.psnr(y(pred), y(batch['target'])), batch['mask'])
    return out

  def baseline_name(self, config: Any) -> str:
    return self.corruption(config).baseline_name

  def classical(self, pair: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
    return self.corruption(config).classical(pair, config.denoise)

  def apply_pair(self, image: np.ndarray, config: Any) -> dict[str, Any]:
    """A user's corrupted image as the model's input. A gray image goes in as
    RGB and comes out gray. For the inpainting corruptions, the damaged pixels
    the classical method fills are guessed as those at the corruption's value
    (black in every channel). A model that takes the noise level is told
    config.denoise.sigma."""
    pair = super().apply_pair(image, config)
    if takes_noise_map(config):
      pair['input'] = with_noise_map(pair['input'], config.denoise.sigma)
    if self.corruption(config).inpainting:
      pair['damage'] = detect_damage(pair['shown'])
      if config.denoise.inpaint == 'told':
        pair['input'] = np.concatenate([pair['input'], pair['damage']], -1)
    return pair
