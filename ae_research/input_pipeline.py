"""Input pipelines: grain over random-access sources, one part per process,
and the choice between it and batches made on the device (`device_data`).

Training batches are deterministic for a seed: the order is a function of
(seed, epoch) and each example's corruption of (seed, index), so the
iterator's state is just a position and restores exactly.
"""

import collections
from typing import Any, Callable, Iterator, Optional

import grain
import jax
import numpy as np

from ae_research import corruptions, errors


PIPELINES = ('auto', 'device', 'host')  # config.input_pipeline
# At most this much of a device's memory holds training images ('auto').
DEVICE_MEMORY_FRACTION = 0.25
# And at most this many bytes (device_data indexes them with int32).
DEVICE_MAX_BYTES = 2 ** 31 - 1


def device_budget() -> int:
  """Bytes of decoded images 'auto' keeps on the device."""
  stats = jax.local_devices()[0].memory_stats() or {}
  limit = stats.get('bytes_limit')
  if not limit:  # CPU: host memory, not reported.
    return DEVICE_MAX_BYTES
  return min(DEVICE_MAX_BYTES, int(DEVICE_MEMORY_FRACTION * limit))


def choose(config, source, resumed: Optional[str] = None,
           on_device: bool = True) -> str:
  """'device' or 'host': where the training batches of `source` are made.

  config.input_pipeline 'auto' picks the device for a source of images
  that tells its size (`decoded_bytes`) when it fits `device_budget()`,
  patches are cropped and the task can make its pairs there (`on_device`:
  `Task.on_device`); a resumed run (`resumed`: the pipeline its
  checkpoint was written by) keeps its pipeline.
  """
  wanted = config.input_pipeline
  if resumed and wanted not in ('auto', resumed):
    raise errors.UserError(
        f'config.input_pipeline={wanted!r}, but the checkpoint to resume was '
        f"written by the {resumed} pipeline: a run keeps its pipeline "
        f"(its data position is the pipeline's); use {resumed!r} or 'auto', "
        'or a new --workdir')
  if resumed:
    return resumed
  if wanted != 'auto':
    return wanted
  if (not on_device or not config.patch_size or
      not hasattr(source, 'decoded_bytes')):
    return 'host'
  return 'device' if source.decoded_bytes() <= device_budget() else 'host'


def pipeline_of(data_state: dict) -> str:
  """The pipeline a checkpoint's data state was written by."""
  return data_state.get('pipeline', 'host')


def _pair_fn(task, config, crop: bool = False):
  """(example, rng) -> the task's pair; for training (`crop`), first a random
  crop of config.patch_size and, with config.augment, one of the 8 flips
  and rotations (drawn in that order from the example's rng)."""
  def fn(example, rng):
    if crop and config.patch_size:
      example = dict(example, image=corruptions.random_crop(
          example['image'], rng, config.patch_size))
    if crop and config.augment:
      example = _augment(example, int(rng.integers(8)))
    return task.make_pair(example, rng, config)
  return fn


def _augment(example: dict, k: int) -> dict:
  """The k-th flip/rotation of the image and of every array of the same
  height and width (a gray version, a label map)."""
  hw = example['image'].shape[:2]
  out = dict(example)
  for key, value in example.items():
    if isinstance(value, np.ndarray) and value.ndim in (2, 3) and value.shape[:2] == hw:
      planes = value if value.ndim == 3 else value[..., None]
      moved = corruptions.dihedral(planes, k)
      out[key] = moved if value.ndim == 3 else moved[..., 0]
  return out


def train_dataset(source, task, config, local_batch_size: int,
                  process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
  """Shuffled, repeated and batched pairs: this process's part of each
  global batch.

  One global order (a function of the seed) is cut into blocks of
  `local_batch_size`; global batch t is blocks t * process_count ... and
  process i reads block t * process_count + i. Each example's crop and
  corruption depend on its place in the global order, so K processes train
  on exactly the batches one process would.
  """
  ds = grain.MapDataset.source(source).seed(config.seed).shuffle().repeat()
  ds = ds.random_map(_pair_fn(task, config, crop=True))
  ds = ds.batch(local_batch_size, drop_remainder=True)
  ds = ds[process_index::process_count]
  return ds.to_iter_dataset(grain.ReadOptions(
      num_threads=config.data_threads, prefetch_buffer_size=config.data_prefetch))


def _pad(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  n = len(next(iter(batch.values())))
  out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
         for k, v in batch.items()}
  out['mask'] = (np.arange(size) < n).astype(np.float32)
  return out


def eval_batches(source, task, config, local_batch_size: int,
                 process_index: int = 0, process_count: int = 1,
                 num_examples: int | None = None) -> Iterator[dict[str, np.ndarray]]:
  """Every example of `source` once, in order; the last batch is padded.

  Padded examples have mask 0. Every process yields the same number of
  batches, as collective evaluation needs.
  """
  total = len(source) if num_examples is None else min(num_examples, len(source))
  per_process = -(-total // process_count)
  num_batches = max(1, -(-per_process // local_batch_size))
  ds = grain.MapDataset.source(source)[:total][process_index::process_count]
  ds = ds.seed(config.seed + 1).random_map(_pair_fn(task, config))
  ds = ds.batch(local_batch_size)
  for i in range(num_batches):
    if i < len(ds):
      yield _pad(ds[i], local_batch_size)
    else:  # This process ran out of examples before the others: all padding.
      pair = task.make_pair(source[0], np.random.default_rng(0), config)
      empty = {k: np.asarray(v)[None][:0] for k, v in pair.items()}
      yield _pad(empty, local_batch_size)


class DevicePrefetcher:
  """Keeps `size` batches on device ahead of the step.

  `get_state()` is the host iterator's state before the first batch not yet
  handed out, so a checkpoint taken between steps resumes exactly.
  """

  def __init__(self, iterator, put: Callable[[Any], Any], size: int = 2):
    self._it, self._put, self._size = iterator, put, size
    self._queue = collections.deque()

  def __iter__(self):
    return self

  def __next__(self):
    while len(self._queue) < self._size + 1:
      state = self._it.get_state()
      self._queue.append((state, self._put(next(self._it))))
    return self._queue.popleft()[1]

  def get_state(self) -> dict[str, Any]:
    return self._queue[0][0] if self._queue else self._it.get_state()

  def set_state(self, state: dict[str, Any]) -> None:
    self._queue.clear()
    self._it.set_state(state)
