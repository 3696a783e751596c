"""Super-resolution x3 (x2, x4 by variant), scored on the Y channel.

  python -m ae_research.main --config=configs/super_resolution.py --workdir=runs/sr_x3
  python -m ae_research.main --config=configs/super_resolution.py --workdir=runs/sr_x3 \
      --mode=eval --config.eval_dataset=folder:../shared/testsets/Set5

Variants: x2, x4, smoke; the reference models (ae_research/zoo.py), which
take the low-resolution image and upsample at the end (sub-pixel layer):
espcn, fsrcnn, edsr (the EDSR baseline, 16 blocks x 64). Without one, the
model sees the bicubic upsampling of the low-resolution image and adds the
missing detail (residual). The baseline is bicubic. Trains on random patches
of the embedded photos; on T91, the field's small-budget set:
  python -m ae_research.main --config=configs/super_resolution.py:fsrcnn \
      --workdir=runs/fsrcnn_x3 --config.dataset=folder:../shared/trainsets/T91 \
      --config.eval_dataset=folder:../shared/testsets/Set5
"""

from configs import default


def _scale(s):
  def apply(config):
    config.sr.scale = s
    config.patch_size = 48
  return apply


def _arch(arch):
  def apply(config):
    default.use_arch(config, arch)
    config.augment = True  # The 8 flips and rotations, as the recipes do.
  return apply


def _autoencoder(config):
  """The design before the reference models: a residual autoencoder at full
  resolution on the bicubic upsampling."""
  default.photo_training(config)
  config.augment = False
  config.num_train_steps = 4000  # 21 minutes on 2 CPU cores.


def get_config(variant: str = ''):
  config = default.get_config('super_resolution')
  default.photo_training(config)
  config.sr.scale = 3
  # FSRCNN at low resolution, widened, adding its output to the bicubic
  # upsampling: on T91 it passes SRCNN's Set5 x3 in minutes on 2 CPU cores,
  # where the autoencoder on the bicubic input computes 9 times the pixels.
  default.use_arch(config, 'fsrcnn', width=64, shrink=24, bicubic_skip=True)
  config.augment = True
  config.batch_size = 32
  config.num_train_steps = 6000  # About 7 minutes on 2 CPU cores.
  config.eval_every_steps = 2000
  config.checkpoint_every_steps = 2000
  return default.apply_variant(config, variant, {
      'x2': _scale(2), 'x4': _scale(4),
      'autoencoder': _autoencoder,
      'espcn': _arch('espcn'), 'fsrcnn': _arch('fsrcnn'), 'edsr': _arch('edsr'),
  })
