"""Data parallelism: a 1-D device mesh, batches sharded over it, state replicated."""

from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

DATA_AXIS = 'data'


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
