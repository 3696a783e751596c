"""The rate-distortion sweep: one compression run per lambda, then the curve.

  python experiments/compress_rd.py --workdir=runs/rd
  python experiments/compress_rd.py --workdir=runs/rd --lambdas=0.002,0.008@0.002 \
      --finetune_steps=1000 -- --config.num_train_steps=500   # flags for every run

Each entry of --lambdas is a value, trained from scratch, or VALUE@FROM,
started from the parameters of the run of lambda FROM (listed before it) and
trained for --finetune_steps (config.init_from): fine-tuning a trained codec
to a new rate takes a fraction of the steps of training one.

Runs go to <workdir>/lambda_<value>, one after another; a finished run (one
with metrics.json) is skipped and an interrupted one resumes from its
checkpoint. Then `ae_research.rd` scores them all: <workdir>/report/
results.md, rd_psnr.png, rd_ms_ssim.png, the learned curve beside JPEG and
WebP with its BD-rates.
"""

import argparse
import os
import subprocess
import sys

DEFAULT_LAMBDAS = '0.0015,0.003,0.006,0.012@0.006,0.024@0.006'


def parse_lambdas(text: str) -> list[tuple[float, float | None]]:
  """'0.003,0.01@0.003' -> [(0.003, None), (0.01, 0.003)]."""
  out = []
  for entry in (e for e in text.split(',') if e):
    value, _, parent = entry.partition('@')
    try:
      lmbda, start = float(value), float(parent) if parent else None
    except ValueError:
      raise ValueError(f'{entry!r} is not VALUE or VALUE@FROM') from None
    if lmbda <= 0:
      raise ValueError(f'{entry!r}: lambda must be > 0')
    if start is not None and start not in [v for v, _ in out]:
      raise ValueError(f'{entry!r}: lambda {start:g} is not listed before it')
    out.append((lmbda, start))
  if not out:
    raise ValueError('no lambda given')
  return out


def run_dir(workdir: str, lmbda: float) -> str:
  return os.path.join(workdir, f'lambda_{lmbda:g}')


def run_command(config: str, workdir: str, lmbda: float, start: float | None,
                finetune_steps: int, extra: list[str]) -> list[str]:
  """The command that trains the run of `lmbda`: `extra` (the flags for every
  run) first, then a fine-tuned run's own init_from and steps, which win."""
  cmd = [sys.executable, '-m', 'ae_research.main', f'--config={config}',
         f'--workdir={run_dir(workdir, lmbda)}', f'--config.compress.lmbda={lmbda}',
         *extra]
  if start is not None:
    cmd += [f'--config.init_from={run_dir(workdir, start)}',
            f'--config.num_train_steps={finetune_steps}']
  return cmd


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--lambdas', default=DEFAULT_LAMBDAS,
                      help=f'VALUE or VALUE@FROM, joined by commas (default '
                           f'{DEFAULT_LAMBDAS})')
  parser.add_argument('--finetune_steps', type=int, default=2000,
                      help='training steps of a run started from another')
  parser.add_argument('--config', default='configs/compress.py')
  parser.add_argument('--dataset', default='',
                      help="what the report scores (default: the runs' test split)")
  parser.add_argument('--no_report', action='store_true',
                      help='train the runs only (for a report over several sweeps)')
  parser.add_argument('extra', nargs='*', help='flags passed to every run')
  args = parser.parse_args()
  try:
    lambdas = parse_lambdas(args.lambdas)
  except ValueError as e:
    parser.error(f'--lambdas: {e}')
  runs = []
  for i, (lmbda, start) in enumerate(lambdas):
    run = run_dir(args.workdir, lmbda)
    runs.append(run)
    if os.path.exists(os.path.join(run, 'metrics.json')):
      print(f'[{i + 1}/{len(lambdas)}] {run}: finished, skipped', flush=True)
      continue
    cmd = run_command(args.config, args.workdir, lmbda, start,
                      args.finetune_steps, args.extra)
    how = 'from scratch'
    if start is not None:
      how = f'from lambda {start:g}, {args.finetune_steps} steps'
    print(f'[{i + 1}/{len(lambdas)}] {run}: lambda {lmbda:g}, {how}', flush=True)
    if subprocess.call(cmd) != 0:
      print(f'error: the run in {run} failed; fix it and rerun this command '
            '(finished runs are kept)', file=sys.stderr)
      return 1
  if args.no_report:
    return 0
  cmd = [sys.executable, '-m', 'ae_research.rd', f'--workdirs={",".join(runs)}',
         f'--output={os.path.join(args.workdir, "report")}', '--overwrite']
  if args.dataset:
    cmd.append(f'--dataset={args.dataset}')
  return subprocess.call(cmd)


if __name__ == '__main__':
  sys.exit(main())
