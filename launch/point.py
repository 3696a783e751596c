"""Runs one point of a submitted sweep (what each SLURM array task runs).

  python -m launch.point ROOT INDEX

Reads ROOT/sweep.json (written by launch.slurm) and replaces itself with the
point's training command, so the scheduler's signals (SIGTERM before
preemption or the time limit) reach the run, which saves a checkpoint and
stops; run again, it resumes. A finished point is skipped.
"""

import json
import os
import sys

from ae_research import sweep


def main(argv=None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  if len(argv) != 2 or not argv[1].isdigit():
    print('usage: python -m launch.point ROOT INDEX', file=sys.stderr)
    return 2
  root, index = argv[0], int(argv[1])
  with open(os.path.join(root, 'sweep.json')) as f:
    points = json.load(f)['points']
  if index >= len(points):
    print(f'error: {root}/sweep.json has {len(points)} points; no index {index}',
          file=sys.stderr)
    return 2
  point = points[index]
  if sweep.status(point['workdir']) == 'done':
    print(f'{point["name"]}: done, skipped')
    return 0
  print(f'{point["name"]}: {" ".join(point["argv"])}', flush=True)
  os.execv(point['argv'][0], point['argv'])
  return 0  # Not reached.


if __name__ == '__main__':
  sys.exit(main())
