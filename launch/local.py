"""Runs a study's points as local processes, several at once.

  python -m launch.local experiments/denoise_sigma.py --root=runs/denoise_sigma
  python -m launch.local experiments/sr_scale_width.py --root=runs/sr --parallel=2 \
      --config.num_train_steps=500
  # 8 GPUs, 4 points at once on 2 GPUs each; or 2 points sharing each GPU:
  python -m launch.local STUDY --root=DIR --parallel=4 --devices_per_point=2
  python -m launch.local STUDY --root=DIR --parallel=16 --points_per_device=2

Each point trains in ROOT/<point name> (its output in ROOT/<point name>.log),
at most --parallel at a time. Running the same command again skips finished
points and resumes interrupted ones from their checkpoints. At the end the
study's report is written: ROOT/results.md, results.json and a PNG per
metric. Extra --config.FIELD=VALUE flags apply to every point. Exit status 1
if a point failed.

On a host with GPUs every jax process would see every card and, by default,
take 75% of each card's memory, so points started together collide. Here
each point is given its own group of --devices_per_point GPUs
(CUDA_VISIBLE_DEVICES): at most as many points run as there are groups, the
rest wait, and a point that ends (finished or failed) frees its group for
the next. --points_per_device=P lets P points share a group, each held to
its share of the memory (XLA_PYTHON_CLIENT_MEM_FRACTION = 0.9 / P). The
GPUs are those CUDA_VISIBLE_DEVICES names, else those `nvidia-smi` lists, or
--devices=0,1,...; with none (a CPU machine, or --devices=none) points
share the host as before. Which point runs where is printed as it starts.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

from ae_research import summaries, sweep

MEMORY_SHARE = 0.9  # Of a card, split between the points that share it.


def visible_gpus(environ: Optional[dict] = None,
                 smi: Optional[Callable[[], Optional[str]]] = None) -> list[str]:
  """The host's GPUs, without starting jax (which would take their memory):
  CUDA_VISIBLE_DEVICES where set (empty: none), else `nvidia-smi`'s list."""
  environ = os.environ if environ is None else environ
  if 'CUDA_VISIBLE_DEVICES' in environ:
    return [d.strip() for d in environ['CUDA_VISIBLE_DEVICES'].split(',')
            if d.strip() and d.strip() != '-1']
  listed = (smi or _nvidia_smi)()
  return [line.strip() for line in (listed or '').splitlines() if line.strip()]


def _nvidia_smi() -> Optional[str]:
  if not shutil.which('nvidia-smi'):
    return None
  try:
    out = subprocess.run(['nvidia-smi', '--query-gpu=index', '--format=csv,noheader'],
                         capture_output=True, text=True, timeout=30, check=False)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout if out.returncode == 0 else None


class Devices:
  """Groups of `per_point` devices, each lent to up to `share` points at a
  time; without devices, one unlimited group (the host's CPU)."""

  def __init__(self, devices: Sequence[str], per_point: int = 1, share: int = 1):
    if per_point < 1 or share < 1:
      raise ValueError('--devices_per_point and --points_per_device must be >= 1')
    if devices and per_point > len(devices):
      raise ValueError(f'--devices_per_point={per_point}, but this host has '
                       f'{len(devices)} GPU(s): {",".join(devices)}')
    usable = len(devices) // per_point * per_point
    self.groups = [tuple(devices[i:i + per_point]) for i in range(0, usable, per_point)]
    self.unused = list(devices[usable:])
    self.share = share
    self.users: dict[tuple, int] = {g: 0 for g in self.groups}

  @property
  def places(self) -> Optional[int]:
    """Points that can run at once (None: no devices, no limit)."""
    return len(self.groups) * self.share if self.groups else None

  def take(self) -> Optional[tuple]:
    """The least used group with room (None without devices); the caller
    has checked that there is room."""
    if not self.groups:
      return None
    group = min(self.groups, key=lambda g: self.users[g])
    assert self.users[group] < self.share
    self.users[group] += 1
    return group

  def give_back(self, group: Optional[tuple]) -> None:
    if group is not None:
      self.users[group] -= 1

  def environment(self, group: Optional[tuple]) -> dict[str, str]:
    """What a point on `group` is given: its devices, and its share of their
    memory when it shares them."""
    if group is None:
      return {}
    env = {'CUDA_VISIBLE_DEVICES': ','.join(group)}
    if self.share > 1:
      env['XLA_PYTHON_CLIENT_MEM_FRACTION'] = f'{MEMORY_SHARE / self.share:.3f}'
    return env

  @staticmethod
  def describe(group: Optional[tuple]) -> str:
    if group is None:
      return ''
    return f' on GPU{"s" if len(group) > 1 else ""} {",".join(group)}'


def run(module, root: str, parallel: int, extra: list[str],
        env: dict | None = None, poll: float = 1.0,
        devices: Optional[Devices] = None,
        command: Optional[Callable[..., list[str]]] = None) -> dict[str, int]:
  """Trains the points not yet done, each on its own device group (see the
  module's docstring); returns {point name: exit status}."""
  study = module.STUDY
  devices = devices or Devices([])
  command = command or sweep.command
  if devices.places is not None and parallel > devices.places:
    print(f'--parallel={parallel}, but {len(devices.groups)} group(s) of GPUs '
          f'x {devices.share} point(s) each: {devices.places} at once, the '
          'rest wait for a group to free', flush=True)
    parallel = devices.places
  if devices.unused:
    print(f'GPU(s) {",".join(devices.unused)} left unused (not a whole group '
          'of --devices_per_point)', flush=True)
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
  placed: dict[str, Optional[tuple]] = {}
  results: dict[str, int] = {}
  start, total = time.time(), len(todo)
  if todo and len(todo) > parallel:
    print(f'{len(todo)} points, {parallel} at a time: the others wait', flush=True)
  try:
    while todo or running:
      while todo and len(running) < parallel:
        name, point, state = todo.pop(0)
        argv = command(study, point, os.path.join(root, name), extra)
        group = devices.take()
        given = devices.environment(group)
        log = open(os.path.join(root, f'{name}.log'), 'a')  # pylint: disable=consider-using-with
        log.write(''.join(f'{k}={v} ' for k, v in given.items()) + f'$ {" ".join(argv)}\n')
        log.flush()
        # Its own session: Ctrl-C reaches the launcher alone, which then
        # sends SIGTERM, so the run saves a checkpoint before it stops.
        running[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**(os.environ if env is None else env), **given})
        placed[name] = group
        print(f'{name}: {"resumed" if state == "started" else "started"}'
              f'{devices.describe(group)} (log: {os.path.join(root, name)}.log)',
              flush=True)
      for name, proc in list(running.items()):
        if proc.poll() is not None:
          results[name] = proc.returncode
          del running[name]
          devices.give_back(placed.pop(name))
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
  parser.add_argument('--devices', default='auto',
                      help='GPUs to give the points: auto (CUDA_VISIBLE_DEVICES, '
                      'else nvidia-smi), none (share the host), or a list: 0,1,2')
  parser.add_argument('--devices_per_point', type=int, default=1,
                      help='GPUs each point is given (default %(default)s)')
  parser.add_argument('--points_per_device', type=int, default=1,
                      help='points sharing one group of GPUs, each with its share '
                      'of their memory (default %(default)s: a group each)')
  args, extra = parser.parse_known_args(argv)
  bad = [a for a in extra if not a.startswith('--config.')]
  if bad or args.parallel < 1:
    parser.error(f'unknown arguments {bad}' if bad else '--parallel must be >= 1')
  if args.devices == 'auto':
    gpus = visible_gpus()
  elif args.devices == 'none':
    gpus = []
  else:
    gpus = [d.strip() for d in args.devices.split(',') if d.strip()]
  try:
    devices = Devices(gpus, args.devices_per_point, args.points_per_device)
    module = sweep.load(args.study)
  except ValueError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  results = run(module, args.root, args.parallel, extra, devices=devices)
  rows = sweep.write_report(module, args.root)
  print(f'report: {os.path.join(args.root, "results.md")} '
        f'({sum(r["status"] == "done" for r in rows)}/{len(rows)} points done)')
  return 1 if any(results.values()) else 0


if __name__ == '__main__':
  sys.exit(main())
