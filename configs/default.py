"""Defaults every experiment derives from; not run by itself.

Each experiment's config calls `get_config()` here, changes what differs, and
calls `apply_variant(config, variant)` for the shared variants ('smoke').
"""

import ml_collections

from ae_research import defaults


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = 'colorize'
  config.seed = 0

  config.dataset = 'shapes'
  config.data_dir = ''  # '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  # Where training batches are made. 'device': the decoded training images
  # are kept on the accelerator and each batch (crops, flips, corruption) is
  # made by jitted code (ae_research/device_data.py); 'host': grain on the
  # host, for any data; 'auto': the device when the source is images that
  # fit (the embedded photos, folders) and config.patch_size > 0.
  config.input_pipeline = 'auto'
  config.data_threads = 2  # The host pipeline's.
  config.data_prefetch = 4
  # 'bfloat16': the model computes in bfloat16 (parameters, optimizer
  # state, loss and normalization statistics stay float32; steps.py).
  config.compute_dtype = 'float32'
  config.eval_dataset = ''  # '' means the test split of config.dataset.
  # Score whole images of any size (one at a time, beside the task's
  # classical methods) instead of fixed-size batches.
  config.eval_whole_images = False
  # Whole-image scoring runs the task's classical methods beside the model
  # (CBM3D takes about a minute per Kodak image on 2 cores); False skips them.
  config.eval_classical = True
  config.patch_size = 0  # > 0: train on random square crops of this size.
  # Train on one of the 8 flips and rotations of each crop, drawn at random.
  config.augment = False
  # For config.dataset='tfds:NAME': the split names and the image's key.
  config.tfds_splits = ml_collections.ConfigDict(dict(train='train', test='test'))
  config.tfds_image_key = 'image'
  config.denoise = ml_collections.ConfigDict(dict(
      noise='gaussian', sigma=25.0, sigma_range=(0.0, 0.0), amount=0.1,
      crosshair_thickness=1))
  config.sr = ml_collections.ConfigDict(dict(scale=3))
  # lmbda weighs distortion against rate: lmbda * 255^2 * MSE + bpp.
  config.compress = ml_collections.ConfigDict(dict(
      model='factorized', lmbda=0.01, bits=4,
      # The hyperprior models' hyper latent: its channels (N of h_a, h_s).
      hyper_features=128))
  config.shapes = ml_collections.ConfigDict(defaults.SHAPES)
  # The model: config.model.arch names one of ae_research/zoo.py's, the
  # other fields are that architecture's (ae_research/defaults.py ARCHS);
  # `use_arch` below switches a config to another one.
  config.model = ml_collections.ConfigDict(
      dict(arch='autoencoder', **defaults.AUTOENCODER))

  # A workdir whose latest parameters start this run (fine-tuning); '' for
  # a fresh initialization.
  config.init_from = ''
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
  unknown = set(fields) - set(defaults.ARCHS[arch])
  if unknown:
    raise ValueError(f'{arch} has no field(s) {sorted(unknown)}; its fields: '
                     f'{sorted(defaults.ARCHS[arch])}')
  config.model = ml_collections.ConfigDict(
      dict(arch=arch, **{**defaults.ARCHS[arch], **fields}))


VARIANTS = ('smoke',)
# What 'smoke' shrinks each architecture to.
SMOKE_MODEL = dict(
    autoencoder=dict(features=(8, 16), latent_features=16),
    unet=dict(features=(8, 16)),
    dncnn=dict(depth=4, width=8),
    ffdnet=dict(depth=4, width=8),
    espcn=dict(widths=(8, 8)),
    fsrcnn=dict(width=8, shrink=4, mapping_layers=1),
    edsr=dict(num_blocks=1, width=8),
)
assert set(SMOKE_MODEL) == set(defaults.ARCHS)


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
    for k, v in SMOKE_MODEL[config.model.arch].items():
      config.model[k] = v
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
