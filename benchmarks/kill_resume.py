"""Killed at any moment: does a rerun of the same command end bit-identical?

  python benchmarks/kill_resume.py                    # 20 SIGKILL runs, 10 SIGTERM runs
  python benchmarks/kill_resume.py --runs=2 --sigterm_runs=1   # a short check
  python benchmarks/kill_resume.py --processes=2 --runs=10      # one of two processes

Trains one short run without interruption (the reference), then, per run,
starts the same command in a fresh workdir, kills it with SIGKILL at a
random moment, starts it again, kills it again (1 to 3 kills per run) and
lets the last start finish. The moments are drawn so that many land inside
an asynchronous checkpoint save (the killer watches for orbax's temporary
folder and kills 0 to 40 ms after it appears), some in an evaluation and in
the final report, the rest anywhere. Where each kill landed is read from the
process's log and from what it left: a temporary checkpoint folder left
behind means the kill interrupted a save. The SIGTERM runs do the same with
a scheduler's notice (the run saves and exits with 143 during training).

With --processes=N the run is N processes with a jax.distributed
coordinator on localhost (as launch/processes.py starts them), and each
kill takes one of them, drawn at random, while it trains, evaluates, saves
or writes its final report; every other process must stop on its own within
60 s with its line naming the lost process (exit status 75). The seconds
each took are printed, and the reference is an uninterrupted run of as many
processes.

Every run's final train state (parameters, optimizer state, batch
statistics, step) is compared with the reference's, bit for bit. Prints
each kill, `N/N runs bit-identical`, and any start that failed without being
killed. Exit status 1 when a run is not bit-identical or did not resume.
The launches, the killer and the comparison are `ae_research.kill_resume`'s.
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time

from ae_research import kill_resume

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', type=int, default=20, help='SIGKILL runs')
  parser.add_argument('--sigterm_runs', type=int, default=10)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--root', default='', help='default: a temporary folder')
  parser.add_argument('--steps', type=int, default=24)
  parser.add_argument('--keep', action='store_true', help='keep the workdirs')
  parser.add_argument('--processes', type=int, default=1,
                      help='processes of the run (several: SIGKILL runs only)')
  args = parser.parse_args()
  root = args.root or tempfile.mkdtemp(prefix='kill_resume_')
  os.makedirs(root, exist_ok=True)
  start = time.monotonic()
  cmd = kill_resume.command(root, args.steps, ROOT)
  env = kill_resume.environment(root, ROOT)
  config, reference, duration = kill_resume.reference_run(
      root, cmd, env, processes=args.processes)
  print(f'reference: step {reference[0]}, one run of {args.processes} '
        f'process(es) takes about {duration:.0f} s', flush=True)
  log = lambda s: print(s, flush=True)
  if args.processes > 1:
    kill = kill_resume.run_series(
        root, cmd, env, signal.SIGKILL, args.runs, ['save', 'evaluation', 'final',
                                                    'training'],
        [0.4, 0.2, 0.1, 0.3], args.seed, reference, duration, config, log=log,
        processes=args.processes)
    print(kill_resume.summary(f'SIGKILL, one of {args.processes} processes', kill))
    print(f'{time.monotonic() - start:.0f} s in all; workdirs in {root}')
    if not args.keep and not args.root:
      shutil.rmtree(root, ignore_errors=True)
    sys.exit(0 if kill['identical'] == kill['runs'] and not kill['failed'] else 1)
  plans = ['save', 'evaluation', 'final', 'any']
  kill = kill_resume.run_series(
      root, cmd, env, signal.SIGKILL, args.runs, plans, [0.5, 0.15, 0.15, 0.2],
      args.seed, reference, duration, config, log=log)
  term = kill_resume.run_series(
      root, cmd, env, signal.SIGTERM, args.sigterm_runs, plans, [0.3, 0.1, 0.1, 0.5],
      args.seed + 1, reference, duration, config, max_kills=2, log=log)
  print(kill_resume.summary('SIGKILL', kill))
  print(kill_resume.summary('SIGTERM', term))
  print(f'{time.monotonic() - start:.0f} s in all; workdirs in {root}')
  if not args.keep and not args.root:
    shutil.rmtree(root, ignore_errors=True)
  ok = (kill['identical'] == kill['runs'] and term['identical'] == term['runs']
        and not kill['failed'] and not term['failed'])
  sys.exit(0 if ok else 1)


if __name__ == '__main__':
  main()
