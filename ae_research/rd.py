"""Rate-distortion evaluation: learned codecs beside JPEG and WebP.

Every rate is a real file's size: the codec's `.aec` file, Pillow's JPEG
(`quality`, 4:2:0, optimized Huffman tables) or WebP (`quality`, method 6).
Distortion is RGB PSNR and MS-SSIM of the decoded 8-bit image. Curves are
averaged over images at each quality, as the Kodak results in papers are.

  python -m ae_research.rd --workdirs=runs/rd/lambda_0.003,runs/rd/lambda_0.01 \
      --output=runs/rd/report [--dataset=folder:PATH]

writes results.json, results.md (every point and BD-rates) and rd_psnr.png,
rd_ms_ssim.png with every curve.
"""

import io
import os
import sys
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import metrics, summaries

QUALITIES = {'jpeg': (1, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 75, 90),
             'webp': (0, 2, 5, 10, 20, 30, 40, 50, 60, 75, 90)}
METRICS = ('psnr', 'ms_ssim')


def classical_roundtrip(image: np.ndarray, codec: str, quality: int):
  """(file bytes, decoded uint8 image) through Pillow's JPEG or WebP."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
  buf = io.BytesIO()
  if codec == 'jpeg':
    img.save(buf, format='JPEG', quality=quality, optimize=True)
  elif codec == 'webp':
    img.save(buf, format='WEBP', quality=quality, method=6)
  else:
    raise ValueError(f'codec {codec!r}; choose jpeg or webp')
  data = buf.getvalue()
  with Image.open(io.BytesIO(data)) as decoded:
    out = np.asarray(decoded.convert(img.mode))
  return data, out.reshape(image.shape)


@jax.jit
def _psnr_ms_ssim(a, b):
  return metrics.psnr(a, b), metrics.ms_ssim(a, b)


def quality(decoded: np.ndarray, original: np.ndarray) -> dict[str, float]:
  """RGB PSNR and MS-SSIM of a decoded uint8 image against the original."""
  a = jnp.asarray(decoded[None], jnp.float32) / 255.0
  b = jnp.asarray(original[None], jnp.float32) / 255.0
  p, m = _psnr_ms_ssim(a, b)
  return {'psnr': float(p[0]), 'ms_ssim': float(m[0])}


def point(num_bytes: int, decoded: np.ndarray, original: np.ndarray) -> dict[str, float]:
  h, w = original.shape[:2]
  return {'bpp': 8.0 * num_bytes / (h * w), **quality(decoded, original)}


def classical_curves(images: Sequence[tuple[str, np.ndarray]],
                     qualities: dict[str, Iterable[int]] = QUALITIES):
  """{codec: {'mean': [point per quality], 'images': {name: [point...]}}}."""
  curves = {}
  for codec, qs in qualities.items():
    per_image = {}
    for name, image in images:
      per_image[name] = []
      for q in qs:
        data, decoded = classical_roundtrip(image, codec, q)
        per_image[name].append({'quality': q, **point(len(data), decoded, image)})
    mean = [{'quality': q, **{k: float(np.mean([per_image[n][i][k] for n in per_image]))
                               for k in ('bpp',) + METRICS}}
            for i, q in enumerate(qs)]
    curves[codec] = {'mean': mean, 'images': per_image}
  return curves


def _monotone(points: Sequence[dict], metric: str):
  """(log10 rates, metric values) sorted by rate, keeping the upper hull
  where a higher rate gave no better quality."""
  pts = sorted(points, key=lambda p: p['bpp'])
  rates, values = [], []
  for p in pts:
    if not values or p[metric] > values[-1]:
      rates.append(np.log10(p['bpp']))
      values.append(p[metric])
  return np.array(rates), np.array(values)


def interpolate(points: Sequence[dict], bpp: float, metric: str = 'psnr'):
  """The metric of a curve at `bpp` (linear in log rate); None outside it."""
  rates, values = _monotone(points, metric)
  r = np.log10(bpp)
  if len(rates) < 2 or not rates[0] <= r <= rates[-1]:
    return None
  return float(np.interp(r, rates, values))


def bd_rate(test: Sequence[dict], anchor: Sequence[dict],
            metric: str = 'psnr') -> float | None:
  """Bjontegaard delta rate of `test` against `anchor`, in percent.

  The average difference of log rate at equal quality over the qualities
  both curves reach (piecewise-cubic monotone interpolation of log rate
  against quality, as in the current Bjontegaard reference code); negative
  means `test` needs fewer bits. None when the curves share no quality
  range or one has fewer than two points.
  """
  from scipy.interpolate import PchipInterpolator  # pylint: disable=g-import-not-at-top
  (rt, qt), (ra, qa) = _monotone(test, metric), _monotone(anchor, metric)
  if len(qt) < 2 or len(qa) < 2:
    return None
  lo, hi = max(qt[0], qa[0]), min(qt[-1], qa[-1])
  if hi <= lo:
    return None
  grid = np.linspace(lo, hi, 1001)
  diff = PchipInterpolator(qt, rt)(grid) - PchipInterpolator(qa, ra)(grid)
  return float((10 ** (np.trapezoid(diff, grid) / (hi - lo)) - 1) * 100)


def plot(curves: dict[str, Sequence[dict]], path: str, metric: str = 'psnr',
         title: str = '') -> None:
  """One line per curve: metric against bits per pixel, to a PNG."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=120)
  for name, pts in curves.items():
    pts = sorted(pts, key=lambda p: p['bpp'])
    style = 'o-' if len(pts) > 1 else 'o'
    ax.plot([p['bpp'] for p in pts], [p[metric] for p in pts], style,
            label=name, markersize=4 if len(pts) > 1 else 8)
  ax.set_xlabel('bits per pixel (file size)')
  ax.set_ylabel({'psnr': 'RGB PSNR (dB)', 'ms_ssim': 'MS-SSIM'}[metric])
  learned = [p['bpp'] for n, pts in curves.items()
             if n not in QUALITIES for p in pts]
  ax.set_xlim(0, max(1.0, 1.5 * max(learned, default=0.0)))
  ax.grid(True, alpha=0.3)
  ax.legend()
  if title:
    ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)
  plt.close(fig)


def curve_table(curves: dict[str, Sequence[dict]]) -> str:
  lines = ['| codec | setting | bpp | PSNR (dB) | MS-SSIM |', '|---|---|---|---|---|']
  for name, pts in curves.items():
    for p in sorted(pts, key=lambda p: p['bpp']):
      setting = p.get('quality', p.get('setting', ''))
      lines.append(f'| {name} | {setting} | {p["bpp"]:.4f} | {p["psnr"]:.2f} | '
                   f'{p["ms_ssim"]:.4f} |')
  return '\n'.join(lines) + '\n'


def bd_table(learned: dict[str, Sequence[dict]],
             anchors: dict[str, Sequence[dict]]) -> tuple[dict, str]:
  """BD-rates of every learned curve against every anchor, and as markdown."""
  out, lines = {}, ['| curve | anchor | BD-rate PSNR | BD-rate MS-SSIM |',
                    '|---|---|---|---|']
  fmt = lambda v: 'n/a' if v is None else f'{v:+.1f}%'
  for name, pts in learned.items():
    for anchor, apts in anchors.items():
      v = {m: bd_rate(pts, apts, m) for m in METRICS}
      out[f'{name}_vs_{anchor}'] = v
      lines.append(f'| {name} | {anchor} | {fmt(v["psnr"])} | {fmt(v["ms_ssim"])} |')
  return out, '\n'.join(lines) + '\n'


def main(argv=None) -> int:
  import argparse  # pylint: disable=g-import-not-at-top
  from ae_research import codec as codec_lib, datasets  # pylint: disable=g-import-not-at-top
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
  parser.add_argument('--overwrite', action='store_true')
  args = parser.parse_args(argv)
  workdirs = [w for w in args.workdirs.split(',') if w]
  report = os.path.join(args.output, 'results.json')
  try:
    if os.path.exists(report) and not args.overwrite:
      raise codec_lib.CodecError(f'{report} exists; pass --overwrite or '
                                 'another --output')
    codecs = [codec_lib.Codec.from_workdir(w) for w in workdirs]
    config = codecs[0].config
    name = args.dataset or config.get('eval_dataset') or config.dataset
    if args.dataset:
      datasets.check_name(args.dataset)
    source = datasets.get_source(config, 'test', name)
  except (codec_lib.CodecError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  n = len(source) if args.max_images <= 0 else min(args.max_images, len(source))
  images = []
  for i in range(n):
    example = source[i]
    label = example.get('name', i)
    images.append((label.decode() if isinstance(label, bytes) else str(label),
                   np.asarray(example['image'], np.uint8)))
  from ae_research.tasks import compress  # pylint: disable=g-import-not-at-top
  learned: dict[str, list] = {}
  per_run = {}
  for w, c in zip(workdirs, codecs):
    rows = [compress.code_image(c, img)[0] for _, img in images]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    mean['setting'] = os.path.basename(os.path.normpath(w))
    label = (f'learned {c.config.compress.model}')
    learned.setdefault(label, []).append(mean)
    per_run[w] = {'mean': mean, 'images': dict(zip([n for n, _ in images], rows)),
                  'lambda': c.config.compress.lmbda, 'model': c.config.compress.model}
    print(f'{w}: bpp {mean["bpp"]:.4f} (estimated {mean["bpp_estimated"]:.4f}), '
          f'PSNR {mean["psnr"]:.2f}, MS-SSIM {mean["ms_ssim"]:.4f}', flush=True)
  classical = classical_curves(images)
  anchors = {k: v['mean'] for k, v in classical.items()}
  bd, bd_md = bd_table(learned, anchors)
  curves = {**learned, **anchors}
  os.makedirs(args.output, exist_ok=True)
  for m in METRICS:
    plot(curves, os.path.join(args.output, f'rd_{m}.png'), m,
         title=f'{name}: {len(images)} images')
  summaries.write_json(report, {'dataset': name, 'images': [n for n, _ in images],
                                'runs': per_run, 'curves': curves, 'bd_rate': bd})
  md = (f'# Rate-distortion on {name} ({len(images)} images)\n\n'
        f'{bd_md}\n{curve_table(curves)}')
  with open(os.path.join(args.output, 'results.md'), 'w') as f:
    f.write(md)
  print(md)
  return 0


if __name__ == '__main__':
  sys.exit(main())
