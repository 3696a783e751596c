"""Training batches made on the accelerator, from images kept in its memory.

The standard training sets fit in an accelerator's memory (CBSD432 decoded
is about 200 MB, T91 and the embedded photos far less). For such a set,
`DeviceBatches` copies the decoded images to every device once, and each
step's batch is made by one jitted function: for every example, which image
(a shuffled order per epoch), a random crop, one of the 8 flips and
rotations, and the task's training pair (`task.make_pair` with a jax key,
the same code as on the host: `corruptions` takes numpy or jax arrays and a
numpy Generator or a jax key). The host does nothing per example, so a GPU
never waits for it, and on a CPU the work is vectorized instead of looping
in Python.

Batches are a function of the seed and the step alone: example g = b * B + i
of the global order (batch b, global batch size B) draws everything from
fold_in(key(seed), g). So the iterator's state is the number of batches
handed out, resuming is exact, and K processes (each computing the global
batch, sharded over the mesh) train on the batches one process would. The
same seed gives other noise than the host pipeline (a key, not a
Generator), with the same distribution.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import errors, parallel

# fold_in(key(seed), _DATA_STREAM): the data's stream, apart from the
# model's initialization and training RNG (which split key(seed)).
_DATA_STREAM = 0x64617461


def _dihedral_maps(size: int) -> np.ndarray:
  """[8, size, size, 2]: for each of the 8 flips/rotations (as
  `corruptions.dihedral` numbers them), the (row, col) of the crop each
  output pixel comes from."""
  grid = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing='ij'), -1)
  maps = []
  for k in range(8):
    out = np.rot90(grid, k % 4, axes=(0, 1))
    maps.append(out[:, ::-1] if k >= 4 else out)
  return np.stack(maps).astype(np.int32)


def pack(images: list[np.ndarray], patch_size: int) -> dict[str, np.ndarray]:
  """HxWx3 uint8 images of any sizes -> one flat array and where each image
  lies in it. An image smaller than the patch is reflect-padded to it first,
  as the host's `corruptions.random_crop` does."""
  padded = []
  for image in images:
    h, w = image.shape[:2]
    if h < patch_size or w < patch_size:
      pad = ((0, max(0, patch_size - h)), (0, max(0, patch_size - w)), (0, 0))
      image = np.pad(image, pad, mode='reflect' if min(h, w) > 1 else 'edge')
    padded.append(np.ascontiguousarray(image, np.uint8))
  sizes = np.array([p.size for p in padded], np.int64)
  if sizes.sum() >= 2 ** 31:
    raise errors.DataError(
        f'{sizes.sum() / 2 ** 30:.1f} GiB of training images do not fit one '
        'int32-indexed device array (2 GiB); use the host pipeline '
        "(config.input_pipeline='host' or 'auto')")
  return {
      'pixels': np.concatenate([p.ravel() for p in padded]),
      'offsets': np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int32),
      'heights': np.array([p.shape[0] for p in padded], np.int32),
      'widths': np.array([p.shape[1] for p in padded], np.int32),
  }


def make_batch_fn(pair_fn: Callable[[jax.Array, jax.Array], dict],
                  num_images: int, batch_size: int, patch_size: int,
                  augment: bool, seed: int) -> Callable:
  """batch(packed, index) -> the global batch number `index`: a dict of
  [batch_size, ...] arrays, pair_fn(patch in [0, 1], key) for each example.
  Pure; jit it (`DeviceBatches` does)."""
  maps = jnp.asarray(_dihedral_maps(patch_size))
  data_key = jax.random.fold_in(jax.random.key(seed), _DATA_STREAM)
  order_key, example_key = jax.random.split(data_key)

  def example(packed, g):
    epoch, position = g // num_images, g % num_images
    n = jax.random.permutation(jax.random.fold_in(order_key, epoch),
                               num_images)[position]
    crop_key, flip_key, pair_key = jax.random.split(
        jax.random.fold_in(example_key, g), 3)
    h, w = packed['heights'][n], packed['widths'][n]
    ky, kx = jax.random.split(crop_key)
    y = jax.random.randint(ky, (), 0, h - patch_size + 1)
    x = jax.random.randint(kx, (), 0, w - patch_size + 1)
    where = maps[jax.random.randint(flip_key, (), 0, 8) if augment else 0]
    flat = (packed['offsets'][n] + ((y + where[..., 0]) * w + x + where[..., 1]) * 3)
    patch = packed['pixels'][flat[..., None] + jnp.arange(3)[None, None]]
    return pair_fn(patch.astype(jnp.float32) / 255.0, pair_key)

  def batch(packed, index):
    first = index.astype(jnp.uint32) * jnp.uint32(batch_size)
    g = first + jnp.arange(batch_size, dtype=jnp.uint32)
    return jax.vmap(example, in_axes=(None, 0))(packed, g)

  return batch


class DeviceBatches:
  """An iterator of training batches made on the devices of `mesh` from
  the images of `source`, kept there (see the module's docstring); its
  state (`get_state`, `set_state`) is the number of batches handed out."""

  KIND = 'device'

  def __init__(self, source, task, config: Any, mesh: jax.sharding.Mesh):
    if not config.patch_size:
      raise ValueError('device batches crop patches: config.patch_size must '
                       'be > 0')
    images = [np.asarray(source[i]['image']) for i in range(len(source))]
    packed = pack(images, config.patch_size)
    self.num_bytes = int(packed['pixels'].nbytes)
    rep = parallel.replicated(mesh)
    self._packed = {k: jax.make_array_from_callback(v.shape, rep,
                                                    lambda i, v=v: v[i])
                    for k, v in packed.items()}
    fn = make_batch_fn(lambda patch, key: task.make_pair({'image': patch}, key, config),
                       len(images), config.batch_size, config.patch_size,
                       config.augment, config.seed)
    self._batch = jax.jit(fn, out_shardings=parallel.batch_sharded(mesh))
    self._index = 0

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, jax.Array]:
    # A host scalar: every process passes the same one (no device of its own).
    out = self._batch(self._packed, np.int32(self._index))
    self._index += 1
    return out

  def get_state(self) -> dict[str, Any]:
    return {'pipeline': self.KIND, 'batches': self._index}

  def set_state(self, state: dict[str, Any]) -> None:
    if state.get('pipeline') != self.KIND:
      raise ValueError(
          'this checkpoint was written by the host input pipeline; resume it '
          "with config.input_pipeline='host' (a run keeps its pipeline)")
    self._index = int(state['batches'])
