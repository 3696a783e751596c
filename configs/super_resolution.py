"""Super-resolution x3 (x2, x4 by variant), scored on the Y channel.

  python -m ae_research.main --config=configs/super_resolution.py --workdir=runs/sr_x3
  python -m ae_research.main --config=configs/super_resolution.py --workdir=runs/sr_x3 \
      --mode=eval --config.eval_dataset=folder:../shared/testsets/Set5

Variants: x2, x4, smoke. The model sees the bicubic upsampling of the
low-resolution image and adds the missing detail (residual); the baseline is
bicubic. Trains on random patches of the embedded photos.
"""

from configs import default


def _scale(s):
  def apply(config):
    config.sr.scale = s
    config.patch_size = 48
  return apply


def get_config(variant: str = ''):
  config = default.get_config()
  config.task = 'super_resolution'
  default.photo_training(config)
  config.sr.scale = 3
  config.num_train_steps = 4000  # 21 minutes on 2 CPU cores.
  return default.apply_variant(config, variant, {'x2': _scale(2), 'x4': _scale(4)})
