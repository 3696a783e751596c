"""Runs a study's points as local processes, several at once.

  python -m launch.local experiments/denoise_sigma.py --root=runs/denoise_sigma
  python -m launch.local experiments/sr_scale_width.py --root=runs/sr --parallel=2 \
      --config.num_train_steps=500

Each point trains in ROOT/<point name> (its output in ROOT/<point name>.log),
at most --parallel at a time. Running the same command again skips finished
points and resumes interrupted ones from their checkpoints. At the end the
study's report is written: ROOT/results.md, results.json and a PNG per
metric. Extra --config.FIELD=VALUE flags apply to every point. Exit status 1
if a point failed.
"""

import argparse
import os
import subprocess
import sys
import time

from ae_research import summaries, sweep


def run(module, root: str, parallel: int, extra: list[str],
        env: dict | None = None, poll: float = 1.0) -> dict[str, int]:
  """Trains the points not yet done; returns {point name: exit status}."""
  study = module.STUDY
  todo = []
  for point in study.points:
    name = sweep.point_name(point)
    state = sweep.status(os.path.join(root, name))
    if state == 'done':
      print(f'{name}: done, skipped', flush=True)
    else:
      todo.append((name, point, state))
  os.makedirs(root, exist_ok=True)
  running: dict[str, subprocess.Popen] = {}
  results: dict[str, int] = {}
  start, total = time.time(), len(todo)
  try:
    while todo or running:
      while todo and len(running) < parallel:
        name, point, state = todo.pop(0)
        argv = sweep.command(study, point, os.path.join(root, name), extra)
        log = open(os.path.join(root, f'{name}.log'), 'a')  # pylint: disable=consider-using-with
        log.write(f'$ {" ".join(argv)}\n')
        log.flush()
        # Its own session: Ctrl-C reaches the launcher alone, which then
        # sends SIGTERM, so the run saves a checkpoint before it stops.
        running[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        print(f'{name}: {"resumed" if state == "started" else "started"} '
              f'(log: {os.path.join(root, name)}.log)', flush=True)
      for name, proc in list(running.items()):
        if proc.poll() is not None:
          results[name] = proc.returncode
          del running[name]
          finished = len(results)
          eta = (time.time() - start) / finished * (total - finished)
          print(f'{name}: {"finished" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"}'
                f' [{finished}/{total}, ETA {summaries.format_duration(eta)}]', flush=True)
      time.sleep(poll)
  finally:  # Interrupted: stop the runs (they save and resume next time).
    for proc in running.values():
      proc.terminate()
    for proc in running.values():
      proc.wait()
  return results


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m launch.local',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('study', help='a study file in experiments/')
  parser.add_argument('--root', required=True, help='folder of the runs')
  parser.add_argument('--parallel', type=int, default=1,
                      help='points trained at once (default %(default)s)')
  args, extra = parser.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith('--config.')]
  if bad or args.parallel < 1:
    parser.error(f'unknown arguments {bad}' if bad else '--parallel must be >= 1')
  try:
    module = sweep.load(args.study)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  results = run(module, args.root, args.parallel, extra)
  rows = sweep.write_report(module, args.root)
  print(f'report: {os.path.join(args.root, "results.md")} '
        f'({sum(r["status"] == "done" for r in rows)}/{len(rows)} points done)')
  return 1 if any(results.values()) else 0


if __name__ == '__main__':
  sys.exit(main())
