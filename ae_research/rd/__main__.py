r"""The RD report: trained compression runs beside JPEG and WebP.

  python -m ae_research.rd --workdirs=runs/rd/lambda_0.003,runs/rd/lambda_0.01 \
      --output=runs/rd/report [--dataset=folder:PATH] [--published=kodak]

codes every image of the data set with each run's codec (one point per run;
a variable-rate run, or a shipped codec named by --pretrained, gives a whole
curve, one point per --qualities) and writes results.json, results.md (every point and the BD-rates) and
rd_psnr.png, rd_ms_ssim.png with every curve. Every learned curve gets its
BD-rates against JPEG, WebP, the other learned curves and, with --published,
the published curves of that test set (drawn dashed).
"""

import os
import sys

from absl import flags
import numpy as np

from ae_research import cli, datasets, errors, pretrained, rd, summaries, tasks
from ae_research import tiling
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


_WORKDIRS = flags.DEFINE_list(
    'workdirs', None, 'Comma-separated compression runs (one point each, a '
    'curve for a variable-rate run).')
_PRETRAINED = cli.define_pretrained(
    'Compression models shipped with the package, comma-separated (python -m '
    'ae_research.pretrained lists them).')
_QUALITIES = flags.DEFINE_list(
    'qualities', [], 'The qualities a variable-rate codec is scored at '
    "(default: its config.compress.eval_qualities).")
_OUTPUT = cli.define_output('Folder for the report.')
_DATASET = flags.DEFINE_string(
    'dataset', '', "'' (the runs' test split), or folder:PATH, tfds:NAME.")
_MAX_IMAGES = flags.DEFINE_integer(
    'max_images', 0, 'Code the first this many images of the data set '
    '(<= 0: all).')
_PUBLISHED = flags.DEFINE_enum(
    'published', None, list(rd.PUBLISHED), 'Also draw (dashed) and compare '
    'with the published curves of this test set (rd.PUBLISHED).')
_OVERWRITE = cli.define_overwrite('Replace a report that exists.')


def _show(run: str, p: dict, at: str = '') -> None:
  print(f'{run}{at}: bpp {p["bpp"]:.4f} (estimated {p["bpp_estimated"]:.4f}), '
        f'PSNR {p["psnr"]:.2f}, MS-SSIM {p["ms_ssim"]:.4f}', flush=True)


def _score_run(run: str, codec, images, qualities: list[float],
               learned: dict, per_run: dict) -> None:
  """Codes every image with one run's codec: a point, or a variable-rate
  model's whole curve (at `qualities`, else its eval_qualities), added to
  `learned` (the curves) and `per_run` (the report's details)."""
  names = [n for n, _ in images]
  compress = codec.config.compress
  if codec.variable_rate:  # One model, a whole curve.
    at = qualities or list(compress.eval_qualities)
    per_image = [rd.code_curve(codec, img, at) for _, img in images]
    curve = rd.mean_points(per_image)
    learned[f'{os.path.basename(os.path.normpath(run))} (one model, every rate)'] = curve
    per_run[run] = {'curve': curve, 'images': dict(zip(names, per_image)),
                    'lmbda_range': list(compress.lmbda_range), 'model': compress.model}
    for p in curve:
      _show(run, p, f' quality {p["quality"]:g}')
    return
  rows = [rd.code_image(codec, img)[0] for _, img in images]
  mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
  mean['setting'] = os.path.basename(os.path.normpath(run))
  learned.setdefault(f'learned {compress.model}', []).append(mean)
  per_run[run] = {'mean': mean, 'images': dict(zip(names, rows)),
                  'lambda': compress.lmbda, 'model': compress.model}
  _show(run, mean)


def main(argv: list[str]) -> int:
  """The command (absl has parsed the flags; it takes no other input)."""
  if _PRETRAINED.value is None:
    cli.require(_WORKDIRS)
  cli.require(_OUTPUT)
  if len(argv) > 1:
    cli.usage_error(f'unexpected arguments {argv[1:]}: the runs are '
                    '--workdirs=A,B,... (or --pretrained=NAME,...)')
  workdirs = [w for w in _WORKDIRS.value or [] if w]
  names = [n for n in (_PRETRAINED.value or '').split(',') if n]
  output = _OUTPUT.value
  if not workdirs and not names:
    cli.usage_error('--workdirs names no run')
  try:
    qualities = [float(q) for q in _QUALITIES.value]
  except ValueError:
    cli.usage_error(f'--qualities={",".join(_QUALITIES.value)}: numbers from 0 '
                    'to 100, e.g. 0,25,50,75,100')
  report = os.path.join(output, 'results.json')
  try:
    if os.path.exists(report) and not _OVERWRITE.value:
      raise errors.UserError(f'{report} exists; pass --overwrite or another '
                             '--output')
    codecs = [workdir_lib.load_codec(w) for w in workdirs]
    for n in names:
      workdir_lib.require_codec(pretrained.get_config(n), f'--pretrained={n}')
      config, state = pretrained.load_state(n)
      codecs.append(tasks.get(config.task).codec(config, state, tiling.Tiling()))
    runs = workdirs + [f'pretrained:{n}' for n in names]
    for c in codecs:  # A bad quality is refused before anything is coded.
      for q in qualities if c.variable_rate else ():
        c.setting(q)
    config = codecs[0].config
    name = _DATASET.value or config.get('eval_dataset') or config.dataset
    source = datasets.get_source(config, 'test', name)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  images = _images(source, _MAX_IMAGES.value)
  learned: dict[str, list] = {}
  per_run = {}
  for w, c in zip(runs, codecs):
    _score_run(w, c, images, qualities, learned, per_run)
  classical = rd.classical_curves(images)
  published = rd.PUBLISHED.get(_PUBLISHED.value, {})
  anchors = {k: v['mean'] for k, v in classical.items()}
  # Every learned curve against JPEG, WebP, the other learned curves and
  # the published ones.
  bd, bd_md = rd.bd_table(learned, {**anchors, **learned, **published})
  curves = {**learned, **anchors, **published}
  os.makedirs(output, exist_ok=True)
  for m in rd.METRICS:
    rd.plot(curves, os.path.join(output, f'rd_{m}.png'), m,
           title=f'{name}: {len(images)} images', dashed=list(published))
  summaries.write_json(report, {'dataset': name, 'images': [n for n, _ in images],
                                'runs': per_run, 'curves': curves, 'bd_rate': bd})
  md = f'# Rate-distortion on {name} ({len(images)} images)\n\n'
  if published:
    md += (f'Published curves (dashed on the plots): '
           f'{rd.PUBLISHED_SOURCE[_PUBLISHED.value]}.\n\n')
  md += bd_md + ''.join(  # Each learned point beside the others at its rate.
      f'\n{rd.at_rate_table(n, pts, {**anchors, **published})}'
      for n, pts in learned.items())
  md += f'\n{rd.curve_table(curves)}'
  summaries.write_text(os.path.join(output, 'results.md'), md)
  print(md)
  return 0


if __name__ == '__main__':
  cli.run(main)
