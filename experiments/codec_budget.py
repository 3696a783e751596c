r"""Which variable-rate codec, at which budget: Kodak quality against minutes.

  python -m experiments.codec_budget train --only=small      # one, resumable
  python -m experiments.codec_budget train                   # every architecture
  python -m experiments.codec_budget report --out=docs       # the plot and table
  python -m experiments.codec_budget rate                    # steps/s, machine idle
  python -m experiments.codec_budget train --budget=smoke --runs=/tmp/b   # seconds

Each architecture is one variable-rate mean-scale model
(`configs/compress.py:variable`, qualities 0-100 over its lambdas)
trained on T91 + CBSD432 (../shared/trainsets, by path) for about two
hours of 2 CPU cores (the steps measured for each), evaluated during
training on the 24 Kodak images, whole, through the real codec, at five
qualities: the training loop records each quality's PSNR and bpp at its
step (`eval_history.jsonl`; a whole-image evaluation during training scores
every test image). `report` turns
the histories into PSNR at 0.3, 0.5 and 1 bpp (each evaluation's curve
interpolated in log rate, so runs of other lambda ranges compare) and the
BD-rate against Pillow's JPEG on the same images, both against minutes of training
(`codec_budget.png`, `codec_budget.md`), so the default is chosen from where
the curves are after two hours, not from the first minutes. The evaluations
drawn are kept beside them (`codec_budget.json`): a report without a run's
workdir draws that run from the record, so the docs are made again from a
clean clone. The minutes
are steps at each architecture's rate measured on an idle machine (`rate`;
ARCHS records it), not the wall clock, which counts whatever else shared
the machine during a run.

`per_lambda` trains the equal-compute comparison: three fixed-rate models of
the same architecture at the lambdas of qualities 0, 50 and 100, each for a
third of the variable-rate model's steps; `report` gives the BD-rate of the
one model against the three on the same images. `--steps` scales both
sides (the variable-rate model's steps, a third of them each fixed one).
The docs' comparison at the full budget (36,000 steps against 3 x 12,000;
only the last step is evaluated) and at a small one, each scored on all of
Kodak24 by `ae_research.rd`:

  python -m experiments.codec_budget per_lambda --only=small --evals=1
  python -m ae_research.rd --workdirs=runs/codec_budget/small,\
      runs/codec_budget/small_lambda_0.0018,runs/codec_budget/small_lambda_0.01342,\
      runs/codec_budget/small_lambda_0.1 --qualities=0,25,50,75,100 \
      --dataset=folder:../shared/testsets/Kodak24 --output=runs/equal_full_rd

  python -m experiments.codec_budget train --only=small --steps=4500 --evals=1 --runs=runs/equal
  python -m experiments.codec_budget per_lambda --only=small --steps=4500 --evals=1 --runs=runs/equal
  python -m ae_research.rd --workdirs=runs/equal/small,runs/equal/small_lambda_0.0018,\
      runs/equal/small_lambda_0.01342,runs/equal/small_lambda_0.1 \
      --qualities=0,25,50,75,100 --dataset=folder:../shared/testsets/Kodak24 \
      --output=runs/equal/rd
"""

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

from matplotlib.figure import Figure
import numpy as np

from ae_research import compression, datasets, errors, rd, summaries, train
from configs import compress as compress_config

TRAIN = '{shared}/trainsets'
TEST = '{shared}/testsets'
QUALITIES = (0.0, 25.0, 50.0, 75.0, 100.0)
SHOWN = (0.0, 50.0, 100.0)  # The per-lambda models' qualities.
RATES = (0.3, 0.5, 1.0)  # Bits per pixel at which PSNR is plotted against minutes.
BD_TOP = 100.0  # The BD-rate panel's top (%).


@dataclasses.dataclass(frozen=True)
class Arch:
  name: str
  summary: str
  variant: str  # configs/compress.py variants.
  overrides: tuple[str, ...]
  steps: int  # About two hours on 2 CPU cores.
  # Training steps per second on 2 CPU cores with nothing else running
  # (`python -m experiments.codec_budget rate`): the report's minutes are
  # steps at this rate, not the wall clock of a machine shared with other
  # work.
  steps_per_second: float
  evals: int = 8
  # The lambdas of qualities 0 and 100, where not the variant's default.
  lmbda_range: Optional[tuple[float, float]] = None

  def lambdas(self) -> tuple[float, float]:
    return self.lmbda_range or tuple(
        compress_config.get_config(self.variant).compress.lmbda_range)


# Steps: about two hours of 2 CPU cores each (patches of 128 for all
# three, so a step sees the same pixels), from each one's measured rate.
ARCHS = (
    # Trained before the default range widened to reach 0.1 bpp on Kodak24;
    # the report compares runs at fixed rates, whatever their range.
    Arch('small', 'three levels of 64 channels, M=64, N=64 (the default)',
         'variable', (), steps=36000, steps_per_second=5.3,
         lmbda_range=(0.0018, 0.1)),
    Arch('mid', 'four levels of 96 channels, M=128, N=96',
         'variable', ('--config.model.features=(96,96,96,96)',
                      '--config.model.latent_features=128',
                      '--config.compress.hyper_features=96'), steps=22500,
         steps_per_second=3.12),
    # Started over the range that was the default then; pinned, so the run
    # resumes under the config it was started with.
    Arch('published', 'the published low-rate size: four levels of 128, '
         'M=192, N=128', 'variable,n128', ('--config.patch_size=128',),
         steps=10000, steps_per_second=1.38, lmbda_range=(0.0003, 0.1),
         evals=5),  # Every 24 minutes; a Kodak24 evaluation, 3-4 min.
)
BY_NAME = {a.name: a for a in ARCHS}


def archs(only: Sequence[str]) -> list[Arch]:
  unknown = [n for n in only if n not in BY_NAME]
  if unknown:
    raise errors.UserError(f'--only: no architecture {unknown}; they are '
                           f'{list(BY_NAME)}')
  return [BY_NAME[n] for n in only] if only else list(ARCHS)


def _data(shared: str, smoke: bool) -> list[str]:
  if smoke:  # The embedded photos: no ../shared needed.
    return ['--config.dataset=photos', '--config.eval_dataset=photos']
  return [f'--config.dataset=folder:{TRAIN.format(shared=shared)}/T91,'
          f'{TRAIN.format(shared=shared)}/CBSD432',
          f'--config.eval_dataset=folder:{TEST.format(shared=shared)}/Kodak24']


def train_args(arch: Arch, workdir: str, shared: str, smoke: bool = False,
               lmbda: Optional[float] = None, fraction: float = 1.0,
               steps: Optional[int] = None, evals: Optional[int] = None
               ) -> list[str]:
  """python -m ae_research.main's arguments for one run: the variable-rate
  model, or (`lmbda`) a fixed-rate one of the same architecture trained for
  `fraction` of its steps (`steps`, else the architecture's), evaluated
  `evals` times (else the architecture's number)."""
  variant = arch.variant + (',smoke' if smoke else '')
  steps = 12 if smoke else int((steps or arch.steps) * fraction)
  every = max(1, steps // (1 if smoke else evals or arch.evals))
  args = [f'--config=configs/compress.py:{variant}', f'--workdir={workdir}',
          *arch.overrides, *_data(shared, smoke),
          f'--config.num_train_steps={steps}',
          f'--config.eval_every_steps={every}',
          f'--config.checkpoint_every_steps={max(1, every // 2)}',
          f'--config.compress.eval_qualities={tuple(QUALITIES)}']
  if arch.lmbda_range:
    args.append(f'--config.compress.lmbda_range={tuple(arch.lmbda_range)}')
  if lmbda is not None:  # The same model at one rate.
    args += ['--config.compress.rate_levels=0', f'--config.compress.lmbda={lmbda}']
  return args


def per_lambda_runs(arch: Arch) -> list[tuple[str, float]]:
  """(run name, lambda) of the equal-compute fixed-rate models."""
  lo_hi = arch.lambdas()
  return [(f'{arch.name}_lambda_{compression.lmbda_at(q, lo_hi):.4g}',
           float(compression.lmbda_at(q, lo_hi))) for q in SHOWN]


def _run(args: list[str]) -> None:
  command = [sys.executable, '-m', 'ae_research.main', *args]
  print('$ ' + ' '.join(['python', *command[1:]]), flush=True)
  if subprocess.run(command).returncode:
    raise errors.UserError(f'training failed: {" ".join(command[1:])}')


def cmd_train(chosen: list[Arch], args: argparse.Namespace, per_lambda: bool) -> None:
  smoke = args.budget == 'smoke'
  for arch in chosen:
    if per_lambda:
      for name, lmbda in per_lambda_runs(arch):
        _run(train_args(arch, os.path.join(args.runs, name), args.shared,
                        smoke, lmbda=lmbda, fraction=1 / len(SHOWN),
                        steps=args.steps, evals=args.evals))
    else:
      _run(train_args(arch, os.path.join(args.runs, arch.name), args.shared,
                      smoke, steps=args.steps, evals=args.evals))


# ---------------------------------------------------------------------------
# The report.


def history_curves(history: list[dict], steps_per_second: float
                   ) -> list[tuple[float, list[dict]]]:
  """(minutes, the curve {'bpp', 'psnr', 'quality'} per quality) of each
  evaluation a variable-rate run recorded; minutes are its steps at
  `steps_per_second`."""
  out = []
  for row in history:
    points = [{'quality': q, 'bpp': row[f'bpp_q{q:g}'], 'psnr': row[f'psnr_q{q:g}']}
              for q in QUALITIES if f'psnr_q{q:g}' in row]
    if points:
      out.append((row['step'] / steps_per_second / 60, points))
  return out


def jpeg_curve(shared: str, smoke: bool) -> list[dict]:
  """Pillow's JPEG on the images the runs were evaluated on, mean curve."""
  config = compress_config.get_config('smoke')
  name = 'photos' if smoke else f'folder:{TEST.format(shared=shared)}/Kodak24'
  source = datasets.get_source(config, 'test', name)
  images = [(str(i), np.asarray(source[i]['image'], np.uint8))
            for i in range(len(source))]
  return rd.classical_curves(images, {'jpeg': rd.QUALITIES['jpeg']})['jpeg']['mean']


RECORD = 'codec_budget.json'  # Beside the plot: the evaluations it draws.
_KEPT = re.compile(r'step$|(psnr|bpp)_q[\d.]+$')


def read_record(out: str) -> dict:
  """{architecture: {'source', 'history'}} of the evaluations an earlier
  report drew (`out/codec_budget.json`), so the plot and the table are made
  again without the runs."""
  path = os.path.join(out, RECORD)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)['runs']


def histories(chosen: list[Arch], runs: str, out: str) -> dict[str, dict]:
  """Each architecture's evaluations: its run's (`runs/<name>`) where it
  has any, else those the record in `out` keeps."""
  record = read_record(out)
  found = {}
  for arch in chosen:
    workdir = os.path.join(runs, arch.name)
    rows = [{k: v for k, v in r.items() if _KEPT.match(k)}
            for r in train.read_history(workdir)]
    if any(len(r) > 1 for r in rows):
      found[arch.name] = {'source': f'{arch.name}\'s eval_history.jsonl',
                          'history': rows}
    elif arch.name in record:
      found[arch.name] = record[arch.name]
    else:
      raise errors.UserError(
          f'{workdir} has no evaluations of a variable-rate run yet, and '
          f'{os.path.join(out, RECORD)} keeps none of {arch.name}: train it '
          f'first (experiments.codec_budget train --only={arch.name})')
  return found


def write_record(out: str, found: dict[str, dict]) -> None:
  """Adds the evaluations drawn to the record (others are kept)."""
  record = {**read_record(out), **found}
  text = json.dumps({'about': 'Kodak24 PSNR and bpp per quality at each '
                     'evaluation of the codec_budget runs, the data of '
                     'codec_budget.png and codec_budget.md; step / steps_per_second '
                     'of experiments/codec_budget.py ARCHS gives the minutes.',
                     'runs': record}, indent=1) + '\n'
  summaries.write_text(os.path.join(out, RECORD), text)


def cmd_report(chosen: list[Arch], args: argparse.Namespace) -> str:
  smoke = args.budget == 'smoke'
  drawn = histories(chosen, args.runs, args.out)
  jpeg = jpeg_curve(args.shared, smoke)
  found = {name: history_curves(h['history'], BY_NAME[name].steps_per_second)
           for name, h in drawn.items()}
  fig = Figure(figsize=(12, 4.2))
  axes = fig.subplots(1, len(RATES) + 1)
  at = lambda curve, bpp: rd.interpolate(curve, bpp)
  fmt = lambda v, unit='': 'n/a' if v is None else f'{v:.2f}{unit}'
  lines = ['| architecture | minutes | ' + ' | '.join(
      f'PSNR at {r:g} bpp' for r in RATES) + ' | qualities 0 / 100: bpp | BD-rate vs JPEG '
      '| over PSNR (dB) |', '|---|---|' + '---|' * (len(RATES) + 3)]
  for name, history in found.items():
    minutes = [m for m, _ in history]
    # A run the record keeps only the end of: its one point, named so.
    style = dict(markersize=3, label=name) if len(history) > 1 else dict(
        markersize=6, label=f'{name} (its last evaluation only)')
    for ax, r in zip(axes, RATES):
      ax.plot(minutes, [np.nan if at(c, r) is None else at(c, r) for _, c in history],
              'o-', **style)
    bd = [rd.bd_rate(c, jpeg) for _, c in history]
    axes[-1].plot(minutes, [np.nan if b is None else min(b, BD_TOP) for b in bd],
                  'o-', **style)
    last_minutes, last = history[-1]
    ends = f'{last[0]["bpp"]:.3f} / {last[-1]["bpp"]:.3f}'
    lines.append(f'| {name}: {BY_NAME[name].summary} | {last_minutes:.0f} | '
                 + ' | '.join(fmt(at(last, r)) for r in RATES)
                 + f' | {ends} | {"n/a" if bd[-1] is None else f"{bd[-1]:+.1f}%"} | '
                 f'{shared_range(last, jpeg)} |')
  lines.append('| Pillow\'s JPEG, the same images | - | '
               + ' | '.join(fmt(at(jpeg, r)) for r in RATES) + ' | - | 0 | - |')
  for ax, r in zip(axes, RATES):
    ax.axhline(np.nan if at(jpeg, r) is None else at(jpeg, r), linestyle='--',
               color='gray', linewidth=1, label='JPEG')
    ax.set_title(f'{r:g} bpp')
    ax.set_xlabel('minutes of training')
    ax.set_ylabel('PSNR (dB), Kodak24')
    ax.grid(alpha=0.3)
  axes[-1].axhline(0.0, linestyle='--', color='gray', linewidth=1)
  # The first evaluations of a slow starter can be 1000% off: the axis
  # keeps the range where the choice is made, a point above it on its edge.
  top = axes[-1].get_ylim()[1]
  if top > BD_TOP:
    axes[-1].set_ylim(top=BD_TOP)
    axes[-1].text(0.98, 0.98, f'points above {BD_TOP:g}% drawn at the top',
                  transform=axes[-1].transAxes, ha='right', va='top', fontsize=7)
  axes[-1].set_title('BD-rate against JPEG (PSNR)')
  axes[-1].set_xlabel('minutes of training')
  axes[-1].set_ylabel('%  (below 0: fewer bits than JPEG)')
  axes[-1].grid(alpha=0.3)
  axes[0].legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(args.out, exist_ok=True)
  fig.savefig(os.path.join(args.out, 'codec_budget.png'), dpi=100)
  write_record(args.out, drawn)
  lines += equal_compute(chosen, args.runs)
  table = '\n'.join(lines) + '\n'
  summaries.write_text(os.path.join(args.out, 'codec_budget.md'), table)
  return table


def shared_range(curve: list[dict], anchor: list[dict]) -> str:
  """The PSNR range two curves share, the one a BD-rate averages over:
  a model whose curve only overlaps JPEG's at low quality scores against
  JPEG's worst."""
  lo = max(min(p['psnr'] for p in curve), min(p['psnr'] for p in anchor))
  hi = min(max(p['psnr'] for p in curve), max(p['psnr'] for p in anchor))
  return f'{lo:.1f}-{hi:.1f}' if hi > lo else 'none'


def _final_eval(workdir: str) -> Optional[dict]:
  path = os.path.join(workdir, 'eval', 'results.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def equal_compute(chosen: list[Arch], runs: str) -> list[str]:
  """Lines comparing each variable-rate model with its three fixed-rate
  models of a third of its steps each (`per_lambda`), where they exist:
  BD-rate on the same images, the one model's curve against theirs."""
  lines = []
  for arch in chosen:
    variable = _final_eval(os.path.join(runs, arch.name))
    fixed = [_final_eval(os.path.join(runs, name))
             for name, _ in per_lambda_runs(arch)]
    if variable is None or 'model_curve' not in variable or None in fixed:
      continue
    points = [f['mean']['model'] for f in fixed]
    bd = {m: rd.bd_rate(variable['model_curve'], points, m) for m in rd.METRICS}
    fmt = lambda v: 'n/a' if v is None else f'{v:+.1f}%'
    lines.append(f'\n{arch.name}: one variable-rate model against three '
                 f'fixed-rate models (lambdas '
                 f'{", ".join(f"{l:.4g}" for _, l in per_lambda_runs(arch))}, a '
                 f'third of its steps each), the same images: BD-rate PSNR '
                 f'{fmt(bd["psnr"])}, MS-SSIM {fmt(bd["ms_ssim"])} (above 0: the one '
                 'model needs more bits).')
  return lines


RATE_STEPS = 400  # Timed after the first (compiling) logged steps.
_PROGRESS = re.compile(r'step (\d+)/\d+ .*images/s ([\d.]+)')


def measure_rate(arch: Arch, shared: str, smoke: bool) -> float:
  """Training steps per second of an architecture: RATE_STEPS steps of its
  run in a scratch workdir, the median images/s of the last three logged
  intervals over the batch size. Run it with nothing else on the machine."""
  steps = 12 if smoke else RATE_STEPS
  with tempfile.TemporaryDirectory() as scratch:
    args = train_args(arch, scratch, shared, smoke) + [
        f'--config.num_train_steps={steps}', f'--config.log_every_steps={steps // 6}',
        f'--config.eval_every_steps={steps + 1}',
        f'--config.checkpoint_every_steps={steps}', '--config.num_eval_examples=1']
    command = [sys.executable, '-m', 'ae_research.main', *args]
    out = subprocess.run(command, capture_output=True, text=True)
  if out.returncode:
    raise errors.UserError(f'the timing run failed: {out.stderr[-2000:]}')
  rates = [float(m.group(2)) for m in _PROGRESS.finditer(out.stderr + out.stdout)]
  if len(rates) < 3:
    raise errors.UserError('the timing run logged too few steps to time')
  batch = compress_config.get_config(arch.variant).batch_size
  return float(np.median(rates[-3:])) / batch


def cmd_rate(chosen: list[Arch], args: argparse.Namespace) -> str:
  lines = ['| architecture | steps/s measured | in ARCHS |', '|---|---|---|']
  for arch in chosen:
    rate = measure_rate(arch, args.shared, args.budget == 'smoke')
    lines.append(f'| {arch.name} | {rate:.2f} | {arch.steps_per_second:.2f} |')
    print(lines[-1], flush=True)
  return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('command', choices=('train', 'per_lambda', 'report', 'rate'))
  parser.add_argument('--only', default='', help='architectures, comma-'
                      'separated (default: all): ' + ', '.join(BY_NAME))
  parser.add_argument('--runs', default='runs/codec_budget',
                      help='where the workdirs go')
  parser.add_argument('--shared', default='../shared', help='the standard data')
  parser.add_argument('--budget', choices=('cpu', 'smoke'), default='cpu',
                      help='about two hours each, or a few steps (smoke)')
  parser.add_argument('--steps', type=int, default=None,
                      help='train, per_lambda: the variable-rate model\'s '
                      'steps (default: the architecture\'s two hours); the '
                      'fixed-rate models train a third of them each')
  parser.add_argument('--evals', type=int, default=None,
                      help='train, per_lambda: evaluations during each run '
                      '(default: the architecture\'s; each codes all 24 Kodak '
                      'images at five qualities, minutes on 2 cores)')
  parser.add_argument('--out', default='docs',
                      help='report: the folder of the plot and the table')
  args = parser.parse_args(argv)
  if args.steps is not None and args.steps < len(SHOWN):
    parser.error(f'--steps={args.steps}: at least {len(SHOWN)} (a third of '
                 'them trains each fixed-rate model)')
  if args.evals is not None and args.evals < 1:
    parser.error(f'--evals={args.evals}: at least 1 (the last step\'s)')
  try:
    chosen = archs([n for n in args.only.split(',') if n])
    if args.command == 'report':
      print(cmd_report(chosen, args))
    elif args.command == 'rate':
      print(cmd_rate(chosen, args))
    else:
      cmd_train(chosen, args, per_lambda=args.command == 'per_lambda')
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
