"""Fuzzing the image readers with mutated files and decompression bombs.

  python benchmarks/fuzz_images.py                        # 10,000 inputs
  python benchmarks/fuzz_images.py --inputs=50000 --workers=2 --seed=1
  python benchmarks/fuzz_images.py --seed=0 --only=1234 --save=/tmp/fuzz
      # one input again, in this process: its file kept, its traceback shown

The inputs and the contract are `ae_research.fuzz_images`'s; the workers,
the watchdog and the report (by kind of input: format, and bytes or header
size edited, or a bomb) are `ae_research.fuzzing`'s. Exit status 1 on any
crash, hang or wrong result.
"""

import argparse
import sys

from ae_research import fuzz_images, fuzzing


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--inputs', type=int, default=10000)
  parser.add_argument('--first', type=int, default=0, help='the first input index')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workers', type=int, default=1, help='worker processes')
  parser.add_argument('--timeout', type=float, default=120.0,
                      help='seconds an input may take before it counts as a hang')
  parser.add_argument('--bomb_every', type=int, default=4,
                      help="every N-th input of each format has its header's size "
                           'edited, a bomb when over the limit (0: none)')
  parser.add_argument('--max_pixels', type=int, default=None,
                      help='image_io.MAX_PIXELS in the workers (default '
                           f'{fuzz_images.LIMIT_FACTOR}x the largest seed image)')
  parser.add_argument('--memory_gb', type=int, default=6,
                      help="a worker's address space limit (0: none)")
  parser.add_argument('--only', default='',
                      help='comma-separated input indices, read in this process')
  parser.add_argument('--save', default='/tmp/fuzz_images',
                      help='where --only keeps its input files')
  args = parser.parse_args(argv)
  target = fuzz_images.Target(args.seed, args.bomb_every, args.max_pixels)
  if args.only:
    return max(fuzzing.reproduce(target, int(i), args.save)
               for i in args.only.split(','))
  report = fuzzing.fuzz(target, args.inputs, first=args.first, workers=args.workers,
                        time_limit=args.timeout, memory_limit=args.memory_gb << 30,
                        log=lambda line: print(line, file=sys.stderr, flush=True))
  print(fuzz_images.summary(report))
  return 1 if report.failed else 0


if __name__ == '__main__':
  sys.exit(main())
