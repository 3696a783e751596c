"""Orbax checkpoints of the train state, the data position and the RNG,
each with a checksum of its contents.

  ckpt = Checkpointer('runs/x/checkpoints')
  ckpt.save(step, state, data_state, rng)            # asynchronous
  state, data_state, rng, step = ckpt.restore_intact(abstract_state)

Saves are asynchronous; the last `max_to_keep` are kept. A save killed before
it finished leaves only a temporary folder, which restore ignores. Beside the
state, data position and RNG, every checkpoint stores the SHA-256 of all
three (item `digest`), computed from the values being saved. A restore
recomputes it from the values read back: a checkpoint whose files were
truncated, altered (a flipped bit in an array), removed or half written
raises `DamagedCheckpoint` (it never restores silently). `restore_intact`
then takes the newest checkpoint that is intact, warning about each damaged
one; a training run moves the damaged ones out of the way
(`quarantine`), so the steps it saves again do not collide with them.
"""

import contextlib
import hashlib
import json
import os
import shutil
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from ae_research import errors

DIGEST = 'digest'  # The item holding the checksum.


class DamagedCheckpoint(errors.UserError):
  """A checkpoint that cannot be read back as it was saved, or a folder
  holding no intact checkpoint."""


def digest(state: Any, data_state: Any, rng_data: Any) -> str:
  """SHA-256 (hex) of a checkpoint's values: every leaf of the state (its
  path, dtype, shape and bytes), the data position and the RNG key data."""
  h = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
    array = np.ascontiguousarray(np.asarray(leaf))
    h.update(f'{jax.tree_util.keystr(path)}|{array.dtype}|{array.shape}|'.encode())
    h.update(array.tobytes())
  h.update(json.dumps(data_state, sort_keys=True).encode())
  h.update(json.dumps(rng_data).encode())
  return h.hexdigest()


# Files every checkpoint has, and the (JSON) metadata files orbax writes.
_REQUIRED = ('_CHECKPOINT_METADATA', 'state/_METADATA', 'state/manifest.ocdbt',
             'data/metadata', 'rng/metadata')
_METADATA_NAMES = ('_CHECKPOINT_METADATA', '_METADATA', '_sharding', 'metadata')


def _check_files(path: str, checked: bool) -> None:
  """DamagedCheckpoint if a file every checkpoint has is missing, or a
  metadata file does not parse (half written, altered)."""
  for name in _REQUIRED + ((f'{DIGEST}/metadata',) if checked else ()):
    if not os.path.isfile(os.path.join(path, name)):
      raise DamagedCheckpoint(f'checkpoint {path} is damaged: its file {name} '
                              'is missing')
  for root, _, files in os.walk(path):
    for f in files:
      if f in _METADATA_NAMES or os.path.basename(root) == 'array_metadatas':
        try:
          with open(os.path.join(root, f), 'rb') as fh:
            json.loads(fh.read())
        except ValueError as e:
          raise DamagedCheckpoint(
              f'checkpoint {path} is damaged: its metadata file '
              f'{os.path.relpath(os.path.join(root, f), path)} does not parse '
              f'({_first_line(e)})') from None


def _has_digest(path: str) -> bool:
  """Whether the checkpoint was saved with a checksum: its folder holds
  one, or its metadata lists one (a checksum removed is damage, not an old
  checkpoint)."""
  if os.path.isdir(os.path.join(path, DIGEST)):
    return True
  try:
    with open(os.path.join(path, '_CHECKPOINT_METADATA')) as f:
      return DIGEST in json.load(f).get('item_handlers', {})
  except (OSError, ValueError, AttributeError):
    return False  # _check_files says what is wrong with it.


def _first_line(e: BaseException) -> str:
  text = str(e).strip().split(' See full TensorStore details')[0].splitlines()
  return f'{type(e).__name__}: {text[0][:300] if text else ""}'


class Checkpointer:
  """`save(step, state, data_state, rng)`, `restore(abstract_state, step)`
  and `restore_intact(abstract_state)`."""

  def __init__(self, directory: str, max_to_keep: int = 3,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=async_save),
        item_names=('state', 'data', 'rng', DIGEST))
    self._saving = None  # The step of the last save started.
    self._failed = False  # A save failed (StorageError raised).

  def step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, step: int, state: Any, data_state: dict, rng: jax.Array) -> None:
    """Starts saving `step` (written in the background when asynchronous);
    the checksum is computed here, from the values handed over.

    A save that fails because the disk is full or the folder is read-only
    raises errors.StorageError, here or (asynchronous) at the next save,
    `wait` or `close`, naming its step and cause; the checkpoints saved
    before it are left intact (orbax writes into a temporary folder).
    """
    rng_data = np.asarray(jax.random.key_data(rng)).tolist()
    self.wait()  # An error of the save before is reported as its own.
    self._saving = step
    with self._storage():
      self._manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state),
          data=ocp.args.JsonSave(data_state),
          rng=ocp.args.JsonSave({'key_data': rng_data}),
          **{DIGEST: ocp.args.JsonSave(
              {'sha256': digest(state, data_state, rng_data)})}))

  @contextlib.contextmanager
  def _storage(self):
    """Turns a save that failed for want of space or permission into a
    StorageError naming the step, what is intact and what to do."""
    try:
      yield
    except Exception as e:  # pylint: disable=broad-except
      cause = errors.storage_cause(e)
      if cause is None:
        raise
      self._failed = True
      intact = [s for s in self.all_steps() if s != self._saving]
      raise errors.StorageError(
          f'cannot write the checkpoint of step {self._saving} in '
          f'{self.directory}: {cause}. The checkpoints saved before it '
          f'(steps {", ".join(map(str, sorted(intact))) or "none"}) are intact; '
          'free space (or make the folder writable) and run the same '
          'command again: it resumes from the newest.') from e

  def restore(self, abstract_state: Any, step: Optional[int] = None):
    """(state, data_state, rng) of `step`, by default the latest, checked
    against its checksum; DamagedCheckpoint if it cannot be read back as
    saved. A checkpoint written before checksums were stored is restored
    with a warning that it was not verified."""
    step = self.latest_step() if step is None else step
    path = self.step_dir(step)
    checked = _has_digest(path)
    items = dict(state=ocp.args.StandardRestore(abstract_state),
                 data=ocp.args.JsonRestore(), rng=ocp.args.JsonRestore())
    if checked:
      items[DIGEST] = ocp.args.JsonRestore()
    _check_files(path, checked)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
      rng_data = restored['rng']['key_data']
      rng = jax.random.wrap_key_data(np.asarray(rng_data, np.uint32))
      stored = restored[DIGEST]['sha256'] if checked else None
    except Exception as e:  # pylint: disable=broad-except
      # Whatever orbax, tensorstore or json raise on files that are not
      # what was written: missing, truncated, not parseable.
      raise DamagedCheckpoint(
          f'checkpoint {path} is damaged: it cannot be read back '
          f'({_first_line(e)})') from e
    if checked and digest(restored['state'], restored['data'],
                          rng_data) != stored:
      raise DamagedCheckpoint(
          f'checkpoint {path} is damaged: the values read back do not match '
          'the checksum saved with them')
    if not checked:
      logging.warning('Checkpoint %s was written without a checksum: restored '
                      'unverified.', path)
    return restored['state'], restored['data'], rng

  def restore_intact(self, abstract_state: Any,
                     quarantine: Optional[str] = None):
    """(state, data_state, rng, step) of the newest intact checkpoint.

    Each damaged one newer than it is logged with a warning naming it and,
    with `quarantine` (a folder; only the run that writes these checkpoints
    may pass one), moved there. DamagedCheckpoint, naming every checkpoint
    and what is wrong with it, when none is intact; nothing is moved then.
    """
    damaged = []
    for step in sorted(self.all_steps(), reverse=True):
      try:
        state, data_state, rng = self.restore(abstract_state, step)
      except DamagedCheckpoint as e:
        logging.warning('%s; trying the one before it.', e)
        damaged.append((step, e))
        continue
      if damaged and quarantine:
        self._move(damaged, quarantine)
      if damaged:
        logging.warning('Restored step %d, the newest intact checkpoint in %s '
                        '(damaged: steps %s).', step, self.directory,
                        ', '.join(str(s) for s, _ in damaged))
      return state, data_state, rng, step
    if not damaged:
      raise DamagedCheckpoint(f'{self.directory} holds no checkpoint')
    raise DamagedCheckpoint(
        f'no intact checkpoint in {self.directory}: '
        + '; '.join(str(e) for _, e in damaged)
        + '. They are left as they are: restore the files from a copy, or '
        'train afresh in a new --workdir.')

  def _move(self, damaged: list, quarantine: str) -> None:
    """Moves damaged step folders into `quarantine` (process 0; the others
    wait for it) and rereads the steps this directory holds."""
    if jax.process_index() == 0:
      os.makedirs(quarantine, exist_ok=True)
      for step, _ in damaged:
        target, n = os.path.join(quarantine, str(step)), 1
        while os.path.exists(target):
          target, n = os.path.join(quarantine, f'{step}_{n}'), n + 1
        shutil.move(self.step_dir(step), target)
        logging.warning('Moved the damaged checkpoint of step %d to %s.',
                        step, target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('quarantine')
    self._manager.reload()

  def wait(self) -> None:
    with self._storage():
      self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for the last save and closes; after a failed save (its
    StorageError already raised), closes without raising it again."""
    failed_before = self._failed
    try:
      with self._storage():
        self._manager.wait_until_finished()
        self._manager.close()
    except errors.StorageError:
      if not failed_before:
        raise
