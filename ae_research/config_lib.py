"""Checks a config before anything runs; one clear message per problem.

ml_collections already refuses unknown fields and wrong types on the command
line (with a locked config); `validate` checks the values: the shared fields
here, config.model's by its architecture's declaration (`archs.py`), each
task's own fields in its module (`check_config`).
"""

import os

import ml_collections

from ae_research import archs, checks, datasets, input_pipeline, pretrained
from ae_research import steps, tasks, zoo

ConfigError = checks.ConfigError  # What `validate` raises.


def _eval_dataset(x):
  return None if x == '' else datasets.check_name(x)


SHARED = {
    'task': checks.one_of(tasks.TASKS),
    'dataset': datasets.check_name,
    'eval_dataset': _eval_dataset,
    'eval_whole_images': checks.boolean,
    'eval_classical': checks.boolean,
    'seed': checks.non_negative,
    'input_pipeline': checks.one_of(input_pipeline.PIPELINES),
    'compute_dtype': checks.one_of(tuple(steps.COMPUTE_DTYPES)),
    'data_threads': checks.positive,
    'data_prefetch': checks.positive,
    'patch_size': checks.non_negative,
    'augment': checks.boolean,
    'shapes.image_size': checks.positive,
    'shapes.min_shapes': checks.non_negative,
    'shapes.max_shapes': checks.non_negative,
    'shapes.min_radius': checks.positive,
    'shapes.max_radius': checks.positive,
    'shapes.num_train': checks.positive,
    'shapes.num_test': checks.positive,
    'shapes.seed': checks.non_negative,
    'model.arch': checks.one_of(archs.names()),
    'optimizer.learning_rate': checks.positive_float,
    'optimizer.warmup_steps': checks.non_negative,
    'optimizer.final_lr_fraction': checks.fraction,
    'optimizer.b1': checks.fraction,
    'optimizer.b2': checks.fraction,
    'optimizer.weight_decay': checks.non_negative_float,
    'optimizer.grad_clip_norm': checks.non_negative_float,
    'batch_size': checks.positive,
    'eval_batch_size': checks.positive,
    'num_train_steps': checks.positive,
    'num_eval_examples': checks.positive,
    'log_every_steps': checks.positive,
    'eval_every_steps': checks.positive,
    'checkpoint_every_steps': checks.positive,
    'keep_checkpoints': checks.positive,
    'num_sample_images': checks.non_negative,
}


def _model(config: ml_collections.ConfigDict) -> list[str]:
  """The fields of config.model.arch's architecture, by its declaration."""
  return archs.get(config.model.arch).problems(config.model)


def _relations(config: ml_collections.ConfigDict, num_devices: int) -> list[str]:
  """Problems between fields that are each sane on their own."""
  found = []
  for name in ('batch_size', 'eval_batch_size'):
    if config[name] % num_devices:
      found.append(
          f'config.{name}={config[name]} must be divisible by the number of '
          f'devices ({num_devices}); for example '
          f'{num_devices * max(1, config[name] // num_devices)}')
  if config.optimizer.warmup_steps >= config.num_train_steps:
    found.append(
        f'config.optimizer.warmup_steps={config.optimizer.warmup_steps} must be '
        f'smaller than config.num_train_steps={config.num_train_steps}')
  if pretrained.is_name(config.init_from):
    name = config.init_from[len(pretrained.PREFIX):]
    if name not in pretrained.names():
      found.append(f'config.init_from={config.init_from!r} names no shipped '
                   f'model; the models are {list(pretrained.names())} (as '
                   "pretrained:NAME), or give a trained workdir, or ''")
  elif config.init_from and not os.path.exists(
      os.path.join(config.init_from, 'config.json')):
    found.append(f'config.init_from={config.init_from!r} holds no run (no '
                 "config.json); give a trained workdir, pretrained:NAME (a "
                 "shipped model), or '' to start afresh")
  factor = zoo.from_config(config.model, 3).downsampling
  why = f'{factor} (what config.model.arch={config.model.arch!r} downsamples by)'
  if config.patch_size and config.patch_size % factor:
    found.append(f'config.patch_size={config.patch_size} must be divisible by '
                 f'{why}')
  if config.input_pipeline == 'device':
    kind = datasets.parse(config.dataset)[0]
    if kind not in ('photos', 'folder') or not config.patch_size:
      found.append(
          "config.input_pipeline='device' keeps images on the device and "
          'crops patches from them: it needs config.dataset photos or '
          f'folder:PATH and config.patch_size > 0 (got {config.dataset!r}, '
          f"{config.patch_size}); use 'host' or 'auto'")
  s = config.shapes
  if s.min_shapes > s.max_shapes:
    found.append(f'config.shapes.min_shapes={s.min_shapes} must be <= '
                 f'config.shapes.max_shapes={s.max_shapes}')
  if s.min_radius > s.max_radius:
    found.append(f'config.shapes.min_radius={s.min_radius} must be <= '
                 f'config.shapes.max_radius={s.max_radius}')
  if 2 * s.max_radius + 1 > s.image_size:
    found.append(f'config.shapes.max_radius={s.max_radius} does not fit '
                 f'config.shapes.image_size={s.image_size}: use a radius '
                 f'<= {(s.image_size - 1) // 2}')
  if config.dataset == 'shapes' and s.image_size % factor:
    found.append(f'config.shapes.image_size={s.image_size} must be divisible '
                 f'by {why} so the decoder restores the input size')
  return found


def validate(config: ml_collections.ConfigDict, num_devices: int) -> None:
  """Raises ConfigError naming every impossible value and what is allowed
  (batch sizes must divide over `num_devices`, every device of every
  process)."""
  checks.raise_if(checks.problems(config, SHARED))
  checks.raise_if(_model(config))
  # Relations and the task's own fields assume each shared value is sane.
  task = tasks.get(config.task)
  checks.raise_if(_relations(config, num_devices) + task.check_config(config))
  if config.input_pipeline == 'device' and not task.on_device(config):
    checks.raise_if([
        f"config.input_pipeline='device': the {task.name} task cannot make "
        'its pairs on the device with '
        f'config.{task.group}={config[task.group].to_dict() if task.group else {}} '
        "(made by a host library); use 'host' or 'auto' (which picks the host)"])
