"""Killed at any moment: does a rerun of the same command end bit-identical?
The parts of benchmarks/kill_resume.py (which runs them) and its short test.

  cmd = kill_resume.command(root, 24, project)   # project: the folder of configs/
  env = kill_resume.environment(root, project)
  config, reference, duration = kill_resume.reference_run(root, cmd, env)
  results = kill_resume.run_series(root, cmd, env, signal.SIGKILL, runs=20, ...)
  print(kill_resume.summary('SIGKILL', results))

A `Launch` is one start of the training command, its log read as it comes
to know its phase (startup, training, evaluation, final report). A series
starts each run in a fresh workdir, kills it 1 to 3 times at the moment its
plan draws ('save': 0 to 40 ms after orbax's temporary checkpoint folder
appears; 'evaluation', 'final': in that phase; 'training': anywhere once it
trains; 'any': anywhere), and lets
the last start finish. A run of several processes (`Group`: plain
processes with a coordinator on localhost) loses one of them, drawn at
random, and the others must stop on their own within a minute, each with
its line. Where each kill landed is read from the log and from
what it left (a temporary checkpoint folder left behind is a save it
interrupted). Every run's final train state (parameters, optimizer state,
batch statistics, step) is compared with the reference's, bit for bit.
"""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Optional

import jax
import numpy as np

from ae_research import parallel
from ae_research import workdir as workdir_lib

TMP_SUFFIX = '.orbax-checkpoint-tmp'
# Log lines that start a phase of a run (train.py), and its phases' names.
PHASES = (('Training batches made', 'training'),
          ('Evaluating step', 'evaluation'),
          ('Final report', 'final report'))


@dataclasses.dataclass
class Kill:
  plan: str  # What the killer waited for: save, evaluation, final, any.
  seconds: float  # After the start.
  landed: str  # Where it landed: inside a save, evaluation, training...
  victim: Optional[int] = None  # Of several processes, the one killed.
  # The others: (process, seconds it took to stop after the kill, its exit
  # status, the line it gave, '' if none).
  stops: tuple = ()


def next_phase(phase: str, line: str) -> str:
  """The phase of a run after this line of its log."""
  if phase == 'final report':
    return phase  # Its own evaluation is part of it.
  for marker, new in PHASES:
    if marker in line:
      phase = new
  return 'training' if 'eval step' in line and phase == 'evaluation' else phase


class Launch:
  """One start of the command; its log lines are read as they come."""

  def __init__(self, command: list[str], env: dict):
    self.started = time.monotonic()
    self.proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, env=env, text=True)
    self.lines: list[str] = []
    self.phase = 'startup'
    self._reader = threading.Thread(target=self._read, daemon=True)
    self._reader.start()

  def _read(self):
    for line in self.proc.stdout:
      self.lines.append(line)
      self.phase = next_phase(self.phase, line)

  def running(self) -> bool:
    return self.proc.poll() is None

  def elapsed(self) -> float:
    return time.monotonic() - self.started

  def finish(self) -> int:
    rc = self.proc.wait()
    self._reader.join()
    return rc


class Group:
  """The processes of one start of a multi-process run on this machine
  (`parallel.local_environments`: a coordinator on localhost), each a
  Launch; process 0's log gives the phase."""

  def __init__(self, command: list[str], env: dict, processes: int):
    envs = parallel.local_environments(processes, parallel.free_port(), env)
    self.launches = [Launch(command, e) for e in envs]

  @property
  def phase(self) -> str:
    return self.launches[0].phase

  @property
  def lines(self) -> list[str]:
    return self.launches[0].lines

  def running(self) -> bool:
    return any(l.running() for l in self.launches)

  def elapsed(self) -> float:
    return self.launches[0].elapsed()

  def finish(self) -> int:
    """The first non-zero exit status of its processes, else 0."""
    codes = [l.finish() for l in self.launches]
    return next((c for c in codes if c), 0)


def start(command: list[str], env: dict, processes: int = 1):
  """One start of the command: a Launch, or a Group of `processes`."""
  return Launch(command, env) if processes == 1 else Group(command, env, processes)


def _tmp_dirs(workdir: str) -> set[str]:
  ckpts = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpts):
    return set()
  return {n for n in os.listdir(ckpts) if TMP_SUFFIX in n}


def _wait_for(launch: Launch, plan: str, rng: np.random.Generator,
              workdir: str, duration: float, save_delay: float) -> bool:
  """Waits for the moment `plan` asks for; False if the run ended first."""
  if plan == 'any':
    deadline = rng.uniform(0.0, duration)  # A resumed start may end first.
    while launch.running() and launch.elapsed() < deadline:
      time.sleep(0.005)
  elif plan == 'training':  # Anywhere once it trains (not while it starts).
    while launch.running() and launch.phase == 'startup':
      time.sleep(0.005)
    deadline = launch.elapsed() + rng.uniform(0.0, duration / 2)
    while launch.running() and launch.elapsed() < deadline:
      time.sleep(0.005)
  elif plan == 'save':
    skip = int(rng.integers(0, 3))  # Which of the next saves.
    old = _tmp_dirs(workdir)  # Left by an earlier kill.
    while launch.running():
      new = _tmp_dirs(workdir) - old
      if new and not skip:
        time.sleep(rng.uniform(0.0, save_delay))
        break
      if new:  # Let this save finish; wait for another.
        skip -= 1
        while launch.running() and _tmp_dirs(workdir) & new:
          time.sleep(0.001)
      time.sleep(0.001)
  else:  # The evaluation or the final report.
    want = 'evaluation' if plan == 'evaluation' else 'final report'
    while launch.running() and launch.phase != want:
      time.sleep(0.002)
    time.sleep(rng.uniform(0.0, 0.5 if plan == 'evaluation' else 1.5))
  return launch.running()


def _kill(launch: Launch, sig: int, plan: str, rng, workdir: str,
          duration: float, save_delay: float) -> Optional[Kill]:
  """Kills the launch at the moment of `plan`; None if it ended first."""
  tmp_before = _tmp_dirs(workdir)
  if not _wait_for(launch, plan, rng, workdir, duration, save_delay):
    return None
  phase, seconds = launch.phase, launch.elapsed()
  launch.proc.send_signal(sig)
  launch.finish()
  if sig == signal.SIGKILL:
    left = _tmp_dirs(workdir) - tmp_before
    landed = (f'inside the save of step {min(left, key=len).split(".")[0]}'
              if left else phase)
  else:
    landed = phase
  return Kill(plan, seconds, landed)


def _kill_one_of(group: Group, plan: str, rng, workdir: str, duration: float,
                 save_delay: float, limit: float) -> Optional[Kill]:
  """SIGKILLs one process of the group, drawn at random, at the moment of
  `plan`, then times how long each other one takes to stop (at most `limit`
  seconds, then it is killed too and counted as hung); None if the run ended
  before the moment came."""
  tmp_before = _tmp_dirs(workdir)
  if not _wait_for(group, plan, rng, workdir, duration, save_delay):
    return None
  phase, seconds = group.phase, group.elapsed()
  victim = int(rng.integers(len(group.launches)))
  group.launches[victim].proc.kill()
  killed_at = time.monotonic()
  stops = []
  for i, launch in enumerate(group.launches):
    if i == victim:
      launch.finish()
      continue
    try:
      launch.proc.wait(timeout=max(0.0, limit - (time.monotonic() - killed_at)))
    except subprocess.TimeoutExpired:
      launch.proc.kill()
    rc = launch.finish()
    took = time.monotonic() - killed_at
    said = next((l.strip() for l in launch.lines
                 if l.startswith(f'error: process {i} of ')), '')
    stops.append((i, took, rc, said))
  left = _tmp_dirs(workdir) - tmp_before
  landed = (f'inside the save of step {min(left, key=len).split(".")[0]}'
            if left else phase)
  return Kill(plan, seconds, landed, victim, tuple(stops))


def how_it_stopped(victim: int, rc: int, said: str) -> Optional[str]:
  """How a process stopped after process `victim` was killed, or None when
  that is wrong: 'its line' (exit status LOST_EXIT, the line naming the lost
  process), 'finished' (exit 0: the run had ended), or, when the victim was
  process 0, whose coordination service jax's client cannot do without,
  'by jax' (jax's client ends it at once: SIGABRT)."""
  if rc == parallel.LOST_EXIT and said:
    return 'its line'
  if rc == 0:
    return 'finished'
  if victim == 0 and rc in (-signal.SIGABRT, 128 + signal.SIGABRT):
    return 'by jax'
  return None


def final_state(config, workdir: str):
  """(step, the leaves of the train state) of a run's newest checkpoint."""
  state, step = workdir_lib.restore_latest(config, workdir)
  return step, [np.asarray(x) for x in jax.tree.leaves(state)]


def same(a, b) -> bool:
  """Leaves bit for bit the same (dtype, shape and bytes)."""
  return len(a) == len(b) and all(
      x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
      for x, y in zip(a, b))


def run_series(root: str, command: list[str], env: dict, sig: int, runs: int,
               plans: list[str], weights: list[float], seed: int,
               reference, duration: float, config, max_kills: int = 3,
               save_delay: float = 0.04, log=print, processes: int = 1,
               stop_limit: float = 60.0) -> dict:
  """`runs` runs, each killed 1 to `max_kills` times with `sig` then run to
  the end; their final states compared with `reference`. A kill waiting
  for a save comes 0 to `save_delay` seconds after the save began. With
  several `processes` (SIGKILL), a kill takes one of them, and the others
  must stop within `stop_limit` seconds."""
  rng = np.random.default_rng(seed)
  name = signal.Signals(sig).name
  results = {'identical': 0, 'runs': runs, 'kills': [], 'failed': []}
  for i in range(runs):
    workdir = os.path.join(root, f'{name.lower()}_{i}')
    args = command + [f'--workdir={workdir}']
    kills, wanted = [], int(rng.integers(1, max_kills + 1))
    while len(kills) < wanted:
      plan = str(rng.choice(plans, p=weights))
      launch = start(args, env, processes)
      if processes > 1:
        kill = _kill_one_of(launch, plan, rng, workdir, duration, save_delay,
                            stop_limit)
      else:
        kill = _kill(launch, sig, plan, rng, workdir, duration, save_delay)
      if kill is None:  # It finished before the moment came.
        launch.finish()
        if kills:
          break
        shutil.rmtree(workdir)  # Every run is killed at least once.
        continue
      kills.append(kill)
      if processes > 1:
        slow = [f'process {i}: stopped after {t:.1f} s (exit {rc}'
                + (f': {said}' if said else ', without its line') + ')'
                for i, t, rc, said in kill.stops
                if t > stop_limit or how_it_stopped(kill.victim, rc, said) is None]
        if slow:
          results['failed'].append((workdir, 'after the kill of process '
                                    f'{kill.victim}: ' + '; '.join(slow), ''))
        continue
      rc = launch.proc.returncode
      if sig == signal.SIGTERM and rc not in (0, 143, -signal.SIGTERM):
        results['failed'].append((workdir, f'exit {rc} after SIGTERM',
                                  ''.join(launch.lines[-15:])))
    launch = start(args, env, processes)  # Runs to the end.
    rc = launch.finish()
    if rc != 0:
      with open(os.path.join(root, f'{name.lower()}_{i}.log'), 'w') as f:
        f.writelines(launch.lines)
      results['failed'].append((workdir, f'the last start exited with {rc}',
                                ''.join(launch.lines[-15:])))
      log(f'{name} run {i + 1}: did not resume (exit {rc})')
      continue
    step, state = final_state(config, workdir)
    identical = step == reference[0] and same(state, reference[1])
    results['identical'] += identical
    results['kills'].extend(kills)
    log(f'{name} run {i + 1}: ' + ', '.join(
        f'{k.seconds:.2f} s ({k.landed}; waited for: {k.plan}' + (
            f'; process {k.victim} killed, ' + ', '.join(
                f'{j} stopped {t:.1f} s later' for j, t, _, _ in k.stops)
            if k.victim is not None else '') + ')' for k in kills)
        + f' -> {"bit-identical" if identical else "DIFFERENT"} at step {step}')
  return results


def summary(name: str, results: dict) -> str:
  """`name: N/N runs bit-identical; K kills: where they landed`, and every
  start that did not resume."""
  kills = results['kills']
  where = {}
  for k in kills:
    key = 'inside a save' if k.landed.startswith('inside') else k.landed
    where[key] = where.get(key, 0) + 1
  lines = [f'{name}: {results["identical"]}/{results["runs"]} runs bit-identical; '
           f'{len(kills)} kills: ' + ', '.join(
               f'{n} {k}' for k, n in sorted(where.items(), key=lambda x: -x[1]))]
  stops = [(k.victim, *s) for k in kills for s in k.stops]
  if stops:
    times = sorted(t for _, _, t, _, _ in stops)
    how = {}
    for victim, _, _, rc, said in stops:
      key = how_it_stopped(victim, rc, said) or 'wrongly'
      how[key] = how.get(key, 0) + 1
    words = {'its line': 'with the line naming the lost process and the step',
             'by jax': "ended by jax's client when process 0 (its coordination "
                       'service) was lost', 'finished': 'had finished the run',
             'wrongly': 'otherwise (a failure)'}
    lines.append(f'  the other processes: {len(stops)} stopped after {times[0]:.1f} '
                 f'to {times[-1]:.1f} s (median {times[len(times) // 2]:.1f} s): '
                 + ', '.join(f'{n} {words[k]}' for k, n in how.items()))
  for workdir, why, tail in results['failed']:
    lines.append(f'  did not resume: {workdir}: {why}\n{tail}')
  return '\n'.join(lines)


def command(root: str, steps: int, project: str) -> list[str]:
  """The training command every start runs (a workdir flag is added), of
  the project folder `project` (that holds configs/)."""
  return [sys.executable, '-m', 'ae_research.main',
          f'--config={os.path.join(project, "configs", "colorize.py")}:smoke',
          f'--config.data_dir={os.path.join(root, "data")}',
          f'--config.num_train_steps={steps}',
          '--config.checkpoint_every_steps=3', '--config.eval_every_steps=8',
          '--config.log_every_steps=4', '--config.keep_checkpoints=3']


def environment(root: str, project: str) -> dict:
  """The starts import the project's code and share a compilation cache
  (they start faster; the same executables run)."""
  path = os.pathsep.join([project] + [p for p in [os.environ.get('PYTHONPATH')] if p])
  return dict(os.environ, PYTHONPATH=path,
              JAX_COMPILATION_CACHE_DIR=os.path.join(root, 'jax_cache'),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0')


def reference_run(root: str, cmd: list[str], env: dict, timed: bool = True,
                  processes: int = 1):
  """(config, (step, final state), seconds a start takes) of an
  uninterrupted run (of `processes` processes); `timed` runs a second one,
  with warm caches, to time."""
  workdir = os.path.join(root, 'reference')
  launch = start(cmd + [f'--workdir={workdir}'], env, processes)
  if launch.finish() != 0:
    raise RuntimeError('the reference run failed:\n' + ''.join(launch.lines[-30:]))
  duration = launch.elapsed()
  if timed:
    again = start(cmd + [f'--workdir={workdir}_timed'], env, processes)
    again.finish()
    duration = again.elapsed()
  config = workdir_lib.load_config(workdir)
  return config, final_state(config, workdir), duration
