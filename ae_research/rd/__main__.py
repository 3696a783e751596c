"""The RD report: trained compression runs beside JPEG and WebP.

  python -m ae_research.rd --workdirs=runs/rd/lambda_0.003,runs/rd/lambda_0.01 \
      --output=runs/rd/report [--dataset=folder:PATH] [--published=kodak]

codes every image of the data set with each run's codec (one point per run)
and writes results.json, results.md (every point and the BD-rates) and
rd_psnr.png, rd_ms_ssim.png with every curve. Every learned curve gets its
BD-rates against JPEG, WebP, the other learned curves and, with --published,
the published curves of that test set (drawn dashed).
"""

import argparse
import os
import sys

import numpy as np

from ae_research import datasets, errors, rd, summaries
from ae_research import workdir as workdir_lib


def _images(source, max_images: int) -> list[tuple[str, np.ndarray]]:
  """(name, uint8 image) of the first `max_images` of `source` (<= 0: all)."""
  n = len(source) if max_images <= 0 else min(max_images, len(source))
  images = []
  for i in range(n):
    example = source[i]
    label = example.get('name', i)
    images.append((label.decode() if isinstance(label, bytes) else str(label),
                   np.asarray(example['image'], np.uint8)))
  return images


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m ae_research.rd',
      description='Rate-distortion curves of trained compression runs beside '
                  'JPEG and WebP, BD-rates, plots.')
  parser.add_argument('--workdirs', required=True,
                      help='comma-separated compression runs (one point each)')
  parser.add_argument('--output', required=True, help='folder for the report')
  parser.add_argument('--dataset', default='',
                      help="'' (the runs' test split), or folder:PATH, tfds:NAME")
  parser.add_argument('--max_images', type=int, default=0)
  parser.add_argument('--published', default='', choices=['', *rd.PUBLISHED],
                      help='also draw (dashed) and compare with the published '
                           'curves of this test set (rd.PUBLISHED)')
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args(argv)
  workdirs = [w for w in args.workdirs.split(',') if w]
  report = os.path.join(args.output, 'results.json')
  try:
    if os.path.exists(report) and not args.overwrite:
      raise errors.UserError(f'{report} exists; pass --overwrite or another '
                             '--output')
    codecs = [workdir_lib.load_codec(w) for w in workdirs]
    config = codecs[0].config
    name = args.dataset or config.get('eval_dataset') or config.dataset
    source = datasets.get_source(config, 'test', name)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  images = _images(source, args.max_images)
  learned: dict[str, list] = {}
  per_run = {}
  for w, c in zip(workdirs, codecs):
    rows = [rd.code_image(c, img)[0] for _, img in images]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    mean['setting'] = os.path.basename(os.path.normpath(w))
    label = (f'learned {c.config.compress.model}')
    learned.setdefault(label, []).append(mean)
    per_run[w] = {'mean': mean, 'images': dict(zip([n for n, _ in images], rows)),
                  'lambda': c.config.compress.lmbda, 'model': c.config.compress.model}
    print(f'{w}: bpp {mean["bpp"]:.4f} (estimated {mean["bpp_estimated"]:.4f}), '
          f'PSNR {mean["psnr"]:.2f}, MS-SSIM {mean["ms_ssim"]:.4f}', flush=True)
  classical = rd.classical_curves(images)
  published = rd.PUBLISHED.get(args.published, {})
  anchors = {k: v['mean'] for k, v in classical.items()}
  # Every learned curve against JPEG, WebP, the other learned curves and
  # the published ones.
  bd, bd_md = rd.bd_table(learned, {**anchors, **learned, **published})
  curves = {**learned, **anchors, **published}
  os.makedirs(args.output, exist_ok=True)
  for m in rd.METRICS:
    rd.plot(curves, os.path.join(args.output, f'rd_{m}.png'), m,
           title=f'{name}: {len(images)} images', dashed=list(published))
  summaries.write_json(report, {'dataset': name, 'images': [n for n, _ in images],
                                'runs': per_run, 'curves': curves, 'bd_rate': bd})
  md = f'# Rate-distortion on {name} ({len(images)} images)\n\n'
  if published:
    md += (f'Published curves (dashed on the plots): '
           f'{rd.PUBLISHED_SOURCE[args.published]}.\n\n')
  md += f'{bd_md}\n{rd.curve_table(curves)}'
  summaries.write_text(os.path.join(args.output, 'results.md'), md)
  print(md)
  return 0


if __name__ == '__main__':
  sys.exit(main())
