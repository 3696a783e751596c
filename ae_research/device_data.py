"""Training batches made on the accelerator, from images kept in its memory.

The standard training sets fit in an accelerator's memory (CBSD432 decoded
is about 200 MB, T91 and the embedded photos far less). For such a set,
`DeviceBatches` copies the decoded images to every device once, and each
step's batch is made by one jitted function: for every example, which image
(a shuffled order per epoch), a random crop, one of the 8 flips and
rotations, and the task's corruption (`task.device_pair`, built from the
functions below). The host does nothing per example, so a GPU never waits
for it, and on a CPU the work is vectorized instead of looping in Python.

Batches are a function of the seed and the step alone: example g = b * B + i
of the global order (batch b, global batch size B) draws everything from
fold_in(key(seed), g). So the iterator's state is the number of batches
handed out, resuming is exact, and K processes (each computing the global
batch, sharded over the mesh) train on the batches one process would.

The corruptions here are the jax twins of `corruptions.py` (which stays the
host's, for evaluation and for data that does not fit): they draw from a jax
key instead of a numpy Generator, so the same seed gives other noise than
the host pipeline, with the same distribution. `bicubic_downscale` equals
the host's (PIL's antialiased Keys kernel) to float32 rounding.
"""

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import errors, parallel

# fold_in(key(seed), _DATA_STREAM): the data's stream, apart from the
# model's initialization and training RNG (which split key(seed)).
_DATA_STREAM = 0x64617461


# ------------------------------------------------------------ corruptions
def gaussian_noise(image: jax.Array, key: jax.Array, sigma) -> jax.Array:
  """Additive white Gaussian noise, not clipped; sigma on the 0-255 scale."""
  return image + jax.random.normal(key, image.shape, image.dtype) * (sigma / 255.0)


def draw_sigma(key: jax.Array, sigma: float, sigma_range) -> jax.Array:
  """sigma, or a level drawn uniformly from sigma_range = (lo, hi) when hi > lo."""
  lo, hi = sigma_range
  if hi > lo:
    return jax.random.uniform(key, (), jnp.float32, lo, hi)
  return jnp.float32(sigma)


def salt_and_pepper(image: jax.Array, key: jax.Array, amount: float) -> jax.Array:
  """A fraction `amount` of pixels set to black or white (all channels)."""
  hit_key, salt_key = jax.random.split(key)
  h, w = image.shape[:2]
  hit = (jax.random.uniform(hit_key, (h, w, 1)) < amount)
  salt = (jax.random.uniform(salt_key, (h, w, 1)) < 0.5)
  return jnp.where(hit, salt.astype(image.dtype), image)


def random_mask(image: jax.Array, key: jax.Array, fraction: float,
                block: int = 8) -> tuple[jax.Array, jax.Array]:
  """Blocks of `block`x`block` pixels zeroed with probability `fraction`:
  (masked image, HxWx1 float mask with 1 where removed)."""
  h, w = image.shape[:2]
  cells = jax.random.uniform(key, (-(-h // block), -(-w // block))) < fraction
  mask = jnp.repeat(jnp.repeat(cells, block, 0), block, 1)[:h, :w, None]
  return jnp.where(mask, 0.0, image), mask.astype(jnp.float32)


def crosshair(image: jax.Array, key: jax.Array, thickness: int = 1,
              value: float = 0.0) -> tuple[jax.Array, jax.Array]:
  """A thin cross through a random point of the image's middle half:
  (image with the cross set to `value`, HxWx1 float mask of the cross)."""
  h, w = image.shape[:2]
  ky, kx = jax.random.split(key)
  cy = jax.random.randint(ky, (), h // 4, max(h // 4 + 1, 3 * h // 4))
  cx = jax.random.randint(kx, (), w // 4, max(w // 4 + 1, 3 * w // 4))
  rows = jnp.arange(h)[:, None, None]
  cols = jnp.arange(w)[None, :, None]
  mask = (((rows >= cy) & (rows < cy + thickness)) |
          ((cols >= cx) & (cols < cx + thickness)))
  mask = jnp.broadcast_to(mask, (h, w, 1))
  return jnp.where(mask, value, image), mask.astype(jnp.float32)


def quantize(image: jax.Array) -> jax.Array:
  """Rounded to 8 bits, as an image saved to disk would be."""
  return jnp.round(jnp.clip(image, 0.0, 1.0) * 255.0) / 255.0


def _keys_cubic(x: np.ndarray) -> np.ndarray:
  """The Keys cubic (a = -0.5) of MATLAB's and PIL's bicubic."""
  a, x = -0.5, np.abs(x)
  return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                  np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def _downscale_taps(scale: int) -> tuple[np.ndarray, int]:
  """(kernel, first tap): output pixel i reads input pixels scale * i + t
  for t = first ... first + len(kernel) - 1; the kernel is the Keys cubic
  stretched by `scale` (antialiasing) around the output pixel's centre."""
  first = -2 * scale
  t = np.arange(first, 3 * scale)
  return _keys_cubic((t + 0.5 - scale / 2) / scale), first


def _downscale_axis(x: jax.Array, scale: int, axis: int) -> jax.Array:
  """One axis of `bicubic_downscale`: a strided 1-D convolution, divided by
  the same convolution of ones so that the weights falling outside the
  image are dropped and the rest renormalized (PIL's border rule)."""
  kernel, first = _downscale_taps(scale)
  x = jnp.moveaxis(x, axis, -1)
  lead, n = x.shape[:-1], x.shape[-1]
  rows = x.reshape(-1, n, 1)  # [rows, length, 1 channel]
  rhs = jnp.asarray(kernel, jnp.float32)[:, None, None]
  pad = [(-first, len(kernel) + first)]

  def conv(v):
    return jax.lax.conv_general_dilated(
        v, rhs, window_strides=(scale,), padding=pad,
        dimension_numbers=('NWC', 'WIO', 'NWC'),
        precision=jax.lax.Precision.HIGHEST)[:, :n // scale, 0]

  out = conv(rows) / conv(jnp.ones((1, n, 1), jnp.float32))
  return jnp.moveaxis(out.reshape(lead + (n // scale,)), -1, axis)


def bicubic_downscale(image: jax.Array, scale: int) -> jax.Array:
  """MATLAB-style bicubic downscaling by an integer factor of an HxWxC image
  whose sides `scale` divides: the antialiased Keys kernel as a separable
  strided convolution, rows then columns as PIL does; equal to
  `corruptions.bicubic_downscale` to float32 rounding."""
  h, w = image.shape[:2]
  if h % scale or w % scale:
    raise ValueError(f'image of {h}x{w} is not a multiple of scale {scale}')
  return _downscale_axis(_downscale_axis(image, scale, 1), scale, 0)


def _upscale_matrix(n: int, scale: int) -> np.ndarray:
  """[n * scale, n]: PIL's bicubic upscaling weights along one axis (the
  Keys cubic around each output pixel's centre, clipped to the image and
  renormalized at the borders)."""
  out = np.zeros((n * scale, n))
  for i in range(n * scale):
    centre = (i + 0.5) / scale
    lo = max(int(centre - 2 + 0.5), 0)
    hi = min(int(centre + 2 + 0.5), n)
    w = _keys_cubic(np.arange(lo, hi) + 0.5 - centre)
    out[i, lo:hi] = w / w.sum()
  return out


def bicubic_upscale(image: jax.Array, scale: int) -> jax.Array:
  """Bicubic upscaling of an HxWxC image by an integer factor, as the host's
  `corruptions.bicubic_upscale` (PIL's weights; one matrix per axis)."""
  h, w = image.shape[:2]
  rows = jnp.asarray(_upscale_matrix(h, scale), jnp.float32)
  cols = jnp.asarray(_upscale_matrix(w, scale), jnp.float32)
  hp = jax.lax.Precision.HIGHEST
  x = jnp.einsum('jw,hwc->hjc', cols, image, precision=hp)
  return jnp.einsum('ih,hjc->ijc', rows, x, precision=hp)


# ------------------------------------------------------------ batches
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
    fn = make_batch_fn(functools.partial(task.device_pair, config=config),
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
