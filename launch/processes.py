"""One training run as several processes on this machine.

  python -m launch.processes --processes=2 -- \
      --config=configs/colorize.py:smoke --workdir=runs/two

What `srun -n N python -m ae_research.main ...` does on a SLURM cluster,
without one: N processes of `python -m ae_research.main` with the flags
after `--`, joined by jax.distributed with its coordinator on localhost
(process 0 serves it). Process 0 reports progress; the others log warnings
only. On a host with GPUs process i is given GPU i (CUDA_VISIBLE_DEVICES).

When a process dies (killed, out of memory), the others stop on their own
within jax's heartbeat timeout (parallel.HEARTBEAT_SECONDS, 20 s), each with
one line naming the lost process and its step, and exit with status 75; this
command exits with the first non-zero status. Running the same command
again resumes from the newest checkpoint that every process completed.
SIGTERM and SIGINT are passed to every process (each saves and stops).
"""

import argparse
import os
import signal
import subprocess
import sys
import time
from typing import Optional, Sequence

from ae_research import parallel
from launch import local

# Beyond the heartbeat timeout, how long the others may take to stop after
# one has died before this command kills them (it says so).
GRACE_SECONDS = 30


def start(flags: Sequence[str], processes: int, base: Optional[dict] = None,
          gpus: Sequence[str] = (), **popen) -> list[subprocess.Popen]:
  """The N processes of one run, started."""
  command = [sys.executable, '-m', 'ae_research.main', *flags]
  return [subprocess.Popen(command, env=env, **popen) for env in
          parallel.local_environments(processes, parallel.free_port(), base, gpus)]


def saved_steps(workdir: Optional[str]) -> list[int]:
  """The steps of the complete checkpoints in `workdir` (Orbax commits one
  after every process has written its part; a save cut short is left as a
  temporary folder)."""
  folder = os.path.join(workdir or '', 'checkpoints')
  if not workdir or not os.path.isdir(folder):
    return []
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def wait(procs: list[subprocess.Popen], log=print,
         workdir: Optional[str] = None) -> int:
  """Waits for every process; the first non-zero exit status (0 if none).
  After one fails, the others get the heartbeat timeout and GRACE_SECONDS
  to stop on their own, then are killed; then one line says how each ended
  (the one that ended first first) and where a rerun resumes."""
  failed_at, order = None, []
  while any(p.poll() is None for p in procs):
    order += [i for i, p in enumerate(procs) if p.poll() is not None and i not in order]
    if failed_at is None and any(p.returncode for p in procs if p.poll() is not None):
      failed_at = time.monotonic()
    if (failed_at is not None and time.monotonic() - failed_at >
        parallel.HEARTBEAT_SECONDS + GRACE_SECONDS):
      for i, p in enumerate(procs):
        if p.poll() is None:
          log(f'process {i} did not stop after another failed; killed')
          p.kill()
    time.sleep(0.2)
  order += [i for i in range(len(procs)) if i not in order]
  if any(p.returncode for p in procs):  # Who ended first, and how each did.
    steps = saved_steps(workdir)
    log('; '.join(f'process {i}: {describe(procs[i].returncode)}' for i in order)
        + ('. Run the same command again: it resumes from step '
           f'{steps[-1]}, the newest checkpoint every process completed'
           if steps else ''))
  return next((procs[i].returncode for i in order if procs[i].returncode), 0)


def describe(status: int) -> str:
  """An exit status in words."""
  if status < 0:
    return f'ended by {signal.Signals(-status).name}'
  if status == parallel.LOST_EXIT:
    return 'stopped: another process was lost'
  return 'finished' if status == 0 else f'exit status {status}'



def main(argv: Optional[list[str]] = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  ours, flags = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) \
      if '--' in argv else (argv, [])
  parser = argparse.ArgumentParser(prog='python -m launch.processes',
                                   description=__doc__.split('\n')[0])
  parser.add_argument('--processes', type=int, default=2)
  args = parser.parse_args(ours)
  if args.processes < 1 or not flags:
    parser.error('give --processes=N (N >= 1), then -- and the flags of '
                 'python -m ae_research.main')
  procs = start(flags, args.processes, gpus=local.visible_gpus())

  def forward(signum, _):
    for p in procs:
      if p.poll() is None:
        p.send_signal(signum)
  signal.signal(signal.SIGTERM, forward)
  signal.signal(signal.SIGINT, forward)
  workdir = next((f.split('=', 1)[1] for f in reversed(flags)
                  if f.startswith('--workdir=')), None)
  status = wait(procs, log=lambda m: print(f'launch.processes: {m}', file=sys.stderr,
                                           flush=True), workdir=workdir)
  return 128 - status if status < 0 else status  # Killed by N: 128 + N, as a shell.


if __name__ == '__main__':
  sys.exit(main())
