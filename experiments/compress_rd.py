"""The rate-distortion sweep: one compression run per lambda, then the curve.

  python experiments/compress_rd.py --workdir=runs/rd
  python experiments/compress_rd.py --workdir=runs/rd --lambdas=0.002,0.005 \
      -- --config.num_train_steps=500      # extra flags for every run

Trains configs/compress.py once per lambda in <workdir>/lambda_<value>
(one after another; a finished run, one with metrics.json, is skipped and an
interrupted one resumes from its checkpoint), then runs `ae_research.rd` on
them all: <workdir>/report/results.md, rd_psnr.png, rd_ms_ssim.png with the
learned curve beside JPEG and WebP and its BD-rates.
"""

import argparse
import os
import subprocess
import sys

DEFAULT_LAMBDAS = '0.0015,0.003,0.006,0.012'


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--lambdas', default=DEFAULT_LAMBDAS,
                      help=f'comma-separated (default {DEFAULT_LAMBDAS})')
  parser.add_argument('--config', default='configs/compress.py')
  parser.add_argument('--dataset', default='',
                      help='what the report scores (default: the runs\' test split)')
  parser.add_argument('extra', nargs='*', help='flags passed to every run')
  args = parser.parse_args()
  try:
    lambdas = [float(v) for v in args.lambdas.split(',') if v]
  except ValueError:
    parser.error(f'--lambdas={args.lambdas!r}: give numbers joined by commas')
  if not lambdas or min(lambdas) <= 0:
    parser.error(f'--lambdas={args.lambdas!r}: give positive numbers')
  runs = []
  for i, lmbda in enumerate(lambdas):
    run = os.path.join(args.workdir, f'lambda_{lmbda:g}')
    runs.append(run)
    if os.path.exists(os.path.join(run, 'metrics.json')):
      print(f'[{i + 1}/{len(lambdas)}] {run}: finished, skipped', flush=True)
      continue
    print(f'[{i + 1}/{len(lambdas)}] {run}: training lambda {lmbda:g}', flush=True)
    cmd = [sys.executable, '-m', 'ae_research.main', f'--config={args.config}',
           f'--workdir={run}', f'--config.compress.lmbda={lmbda}'] + args.extra
    if subprocess.call(cmd) != 0:
      print(f'error: the run in {run} failed; fix it and rerun this command '
            '(finished runs are kept)', file=sys.stderr)
      return 1
  cmd = [sys.executable, '-m', 'ae_research.rd', f'--workdirs={",".join(runs)}',
         f'--output={os.path.join(args.workdir, "report")}', '--overwrite']
  if args.dataset:
    cmd.append(f'--dataset={args.dataset}')
  return subprocess.call(cmd)


if __name__ == '__main__':
  sys.exit(main())
