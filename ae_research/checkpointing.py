"""Orbax checkpoints of the train state, the data position and the RNG.

Saves are asynchronous; the last `max_to_keep` are kept. A save killed before
it finished leaves only a temporary folder, which restore ignores.
"""

import os
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
  """`save(step, state, data_state, rng)` and `restore(abstract_state)`."""

  def __init__(self, directory: str, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save),
        item_names=('state', 'data', 'rng'))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict, rng: jax.Array) -> None:
    rng_data = np.asarray(jax.random.key_data(rng)).tolist()
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=ocp.args.JsonSave(data_state),
        rng=ocp.args.JsonSave({'key_data': rng_data})))

  def restore(self, abstract_state: Any, step: Optional[int] = None):
    """(state, data_state, rng) of `step`, by default the latest."""
    step = self.latest_step() if step is None else step
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=ocp.args.JsonRestore(),
        rng=ocp.args.JsonRestore()))
    rng = jax.random.wrap_key_data(
        np.asarray(restored['rng']['key_data'], np.uint32))
    return restored['state'], restored['data'], rng

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
