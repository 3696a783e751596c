"""Super-resolution: PSNR (Y) by scale and model width, beside bicubic.

  python -m launch.local experiments/sr_scale_width.py --root=runs/sr_scale_width
  python -m launch.slurm experiments/sr_scale_width.py --root=runs/sr_scale_width \
      --time=02:00:00 --gpus=1

Scales 2, 3, 4 times widths 32 and 64 (the FSRCNN's feature channels): six
runs, each scored on the held-out photos with the protocol of the
literature (Y channel, scale pixels cropped). psnr_y.png has one line per
width and the bicubic baseline.
"""

from ae_research import sweep

STUDY = sweep.Study(
    name='sr_scale_width',
    config='configs/super_resolution.py',
    points=sweep.grid({'sr.scale': [2, 3, 4], 'model.width': [32, 64]}),
    metrics=['model.psnr_y', 'bicubic.psnr_y', 'model.ssim_y', 'bicubic.ssim_y'])
