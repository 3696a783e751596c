"""Defaults every experiment derives from; not run by itself.

Each experiment's config calls `get_config()` here, changes what differs, and
calls `apply_variant(config, variant)` for the shared variants ('smoke').
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = 'colorize'
  config.seed = 0

  config.dataset = 'shapes'
  config.data_dir = ''  # '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  config.data_threads = 2
  config.data_prefetch = 4
  config.shapes = ml_collections.ConfigDict(dict(
      image_size=32, min_shapes=1, max_shapes=4, min_radius=3, max_radius=7,
      num_train=20000, num_test=1000, seed=0))

  # avgpool + pixel_shuffle is the fastest pair in jax on CPU
  # (benchmarks/train_speed.py --kinds); transposed convolutions are the
  # slowest, their weight gradient being slow in XLA:CPU.
  config.model = ml_collections.ConfigDict(dict(
      features=(16, 32), latent_features=32, blocks_per_level=1,
      downsample='avgpool', upsample='pixel_shuffle', norm='none',
      activation='relu', output_activation='none'))

  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=2e-3, warmup_steps=100, final_lr_fraction=0.01,
      b1=0.9, b2=0.999, weight_decay=0.0, grad_clip_norm=1.0))

  config.batch_size = 64  # Global: split over every device of every process.
  config.eval_batch_size = 128
  config.num_train_steps = 2500
  config.num_eval_examples = 1000  # At most this many test examples.
  config.log_every_steps = 100
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  config.async_checkpoints = True
  config.num_sample_images = 8
  return config


VARIANTS = ('', 'smoke')


def apply_variant(config: ml_collections.ConfigDict,
                  variant: str) -> ml_collections.ConfigDict:
  """'smoke' shrinks everything so a run exercises every part in seconds."""
  if variant not in VARIANTS:
    raise ValueError(f'config variant {variant!r} is unknown; choose one of '
                     f'{[v for v in VARIANTS if v]} or none')
  if variant == 'smoke':
    config.shapes.num_train = 256
    config.shapes.num_test = 64
    config.model.features = (8, 16)
    config.model.latent_features = 16
    config.batch_size = 16
    config.eval_batch_size = 32
    config.num_train_steps = 20
    config.optimizer.warmup_steps = 2
    config.num_eval_examples = 64
    config.log_every_steps = 5
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    config.num_sample_images = 4
  return config
