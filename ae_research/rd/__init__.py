"""Rate-distortion evaluation: learned codecs beside JPEG and WebP.

Every rate is a real file's size: the codec's `.aec` file, Pillow's JPEG
(`quality`, 4:2:0, optimized Huffman tables) or WebP (`quality`, method 6).
Distortion is RGB PSNR and MS-SSIM of the decoded 8-bit image. Curves are
averaged over images at each quality, as the Kodak results in papers are.
Here: the points, the classical curves, interpolation, BD-rate, tables and
plots. The report command is `python -m ae_research.rd` (`rd/__main__.py`).

The classical curves do not depend on the learned model, so each image's
curve is computed once and kept in a cache folder (`cache_dir()`: the
environment variable AE_RESEARCH_CACHE, else ~/.cache/ae_research), keyed by
the image's pixels, the codec, its qualities and settings and Pillow's
version: a lambda sweep pays for them once.
"""

import hashlib
import io
import json
import os
import tempfile
from typing import Iterable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
import PIL
from PIL import Image
from scipy.interpolate import PchipInterpolator

from ae_research import metrics

QUALITIES = {'jpeg': (1, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 75, 90),
             'webp': (0, 2, 5, 10, 20, 30, 40, 50, 60, 75, 90)}
METRICS = ('psnr', 'ms_ssim')

# Published curves, to draw (dashed) and compare beside ours: {set: {name:
# [{'bpp', 'psnr'}]}}. 'kodak': CompressAI's results on Kodak (Begaint et al.
# 2020, "CompressAI: a PyTorch library and evaluation platform for end-to-end
# compression research", results/image/kodak), RGB PSNR averaged over the 24
# images; each point 4-5M steps of 256x256 crops on a GPU. The factorized
# prior's measured points; the others at 0.25, 0.5 and 1.0 bpp.
PUBLISHED = {'kodak': {
    f'{name} (CompressAI, published)': [{'bpp': b, 'psnr': p} for b, p in pts]
    for name, pts in {
        'JPEG': [(0.25, 24.66), (0.5, 28.95), (1.0, 32.59)],
        'WebP': [(0.25, 28.55), (0.5, 31.32), (1.0, 35.11)],
        'factorized': [(0.123, 26.91), (0.189, 28.22), (0.288, 29.62),
                       (0.440, 31.28), (0.648, 32.96), (0.967, 35.38)],
        'scale hyperprior': [(0.25, 29.95), (0.5, 33.06), (1.0, 37.14)],
        'mean-scale hyperprior': [(0.25, 30.30), (0.5, 33.41), (1.0, 37.49)],
    }.items()}}
PUBLISHED_SOURCE = {'kodak': 'CompressAI (Begaint et al. 2020), results/image/kodak'}


def classical_roundtrip(image: np.ndarray, codec: str, quality: int):
  """(file bytes, decoded uint8 image) through Pillow's JPEG or WebP."""
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
  """{'bpp', 'psnr', 'ms_ssim'} of a file of `num_bytes` decoding to `decoded`."""
  h, w = original.shape[:2]
  return {'bpp': 8.0 * num_bytes / (h * w), **quality(decoded, original)}


def code_image(codec, image: np.ndarray, quality: Optional[float] = None):
  """(point with the model's estimated bpp, decoded image, file bytes) of one
  uint8 image through a learned codec (`aec.Codec`); a variable-rate
  codec's at `quality` (None: its default), which the point records."""
  data = codec.encode(image, quality=quality)
  decoded = codec.decode(data)
  h, w = image.shape[:2]
  row = point(len(data), decoded, image)
  row['bpp_estimated'] = codec.estimated_bits(image, quality) / (h * w)
  if codec.variable_rate:
    row['quality'] = codec.quality_of(data)
  return row, decoded, data


def code_curve(codec, image: np.ndarray, qualities: Sequence[float]) -> list[dict]:
  """A variable-rate codec's points of one image, one per quality."""
  return [code_image(codec, image, q)[0] for q in qualities]


def mean_points(per_image: Sequence[Sequence[dict]]) -> list[dict]:
  """The mean curve of several images' curves (point i of each)."""
  return [{k: float(np.mean([c[i][k] for c in per_image])) for k in per_image[0][i]}
          for i in range(len(per_image[0]))]


def closest_classical(image: np.ndarray, codec_name: str, bpp: float):
  """(bpp, decoded uint8 image) of Pillow's JPEG or WebP at the quality
  whose rate on `image` is nearest `bpp` (bisection over quality 1-100)."""
  pixels = image.shape[0] * image.shape[1]
  tried = {}

  def at(q):
    if q not in tried:
      data, decoded = classical_roundtrip(image, codec_name, q)
      tried[q] = (8 * len(data) / pixels, decoded)
    return tried[q][0]

  lo, hi = 1, 100
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if at(mid) < bpp else (lo, mid)
  best = min((lo, hi), key=lambda q: abs(at(q) - bpp))
  return tried[best]


# What the classical codecs' files depend on besides the image and quality.
_SETTINGS = {'jpeg': 'optimize=True, 4:2:0', 'webp': 'method=6'}
_CACHE_FORMAT = 1


def cache_dir() -> str:
  """Where classical curves are cached: $AE_RESEARCH_CACHE, else
  ~/.cache/ae_research."""
  return os.environ.get('AE_RESEARCH_CACHE') or os.path.join(
      os.path.expanduser('~'), '.cache', 'ae_research')


def _cache_key(image: np.ndarray, codec: str, qualities: Sequence[int]) -> str:
  h = hashlib.sha256()
  h.update(json.dumps([_CACHE_FORMAT, codec, list(qualities), _SETTINGS[codec],
                       PIL.__version__, list(image.shape), str(image.dtype)]).encode())
  h.update(np.ascontiguousarray(image).tobytes())
  return h.hexdigest()


def image_curve(image: np.ndarray, codec: str, qualities: Sequence[int],
                cache: Optional[str] = None) -> list[dict]:
  """[point per quality] of one image through JPEG or WebP, from the cache
  folder `cache` when it was computed before (None: no cache)."""
  path = None
  if cache:
    path = os.path.join(cache, 'classical', codec,
                        _cache_key(image, codec, qualities) + '.json')
    try:
      with open(path) as f:
        return json.load(f)
    except (OSError, ValueError):
      pass  # Not cached yet (or unreadable): computed again.
  curve = []
  for q in qualities:
    data, decoded = classical_roundtrip(image, codec, q)
    curve.append({'quality': q, **point(len(data), decoded, image)})
  if path:
    try:
      os.makedirs(os.path.dirname(path), exist_ok=True)
      fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix='.tmp')
      with os.fdopen(fd, 'w') as f:
        json.dump(curve, f)
      os.replace(tmp, path)
    except OSError:
      pass  # A cache that cannot be written only costs time.
  return curve


def classical_curves(images: Sequence[tuple[str, np.ndarray]],
                     qualities: dict[str, Iterable[int]] = QUALITIES,
                     cache: Optional[str] = '') -> dict:
  """{codec: {'mean': [point per quality], 'images': {name: [point...]}}}.
  `cache`: the folder of cached curves ('' for `cache_dir()`, None for no
  cache)."""
  cache = cache_dir() if cache == '' else cache
  curves = {}
  for codec, qs in qualities.items():
    qs = tuple(qs)
    per_image = {}
    for name, image in images:
      per_image[name] = image_curve(image, codec, qs, cache)
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
  if not all(metric in p for p in [*test, *anchor]):
    return None
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
         title: str = '', dashed: Sequence[str] = ()) -> None:
  """One line per curve: metric against bits per pixel, to a PNG. Curves
  named in `dashed` (published ones) are drawn dashed; curves without
  `metric` are left out."""
  fig = Figure(figsize=(7.2, 5.4), dpi=120)
  ax = fig.subplots()
  for name, pts in curves.items():
    if not all(metric in p for p in pts):
      continue
    pts = sorted(pts, key=lambda p: p['bpp'])
    style = ('x--' if name in dashed else 'o-') if len(pts) > 1 else 'o'
    ax.plot([p['bpp'] for p in pts], [p[metric] for p in pts], style,
            label=name, markersize=4 if len(pts) > 1 else 8)
  ax.set_xlabel('bits per pixel (file size)')
  ax.set_ylabel({'psnr': 'RGB PSNR (dB)', 'ms_ssim': 'MS-SSIM'}[metric])
  learned = [p['bpp'] for n, pts in curves.items()
             if n not in QUALITIES and n not in dashed for p in pts]
  ax.set_xlim(0, max(1.0, 1.5 * max(learned, default=0.0)))
  ax.grid(True, alpha=0.3)
  ax.legend(fontsize='small')
  if title:
    ax.set_title(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path)


def curve_table(curves: dict[str, Sequence[dict]]) -> str:
  lines = ['| codec | setting | bpp | PSNR (dB) | MS-SSIM |', '|---|---|---|---|---|']
  for name, pts in curves.items():
    for p in sorted(pts, key=lambda p: p['bpp']):
      setting = p.get('quality', p.get('setting', ''))
      ms_ssim = f'{p["ms_ssim"]:.4f}' if 'ms_ssim' in p else '-'
      lines.append(f'| {name} | {setting} | {p["bpp"]:.4f} | {p["psnr"]:.2f} | '
                   f'{ms_ssim} |')
  return '\n'.join(lines) + '\n'


def at_rate_table(name: str, points: Sequence[dict],
                  anchors: dict[str, Sequence[dict]]) -> str:
  """One learned curve's points, each beside every anchor's PSNR at its
  rate (interpolated in log rate; '-' outside an anchor's rates)."""
  fmt = lambda v: '-' if v is None else f'{v:.2f}'
  lines = [f'| {name}: setting | bpp | PSNR (dB) | MS-SSIM | '
           + ' | '.join(f'{a} at this rate' for a in anchors) + ' |',
           '|---|---|---|---|' + '---|' * len(anchors)]
  for p in sorted(points, key=lambda p: p['bpp']):
    setting = p.get('quality', p.get('setting', ''))
    cells = [f'{setting:g}' if isinstance(setting, (int, float)) else str(setting),
             f'{p["bpp"]:.4f}', f'{p["psnr"]:.2f}',
             f'{p["ms_ssim"]:.4f}' if 'ms_ssim' in p else '-',
             *(fmt(interpolate(a, p['bpp'])) for a in anchors.values())]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines) + '\n'


def bd_table(learned: dict[str, Sequence[dict]],
             anchors: dict[str, Sequence[dict]]) -> tuple[dict, str]:
  """BD-rates of every learned curve against every anchor (a curve is not
  compared with itself), and as markdown; n/a where two curves share no
  quality range or an anchor has no MS-SSIM."""
  out, lines = {}, ['| curve | anchor | BD-rate PSNR | BD-rate MS-SSIM |',
                    '|---|---|---|---|']
  fmt = lambda v: 'n/a' if v is None else f'{v:+.1f}%'
  for name, pts in learned.items():
    for anchor, apts in anchors.items():
      if anchor == name:
        continue
      v = {m: bd_rate(pts, apts, m) for m in METRICS}
      out[f'{name}_vs_{anchor}'] = v
      lines.append(f'| {name} | {anchor} | {fmt(v["psnr"])} | {fmt(v["ms_ssim"])} |')
  return out, '\n'.join(lines) + '\n'
