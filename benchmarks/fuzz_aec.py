"""Fuzzes the .aec decoder at scale: mutated files must decode or be refused.

  python benchmarks/fuzz_aec.py                          # 1,000,000 inputs
  python benchmarks/fuzz_aec.py --inputs=20000 --seed=3
  python benchmarks/fuzz_aec.py --seed=0 --reproduce=123456   # one input, here

The inputs and what each must do are `ae_research.fuzz_aec`'s (real files of
every container version, mutated; each decodes to the size its header
states or is refused with `aec.CodecError`); the worker pool, the watchdog
and the report are `ae_research.fuzzing`'s. Counted: decoded, refused (by
the first words of the message; those refused by the pixel limit apart),
crashes (any other exception: the first few are printed with their
traceback and the command that reproduces them), hangs (an input still
running after --time_limit seconds: its worker is killed and a new one goes
on from the next input), wrong results (a wrong size, or a refusal after
the worker's memory grew). --max_pixels (default 64x the largest seed image)
is passed to the decoder, so a file whose header states a larger image is
refused before anything is allocated; the summary gives the largest stated
image that was decoded and the workers' peak memory. Exit status 1 on any
crash, hang or wrong result. tests/test_fuzz_aec.py runs a few thousand
inputs of it.
"""

import argparse
import sys

from ae_research import fuzz_aec, fuzzing


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--inputs', type=int, default=1_000_000)
  parser.add_argument('--seed', type=int, default=0,
                      help='the fuzz seed: input i is made from (seed, i)')
  parser.add_argument('--workers', type=int, default=2,
                      help='worker subprocesses (one core each)')
  parser.add_argument('--time_limit', type=float, default=10.0,
                      help='seconds an input may run before it counts as a hang')
  parser.add_argument('--max_pixels', type=int, default=None,
                      help=f'the decoder\'s pixel limit (default '
                           f'{fuzz_aec.LIMIT_FACTOR}x the largest seed image)')
  parser.add_argument('--progress_every', type=float, default=30.0,
                      help='seconds between progress lines')
  parser.add_argument('--show', type=int, default=3,
                      help='failures of each kind printed in full')
  parser.add_argument('--reproduce', type=int, default=None, metavar='INDEX',
                      help='make input INDEX again and decode it in this process')
  args = parser.parse_args(argv)
  if args.reproduce is not None:
    return fuzzing.reproduce(fuzz_aec.make_target(args.seed, args.max_pixels),
                             args.reproduce)
  print(f'fuzzing the .aec decoder: {args.inputs:,} inputs, seed {args.seed}, '
        f'{args.workers} workers, {args.time_limit:g} s per input', flush=True)
  report = fuzz_aec.fuzz(args.inputs, seed=args.seed, workers=args.workers,
                         time_limit=args.time_limit, max_pixels=args.max_pixels,
                         progress_every=args.progress_every,
                         log=lambda line: print(line, flush=True))
  print(fuzz_aec.summary(report, args.show), flush=True)
  return 1 if report.failed else 0


if __name__ == '__main__':
  sys.exit(main())
