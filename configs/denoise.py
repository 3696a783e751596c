"""Denoising photographs: Gaussian noise (sigma 25) by default.

  python -m ae_research.main --config=configs/denoise.py --workdir=runs/denoise
  python -m ae_research.main --config=configs/denoise.py:crosshair --workdir=runs/crosshair
  python -m ae_research.main --config=configs/denoise.py --workdir=runs/denoise \
      --mode=eval --config.eval_dataset=folder:../shared/testsets/Set14

Variants: blind (sigma drawn from 0-50), salt_and_pepper, mask, crosshair,
jpeg (artifacts of JPEG qualities 10-40),
and smoke (seconds); the reference models (ae_research/zoo.py): dncnn
(17 x 64, batch norm, predicts the noise), ffdnet (half resolution, the noise
level as an input map; with blind, one model for sigma 0-50) and unet.
Trains on random patches of the embedded photos, scores whole held-out photos
beside the noisy input and non-local means (and CBM3D with the `bm3d` extra).
On the standard sets, e.g. DnCNN's color recipe:
  python -m ae_research.main --config=configs/denoise.py:dncnn --workdir=runs/cdncnn \
      --config.dataset=folder:../shared/trainsets/CBSD432 \
      --config.eval_dataset=folder:../shared/testsets/Kodak24
"""

from configs import default


def _noise(kind, **fields):
  def apply(config):
    config.denoise.noise = kind
    for k, v in fields.items():
      config.denoise[k] = v
  return apply


def _arch(arch, patch_size, **fields):
  def apply(config):
    default.use_arch(config, arch, **fields)
    config.patch_size = patch_size
    config.augment = True  # The 8 flips and rotations, as the recipes do.
  return apply


def get_config(variant: str = ''):
  config = default.get_config('denoise')
  default.photo_training(config)
  # Lossless downsampling: average pooling discards the pixel-level noise the
  # residual model must subtract (25.8 against 29.4 dB after 1000 steps).
  config.model.downsample = 'space_to_depth'
  return default.apply_variant(config, variant, {
      'blind': _noise('gaussian', sigma_range=(0.0, 50.0)),
      'salt_and_pepper': _noise('salt_and_pepper', amount=0.1),
      'mask': _noise('mask', amount=0.2),
      'crosshair': _noise('crosshair', crosshair_thickness=2),
      # JPEG artifacts: Pillow's JPEG at a quality drawn from 10 to 40.
      'jpeg': _noise('jpeg', quality_range=(10, 40)),
      'dncnn': _arch('dncnn', patch_size=40),
      # Residual: FFDNet as published predicts the clean image, and on a CPU
      # budget learns slowly that way (Kodak24 22.2 dB after 6.6 minutes).
      'ffdnet': _arch('ffdnet', patch_size=48, residual=True),
      'unet': _arch('unet', patch_size=48),
  })
