"""Submits a study to SLURM: one array task per point, then its report.

  python -m launch.slurm experiments/denoise_sigma.py --root=runs/denoise_sigma \
      --time=02:00:00 --cpus_per_task=8 --mem=32G --gpus=1 --partition=gpu

Writes ROOT/sweep.json (each point's name, workdir and command),
ROOT/array.sbatch and ROOT/report.sbatch, and submits them with sbatch: a
job array of the points not yet done (at most --max_parallel running at
once), and a report job that runs when the array has ended (afterany) and
writes ROOT/results.md and the plots. Logs: ROOT/slurm/<job>_<task>.out.

Each task runs `python -m launch.point`, under `srun -n --ntasks_per_point`
when that is more than 1 (one run across several processes, each calling
jax.distributed.initialize()). Jobs are requeueable: on preemption SLURM
sends SIGTERM, the run saves a checkpoint and stops, and the requeued task
resumes; submitting the same study again skips finished points and resumes
the others. --dry_run writes the files without submitting. Extra
--config.FIELD=VALUE flags apply to every point.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys

from ae_research import sweep


def _directives(args) -> list[str]:
  lines = [f'--time={args.time}', f'--cpus-per-task={args.cpus_per_task}',
           f'--ntasks={args.ntasks_per_point}']
  if args.nodes:
    lines.append(f'--nodes={args.nodes}')
  if args.mem:
    lines.append(f'--mem={args.mem}')
  if args.gpus:
    lines.append(f'--gpus-per-task={args.gpus}')
  if args.partition:
    lines.append(f'--partition={args.partition}')
  if args.account:
    lines.append(f'--account={args.account}')
  return ['#SBATCH ' + d for d in lines]


def write_job_files(module, root: str, args, extra: list[str]) -> list[int]:
  """sweep.json, array.sbatch and report.sbatch; returns the indices of the
  points not yet done."""
  study = module.STUDY
  root = os.path.abspath(root)
  points, todo = [], []
  for i, point in enumerate(study.points):
    name = sweep.point_name(point)
    workdir = os.path.join(root, name)
    points.append({'name': name, 'fields': point, 'workdir': workdir,
                   'argv': sweep.command(study, point, workdir, extra)})
    if sweep.status(workdir) != 'done':
      todo.append(i)
  os.makedirs(os.path.join(root, 'slurm'), exist_ok=True)
  with open(os.path.join(root, 'sweep.json'), 'w') as f:
    json.dump({'study': os.path.abspath(args.study), 'points': points}, f, indent=2)
  cwd = os.getcwd()
  python = shlex.quote(sys.executable)
  run = f'{python} -m launch.point {shlex.quote(root)} "$SLURM_ARRAY_TASK_ID"'
  if args.ntasks_per_point > 1:
    run = f'srun --kill-on-bad-exit=1 {run}'
  else:
    run = 'exec ' + run
  with open(os.path.join(root, 'array.sbatch'), 'w') as f:
    f.write('\n'.join([
        '#!/bin/bash',
        f'#SBATCH --job-name={study.name}',
        f'#SBATCH --output={root}/slurm/%A_%a.out',
        '#SBATCH --requeue',
        *_directives(args),
        f'cd {shlex.quote(cwd)}',
        run, '']))
  with open(os.path.join(root, 'report.sbatch'), 'w') as f:
    f.write('\n'.join([
        '#!/bin/bash',
        f'#SBATCH --job-name={study.name}-report',
        f'#SBATCH --output={root}/slurm/report_%j.out',
        '#SBATCH --ntasks=1', '#SBATCH --cpus-per-task=1', '#SBATCH --time=00:30:00',
        *([f'#SBATCH --partition={args.partition}'] if args.partition else []),
        *([f'#SBATCH --account={args.account}'] if args.account else []),
        f'cd {shlex.quote(cwd)}',
        f'exec {python} -m launch.report {shlex.quote(os.path.abspath(args.study))} '
        f'--root={shlex.quote(root)}', '']))
  return todo


def _sbatch(argv: list[str]) -> str:
  result = subprocess.run(['sbatch', '--parsable', *argv], capture_output=True,
                          text=True)
  if result.returncode:
    raise RuntimeError(f'sbatch {" ".join(argv)} failed: {result.stderr.strip()}')
  return result.stdout.strip().split(';')[0]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m launch.slurm',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('study', help='a study file in experiments/')
  parser.add_argument('--root', required=True, help='folder of the runs (shared)')
  parser.add_argument('--time', default='04:00:00', help='time limit per point')
  parser.add_argument('--cpus_per_task', type=int, default=2)
  parser.add_argument('--mem', default='', help="memory per node, e.g. '16G'")
  parser.add_argument('--gpus', type=int, default=0, help='GPUs per task')
  parser.add_argument('--nodes', type=int, default=0, help='nodes per point')
  parser.add_argument('--ntasks_per_point', type=int, default=1,
                      help='processes per run (srun -n; one per GPU)')
  parser.add_argument('--partition', default='')
  parser.add_argument('--account', default='')
  parser.add_argument('--max_parallel', type=int, default=0,
                      help='array tasks running at once (0: no limit)')
  parser.add_argument('--dry_run', action='store_true',
                      help='write the job files, do not submit')
  args, extra = parser.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith('--config.')]
  if bad:
    parser.error(f'unknown arguments {bad}')
  try:
    module = sweep.load(args.study)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  todo = write_job_files(module, args.root, args, extra)
  root = os.path.abspath(args.root)
  if not todo:
    print('every point is done; writing the report')
    sweep.write_report(module, root)
    return 0
  array = ','.join(map(str, todo)) + (f'%{args.max_parallel}' if args.max_parallel else '')
  if args.dry_run:
    print(f'would submit: sbatch --array={array} {root}/array.sbatch, then '
          f'{root}/report.sbatch after it')
    return 0
  try:
    job = _sbatch([f'--array={array}', os.path.join(root, 'array.sbatch')])
    report = _sbatch([f'--dependency=afterany:{job}',
                      os.path.join(root, 'report.sbatch')])
  except (RuntimeError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'submitted {len(todo)} point(s) as job array {job} (logs in {root}/slurm/); '
        f'report job {report} writes {root}/results.md when they end')
  print(json.dumps({'array': job, 'report': report}))
  return 0


if __name__ == '__main__':
  sys.exit(main())
