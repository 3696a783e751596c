"""Colorization: gray in, color out.

Shapes (default): circles must come out red, squares blue.
  python -m ae_research.main --config=configs/colorize.py --workdir=runs/colorize
Photographs (the embedded photo set, trained on patches, scored on whole
held-out photos beside the gray input):
  python -m ae_research.main --config=configs/colorize.py:photos --workdir=runs/colorize_photos
With a U-Net (encoder features concatenated into the decoder):
  python -m ae_research.main --config=configs/colorize.py:photos,unet --workdir=runs/colorize_unet
Predicting a distribution over colours (chroma bins, Zhang et al. 2016)
instead of regressing to their washed-out mean:
  python -m ae_research.main --config=configs/colorize.py:photos,unet,classify --workdir=runs/colorize_bins
Any variant with ',smoke' appended runs in seconds.
"""

from configs import default


def _photos(config):
  default.photo_training(config)  # Residual: starts from the gray image.
  config.patch_size = 64
  config.model.features = (32, 64, 64)  # Color needs a wider view.
  config.model.blocks_per_level = 1
  config.num_train_steps = 1500  # 6 minutes on 2 CPU cores.
  config.eval_every_steps = 500


def _classify(config):
  # 13 x 13 bins of (Cb, Cr) 1/15 apart over [-0.4, 0.4] (17 levels of 255;
  # the annealed mean falls between them). 17 x 17, as fine as the paper's
  # bins of 10 in the ab plane, trains at half the speed on 2 CPU cores.
  config.colorize.chroma_bins = 13


def get_config(variant: str = ''):
  config = default.get_config('colorize')
  config.dataset = 'shapes'
  return default.apply_variant(config, variant, {
      'photos': _photos,
      'classify': _classify,
      'unet': lambda c: default.use_arch(c, 'unet', residual=c.dataset != 'shapes'),
  })
