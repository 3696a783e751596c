"""Denoising: how PSNR falls as the noise rises, beside non-local means.

  python -m launch.local experiments/denoise_sigma.py --root=runs/denoise_sigma --parallel=2
  python -m launch.slurm experiments/denoise_sigma.py --root=runs/denoise_sigma --time=01:00:00

One run per training noise level (sigma 15, 25, 50 on the 0-255 scale),
each scored on the held-out photos at its own sigma; the table and psnr.png
put the model beside the noisy input and non-local means.
"""

from ae_research import sweep

STUDY = sweep.Study(
    name='denoise_sigma',
    config='configs/denoise.py',
    points=sweep.grid({'denoise.sigma': [15.0, 25.0, 50.0]}),
    metrics=['model.psnr', 'nl_means.psnr', 'noisy input.psnr',
             'model.ssim', 'nl_means.ssim'])
