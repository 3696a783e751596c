"""Stopping cleanly when the scheduler says so (SIGTERM).

SLURM and cloud schedulers send SIGTERM before they preempt or time out a
job. With one process, a handler notes it and the loop stops after its
current step. Across processes (after `jax.distributed.initialize`), JAX's
preemption service catches the signal and
`multihost_utils.reached_preemption_sync_point(step)` turns True on every
process at the same step, so they all save the same checkpoint.

  watcher = preemption.Watcher()
  for step in ...:
    ...
    if watcher.reached(step):
      save(step); raise preemption.Preempted(step)
  watcher.close()
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class Preempted(Exception):
  """The run stopped on SIGTERM after saving a checkpoint."""

  def __init__(self, step: int, checkpoint_dir: str):
    super().__init__(f'preempted (SIGTERM): stopped at step {step} and saved a '
                     f'checkpoint in {checkpoint_dir}; run the same command '
                     'again to resume')
    self.step = step


# The exit status of a preempted run: 128 + SIGTERM, as if it had been killed
# by the signal, so schedulers and scripts see an unfinished run.
EXIT_STATUS = 128 + signal.SIGTERM


class Watcher:
  """reached(step) -> True once a SIGTERM has arrived (on any process)."""

  def __init__(self):
    self._multi = jax.process_count() > 1
    self._seen = threading.Event()
    self._previous = None
    if not self._multi and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._on_signal)

  def _on_signal(self, signum, frame):
    del signum, frame
    self._seen.set()

  def reached(self, step: int) -> bool:
    if self._multi:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._seen.is_set()

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
      self._previous = None
