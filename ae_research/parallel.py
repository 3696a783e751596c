"""Data parallelism: a 1-D device mesh over every device of every process,
batches sharded over it, state replicated.

A run across processes or hosts calls `initialize_distributed` first (main.py
does): under `srun -n K`, on a Cloud TPU pod slice or another cluster that
`jax.distributed.initialize()` detects.
"""

import os
import socket
import sys
import threading
import time
import types
from typing import Any, Callable, Optional, Sequence

import jax
from jax._src import distributed
from jax.experimental import multihost_utils
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


# Seconds without a heartbeat after which jax's coordination service holds a
# process lost (jax's default: 100); every other process then stops.
HEARTBEAT_SECONDS = int(os.environ.get('AE_RESEARCH_HEARTBEAT_SECONDS', '20'))
# Exit status of a process that stops because another one was lost: rerun.
LOST_EXIT = 75
# Plain local processes (no SLURM): their count and each one's index, with
# the coordinator in JAX_COORDINATOR_ADDRESS (launch/processes.py sets them).
PROCESSES_VARIABLE = 'AE_RESEARCH_PROCESSES'
PROCESS_ID_VARIABLE = 'AE_RESEARCH_PROCESS_ID'


def free_port() -> int:
  """A TCP port of localhost that nothing listens on now."""
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def local_environments(processes: int, port: int, base: Optional[dict] = None,
                       gpus: Sequence[str] = ()) -> list[dict]:
  """The environments of the processes of one run on this machine: the
  coordinator on localhost:`port` (process 0 serves it), their count, each
  one's index, and its GPU when there is one for each."""
  base = dict(os.environ if base is None else base)
  out = []
  for i in range(processes):
    env = dict(base, JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}',
               **{PROCESSES_VARIABLE: str(processes), PROCESS_ID_VARIABLE: str(i)})
    if len(gpus) >= processes:
      env['CUDA_VISIBLE_DEVICES'] = gpus[i]
    out.append(env)
  return out


def initialize_distributed(mode: str = 'auto') -> bool:
  """Joins the processes of a multi-process run; True if it did.

  mode: 'auto' joins when SLURM started this process as one of several
  tasks of a job step (srun -n K), or when AE_RESEARCH_PROCESSES > 1 (plain
  processes on one machine, launch/processes.py); 'on' always calls
  `jax.distributed.initialize()`, which reads the cluster's environment
  (SLURM, Cloud TPU, Open MPI, or JAX_COORDINATOR_ADDRESS...); 'off' never.
  The coordination service holds a process lost after HEARTBEAT_SECONDS
  without its heartbeat; each other process then stops (`ProcessWatch`)
  with one line, instead of waiting in a collective.
  """
  local = int(os.environ.get(PROCESSES_VARIABLE, '1'))
  slurm = int(os.environ.get('SLURM_STEP_NUM_TASKS', '1'))
  if mode == 'off' or (mode == 'auto' and slurm <= 1 and local <= 1):
    return False
  # Collectives between CPU processes go through gloo (one CPU device per
  # process: several per process deadlock XLA:CPU's collectives).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  given = {}
  if local > 1:
    given = dict(coordinator_address=os.environ['JAX_COORDINATOR_ADDRESS'],
                 num_processes=local,
                 process_id=int(os.environ[PROCESS_ID_VARIABLE]))
  # A lost process is not a fatal error of the others (jax would abort them
  # with a C++ stack trace): ProcessWatch stops them, each with one line.
  jax.config.update('jax_enable_recoverability', True)
  jax.distributed.initialize(**given, heartbeat_timeout_seconds=HEARTBEAT_SECONDS)
  return True


# Where this process is (the training loop keeps it), for the line of
# `stop_lost`.
progress = types.SimpleNamespace(step=None, phase='startup')


def stop_lost(cause: str) -> None:
  """Ends this process because another process of the run is lost: one line
  naming the cause and where this process was, then exit status LOST_EXIT,
  without the shutdown barrier (which would wait for the lost one)."""
  where = (f'at step {progress.step} ({progress.phase})' if progress.step
           else f'in its {progress.phase}')
  sys.stderr.write(f'error: process {jax.process_index()} of {jax.process_count()} '
                   f'stops {where}: {cause}. Run the same command again: it '
                   'resumes from the newest checkpoint that every process '
                   'completed.\n')
  sys.stderr.flush()
  sys.stdout.flush()
  os._exit(LOST_EXIT)  # pylint: disable=protected-access


class ProcessWatch:
  """Stops this process when another process of the run is lost.

  jax's coordination service holds a process lost when its heartbeats stop
  for HEARTBEAT_SECONDS (killed, its host gone). A thread asks the service
  which processes are alive (`get_live_nodes`, which returns once every live
  process has asked: it waits out a lost one's heartbeat timeout) and, when
  one is missing, ends this process with `stop_lost`. The run is made
  recoverable (jax_enable_recoverability), so that jax does not abort the
  other processes itself with a C++ stack trace when a heartbeat stops; the
  process that hosts the service (process 0) cannot be recovered from, and
  when it dies jax's client may end the others at once with its own message
  before this one is printed.

  `finished()` ends the watch when this process ends (normally, or with its
  own error).
  """

  def __init__(self, client: Any = None, poll_seconds: float = 1.0,
               stop: Callable[[str], None] = None):
    self._client = client
    self._poll = poll_seconds
    self._stop = stop or stop_lost
    self._done = threading.Event()

  def start(self) -> 'ProcessWatch':
    if self._client is None:
      self._client = distributed.global_state.client
    threading.Thread(target=self._watch, name='process watch', daemon=True).start()
    return self

  def finished(self) -> None:
    self._done.set()

  def _watch(self) -> None:
    everyone = list(range(jax.process_count()))
    while not self._done.is_set():
      try:
        live = self._client.get_live_nodes(everyone)
      except Exception as e:  # pylint: disable=broad-except
        if not self._done.is_set():
          self._stop('the coordination service (process 0) is lost ('
                     + str(e).splitlines()[0][:200] + ')')
        return
      missing = sorted(set(everyone) - set(live))
      if missing and not self._done.is_set():
        ids = ', '.join(map(str, missing))
        self._stop(f'process{"es" if len(missing) > 1 else ""} {ids} '
                   f'{"are" if len(missing) > 1 else "is"} lost (its heartbeats '
                   'stopped)')
        return
      self._done.wait(self._poll)


def leave_together() -> None:
  """The end of a multi-process run: every process leaves once all are here,
  process 0 (which serves the coordination service) after the others have
  disconnected, so that none of them sees the service go as a failure."""
  multihost_utils.sync_global_devices('ae_research: the run ends')
  if jax.process_index() != 0:
    jax.distributed.shutdown()
    return
  client = distributed.global_state.client
  everyone = list(range(jax.process_count()))

  def others_gone() -> None:  # Returns once the others are not live.
    while set(client.get_live_nodes(everyone)) - {0}:
      time.sleep(0.05)

  waiting = threading.Thread(target=others_gone, daemon=True)
  waiting.start()
  waiting.join(timeout=2 * HEARTBEAT_SECONDS)
  jax.distributed.shutdown()


def lost_peer(e: BaseException) -> bool:
  """An error of a collective or of the coordination service that another
  process's death causes (gloo's closed connection, an unavailable task)."""
  text = str(e)
  return any(k in text for k in ('Gloo', 'Connection closed by peer',
                                 'heartbeat', 'UNAVAILABLE', 'Barrier failed'))


def local_copy(tree: Any) -> Any:
  """This process's copy of replicated arrays, on one of its devices: for
  host-side work (whole-image evaluation, samples) that involves no other
  process."""
  return jax.tree.map(lambda x: x.addressable_data(0) if isinstance(x, jax.Array)
                      else x, tree)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (DATA_AXIS,),
                       axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharded(mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch: dict[str, np.ndarray], mesh) -> dict[str, jax.Array]:
  """This process's part of the batch -> global arrays sharded over `mesh`."""
  sharding = batch_sharded(mesh)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


def jit_train_step(train_step, mesh):
  """train_step(state, batch, rng) jitted over `mesh`, the state donated."""
  rep, shard = replicated(mesh), batch_sharded(mesh)
  return jax.jit(train_step, in_shardings=(rep, shard, rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def jit_eval_step(eval_step, mesh):
  rep, shard = replicated(mesh), batch_sharded(mesh)
  return jax.jit(eval_step, in_shardings=(rep, shard), out_shardings=rep)


def fetch(tree: Any) -> Any:
  """Device values -> host numpy (replicated arrays only)."""
  return jax.tree.map(np.asarray, jax.device_get(tree))
