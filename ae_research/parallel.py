"""Data parallelism: a 1-D device mesh over every device of every process,
batches sharded over it, state replicated.

A run across processes or hosts calls `initialize_distributed` first (main.py
does): under `srun -n K`, on a Cloud TPU pod slice or another cluster that
`jax.distributed.initialize()` detects.
"""

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


def initialize_distributed(mode: str = 'auto') -> bool:
  """Joins the processes of a multi-process run; True if it did.

  mode: 'auto' joins when SLURM started this process as one of several
  tasks of a job step (srun -n K); 'on' always calls
  `jax.distributed.initialize()`, which reads the cluster's environment
  (SLURM, Cloud TPU, Open MPI, or JAX_COORDINATOR_ADDRESS...); 'off' never.
  """
  if mode == 'off' or (mode == 'auto' and
                       int(os.environ.get('SLURM_STEP_NUM_TASKS', '1')) <= 1):
    return False
  # Collectives between CPU processes go through gloo (one CPU device per
  # process: several per process deadlock XLA:CPU's collectives).
  jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize()
  return True


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
