"""Checks a config before anything runs; one clear message per problem.

ml_collections already refuses unknown fields and wrong types on the command
line (with a locked config); `validate` checks the values.
"""

import os
from typing import Any, Callable, Optional

import ml_collections

from ae_research import compression, datasets, models, tasks


class ConfigError(ValueError):
  """A config value is impossible; the message names the field."""


def _positive(x) -> Optional[str]:
  return None if isinstance(x, int) and x > 0 else 'a positive integer'


def _non_negative(x) -> Optional[str]:
  return None if isinstance(x, int) and x >= 0 else 'an integer >= 0'


def _positive_float(x) -> Optional[str]:
  return None if isinstance(x, (int, float)) and x > 0 else 'a number > 0'


def _fraction(x) -> Optional[str]:
  return None if isinstance(x, (int, float)) and 0 <= x <= 1 else 'a number in [0, 1]'


def _non_negative_float(x) -> Optional[str]:
  return None if isinstance(x, (int, float)) and x >= 0 else 'a number >= 0'


def _bool(x) -> Optional[str]:
  return None if isinstance(x, bool) else 'True or False'


def _one_of(choices) -> Callable[[Any], Optional[str]]:
  def check(x):
    return None if x in choices else f'one of {sorted(choices)}'
  return check


def _positive_ints(x) -> Optional[str]:
  ok = (isinstance(x, (tuple, list)) and len(x) > 0 and
        all(isinstance(v, int) and v > 0 for v in x))
  return None if ok else 'a non-empty tuple of positive integers, e.g. (32, 64)'


def _checks() -> dict[str, Callable[[Any], Optional[str]]]:
  return {
      'task': _one_of(tasks.TASKS),
      'dataset': datasets.check_name,
      'seed': _non_negative,
      'data_threads': _positive,
      'data_prefetch': _positive,
      'patch_size': _non_negative,
      'shapes.image_size': _positive,
      'shapes.min_shapes': _non_negative,
      'shapes.max_shapes': _non_negative,
      'shapes.min_radius': _positive,
      'shapes.max_radius': _positive,
      'shapes.num_train': _positive,
      'shapes.num_test': _positive,
      'shapes.seed': _non_negative,
      'model.features': _positive_ints,
      'model.latent_features': _positive,
      'model.blocks_per_level': _non_negative,
      'model.downsample': _one_of(models.DOWNSAMPLE_KINDS),
      'model.upsample': _one_of(models.UPSAMPLE_KINDS),
      'model.norm': _one_of(models.NORM_KINDS),
      'model.activation': _one_of(models.ACTIVATIONS),
      'model.output_activation': _one_of(models.OUTPUT_ACTIVATIONS),
      'model.residual': _bool,
      'eval_whole_images': _bool,
      'eval_dataset': lambda x: None if x == '' else datasets.check_name(x),
      'denoise.noise': _one_of(('gaussian', 'salt_and_pepper', 'mask', 'crosshair')),
      'denoise.sigma': _non_negative_float,
      'denoise.amount': _fraction,
      'denoise.crosshair_thickness': _positive,
      'sr.scale': _one_of((2, 3, 4)),
      'compress.model': _one_of(compression.MODELS),
      'compress.lmbda': _positive_float,
      'compress.bits': _one_of(tuple(range(1, 17))),
      'optimizer.learning_rate': _positive_float,
      'optimizer.warmup_steps': _non_negative,
      'optimizer.final_lr_fraction': _fraction,
      'optimizer.b1': _fraction,
      'optimizer.b2': _fraction,
      'optimizer.weight_decay': _non_negative_float,
      'optimizer.grad_clip_norm': _non_negative_float,
      'batch_size': _positive,
      'eval_batch_size': _positive,
      'num_train_steps': _positive,
      'num_eval_examples': _positive,
      'log_every_steps': _positive,
      'eval_every_steps': _positive,
      'checkpoint_every_steps': _positive,
      'keep_checkpoints': _positive,
      'num_sample_images': _non_negative,
  }


def _get(config, dotted: str):
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return value


def validate(config: ml_collections.ConfigDict, num_devices: int,
             num_processes: int = 1) -> None:
  """Raises ConfigError naming every impossible value and what is allowed."""
  problems = []
  for field, check in _checks().items():
    try:
      value = _get(config, field)
    except (KeyError, AttributeError):
      problems.append(f'config.{field} is missing')
      continue
    allowed = check(value)
    if allowed is not None:
      problems.append(f'config.{field}={value!r} is not allowed: use {allowed}')
  if problems:  # Relations below assume each value is sane on its own.
    raise ConfigError('invalid config:\n  ' + '\n  '.join(problems))

  for name in ('batch_size', 'eval_batch_size'):
    if config[name] % num_devices:
      problems.append(
          f'config.{name}={config[name]} must be divisible by the number of '
          f'devices ({num_devices}); for example {num_devices * max(1, config[name] // num_devices)}')
  if config.optimizer.warmup_steps >= config.num_train_steps:
    problems.append(
        f'config.optimizer.warmup_steps={config.optimizer.warmup_steps} must be '
        f'smaller than config.num_train_steps={config.num_train_steps}')
  lo, hi = config.denoise.sigma_range
  if not 0 <= lo <= hi:
    problems.append(f'config.denoise.sigma_range={(lo, hi)} must be (low, high) '
                    'with 0 <= low <= high; (0, 0) means the fixed sigma')
  if config.init_from and not os.path.exists(
      os.path.join(config.init_from, 'config.json')):
    problems.append(f'config.init_from={config.init_from!r} holds no run (no '
                    "config.json); give a trained workdir, or '' to start afresh")
  if config.task == 'compress' and not config.eval_whole_images:
    problems.append('config.eval_whole_images=False: compression is scored on '
                    'the real files of whole images; set it to True')
  if config.task == 'compress' and config.dataset == 'shapes':
    problems.append("config.dataset='shapes' has 32x32 images; compression "
                    'needs photos (MS-SSIM wants sides of 161 pixels or more): '
                    "use 'photos', folder:PATH or tfds:NAME")
  if config.task == 'super_resolution' and config.patch_size % config.sr.scale:
    problems.append(f'config.patch_size={config.patch_size} must be a multiple '
                    f'of config.sr.scale={config.sr.scale}')
  if (config.patch_size and config.patch_size % 2 ** len(config.model.features)):
    problems.append(
        f'config.patch_size={config.patch_size} must be divisible by '
        f'{2 ** len(config.model.features)} (2 ** len(config.model.features))')
  s = config.shapes
  if s.min_shapes > s.max_shapes:
    problems.append(f'config.shapes.min_shapes={s.min_shapes} must be <= '
                    f'config.shapes.max_shapes={s.max_shapes}')
  if s.min_radius > s.max_radius:
    problems.append(f'config.shapes.min_radius={s.min_radius} must be <= '
                    f'config.shapes.max_radius={s.max_radius}')
  if 2 * s.max_radius + 1 > s.image_size:
    problems.append(f'config.shapes.max_radius={s.max_radius} does not fit '
                    f'config.shapes.image_size={s.image_size}: use a radius '
                    f'<= {(s.image_size - 1) // 2}')
  factor = 2 ** len(config.model.features)
  if s.image_size % factor and config.dataset == 'shapes':
    problems.append(
        f'config.shapes.image_size={s.image_size} must be divisible by '
        f'{factor} (2 ** len(config.model.features)) so the decoder '
        f'restores the input size')
  if problems:
    raise ConfigError('invalid config:\n  ' + '\n  '.join(problems))
