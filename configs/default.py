"""Defaults every experiment derives from; not run by itself.

Each experiment's config calls `get_config()` here, changes what differs, and
calls `apply_variant(config, variant)` for the shared variants ('smoke').
"""

import ml_collections

from ae_research import archs, base_config


def get_config(task: str = 'colorize') -> ml_collections.ConfigDict:
  """The shared defaults and the group of `task`
  (`ae_research.base_config.get_config`)."""
  return base_config.get_config(task)


def photo_training(config: ml_collections.ConfigDict) -> None:
  """Shared by the photo experiments: random patches of the embedded photos,
  whole held-out photos scored, a residual model at half resolution."""
  config.dataset = 'photos'
  config.eval_whole_images = True
  config.patch_size = 48
  config.batch_size = 16
  use_arch(config, 'autoencoder', features=(64,), latent_features=64,
           blocks_per_level=3, residual=True)
  config.num_train_steps = 3000
  config.eval_every_steps = 1000
  config.checkpoint_every_steps = 1000


def use_arch(config: ml_collections.ConfigDict, arch: str, **fields) -> None:
  """config.model becomes architecture `arch` with its default fields,
  changed by `fields`."""
  config.model = ml_collections.ConfigDict(archs.get(arch).config(**fields))


VARIANTS = ('smoke',)


def apply_variant(config: ml_collections.ConfigDict, variant: str,
                  own: dict | None = None) -> ml_collections.ConfigDict:
  """Applies comma-separated named variants, e.g. 'crosshair,smoke'.

  `own` maps (in the order they are applied) an experiment's own variant names to functions that change the
  config; 'smoke' (shared) shrinks everything so a run exercises every part
  in seconds, and is applied last.
  """
  own = own or {}
  names = [v for v in variant.split(',') if v]
  known = sorted(set(own) | set(VARIANTS))
  for name in names:
    if name not in known:
      raise ValueError(f'config variant {name!r} is unknown; choose one of '
                       f'{known}, several joined by commas, or none')
  for name in own:  # In the experiment's order, whatever the user's.
    if name in names:
      own[name](config)
  if 'smoke' in names:
    config.shapes.num_train = 256
    config.shapes.num_test = 64
    # Each architecture's smoke sizes are in its declaration (archs.py).
    config.model.update(archs.get(config.model.arch).smoke)
    config.batch_size = 16
    config.eval_batch_size = 32
    config.num_train_steps = 20
    config.optimizer.warmup_steps = 2
    config.num_eval_examples = 64
    config.log_every_steps = 5
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    config.num_sample_images = 4
    if config.patch_size:
      config.patch_size = 24
  return config
