"""Writes a study's report from the runs that have finished.

  python -m launch.report experiments/denoise_sigma.py --root=runs/denoise_sigma

ROOT/results.md (one row per point: swept fields, metrics, status),
results.json and one PNG per metric against the swept fields.
"""

import argparse
import os
import sys

from ae_research import sweep


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m launch.report',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('study')
  parser.add_argument('--root', required=True)
  args = parser.parse_args(argv)
  try:
    module = sweep.load(args.study)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  rows = sweep.write_report(module, args.root)
  print(open(os.path.join(args.root, 'results.md')).read())
  return 0 if all(r['status'] == 'done' for r in rows) else 1


if __name__ == '__main__':
  sys.exit(main())
