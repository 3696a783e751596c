"""Compression: the rate-distortion curve over lambda, against JPEG and WebP.

  python -m launch.local experiments/compress_lambda.py --root=runs/compress_lambda --parallel=2
  python -m launch.slurm experiments/compress_lambda.py --root=runs/compress_lambda --time=01:00:00

One codec per lambda, trained from scratch (experiments/compress_rd.py also
fine-tunes the high rates from a trained codec). Besides the table and the
plots against lambda, `analyze` writes rd.md and rd_psnr.png: bpp of the
real files and PSNR, the JPEG and WebP curves of the same images, and the
BD-rates.
"""

import json
import os

from ae_research import rd, sweep

STUDY = sweep.Study(
    name='compress_lambda',
    config='configs/compress.py',
    points=sweep.grid({'compress.lmbda': [0.0015, 0.003, 0.006, 0.012]}),
    metrics=['model.bpp', 'model.psnr', 'jpeg.psnr', 'webp.psnr',
             'model.ms_ssim'])


def analyze(rows, root):
  """The learned points as an RD curve beside the classical curves, which
  every run's evaluation measured on the same images."""
  with open(os.path.join(root, rows[0]['name'], 'eval', 'results.json')) as f:
    classical = json.load(f)['curves']
  learned = sorted(({'bpp': r['model.bpp'], 'psnr': r['model.psnr'],
                     'ms_ssim': r['model.ms_ssim']} for r in rows),
                   key=lambda p: p['bpp'])
  curves = {'model': learned, **classical}
  rd.plot(curves, os.path.join(root, 'rd_psnr.png'), 'psnr')
  with open(os.path.join(root, 'rd.md'), 'w') as f:
    f.write(rd.curve_table(curves) + '\n' + rd.bd_table({'model': learned}, classical)[1])
