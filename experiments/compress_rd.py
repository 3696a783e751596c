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
WebP with its BD-rates. The lambdas and each run's command are
`ae_research.rd.lambdas`'s.
"""

import argparse
import os
import subprocess
import sys

from ae_research.rd import lambdas as rd_lambdas



def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--lambdas', default=rd_lambdas.DEFAULT,
                      help=f'VALUE or VALUE@FROM, joined by commas (default '
                           f'{rd_lambdas.DEFAULT})')
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
    lambdas = rd_lambdas.parse_lambdas(args.lambdas)
  except ValueError as e:
    parser.error(f'--lambdas: {e}')
  runs = []
  for i, (lmbda, start) in enumerate(lambdas):
    run = rd_lambdas.run_dir(args.workdir, lmbda)
    runs.append(run)
    if os.path.exists(os.path.join(run, 'metrics.json')):
      print(f'[{i + 1}/{len(lambdas)}] {run}: finished, skipped', flush=True)
      continue
    cmd = rd_lambdas.run_command(args.config, args.workdir, lmbda, start,
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
