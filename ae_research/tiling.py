"""Images of any size through a fully convolutional model: whole, or in
overlapping tiles blended without seams.

  out_HxWxC, how = tiling.apply_image(predict, state, x_HxWxC, multiple=8,
                                      plan=tiling.Tiling())

`fn(variables, x_BxHxWxC)` is a jitted model. Sizes are counted in cells: a
cell is `in_cell` input pixels (the model's downsampling factor, so every
tile starts where the whole image's strided layers would) and `out_cell`
output pixels. Each tile sees `halo` cells of context beyond the part it
keeps; its weight is 0 there, then ramps up over `blend` cells, and the
output is the weighted mean of the tiles. With the halo at least the
model's receptive field (the default, measured by `receptive_field`), every
kept pixel is computed from exactly the inputs the whole image would give
it, so tiled and whole outputs agree to float round-off; with a smaller halo,
or a model that looks at the whole image (GroupNorm), the ramps hide seams.
"""

import dataclasses
import os
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

MODES = ('auto', 'always', 'never')


@dataclasses.dataclass(frozen=True)
class Tiling:
  """How `apply_image` and `run` split an image.

  mode: 'auto' tiles an image whose whole-image computation would need more
    than `memory_bytes` (XLA's own estimate); 'always'; 'never'.
  tile_size: side of a tile in input pixels (rounded down to whole cells).
  halo: input pixels of context a tile sees beyond what it keeps; None: the
    model's receptive field.
  blend: input pixels over which neighbouring tiles cross-fade.
  batch: tiles per call of the model.
  memory_bytes: the budget of 'auto'; None: half the free memory of the
    device (host RAM on CPU).
  """
  mode: str = 'auto'
  tile_size: int = 512
  halo: Optional[int] = None
  blend: int = 16
  batch: int = 4
  memory_bytes: Optional[int] = None

  def __post_init__(self):
    problems = []
    if self.mode not in MODES:
      problems.append(f'mode {self.mode!r} is not one of {MODES}')
    if self.tile_size < 1:
      problems.append(f'tile_size {self.tile_size} must be positive')
    if self.halo is not None and self.halo < 0:
      problems.append(f'halo {self.halo} must be 0 or more')
    if self.blend < 0:
      problems.append(f'blend {self.blend} must be 0 or more')
    if self.batch < 1:
      problems.append(f'batch {self.batch} must be positive')
    if problems:
      raise ValueError('tiling: ' + '; '.join(problems))


def windows(n: int, tile: int, halo: int, blend: int) -> list[tuple[int, int]]:
  """[start, stop) of the tiles along an axis of `n` cells: as few as tiles of
  at most `tile` cells allow, all the same length, neighbours overlapping by
  at least 2 * halo + blend."""
  if n <= tile:
    return [(0, n)]
  overlap = 2 * halo + blend
  if tile <= overlap:
    raise ValueError(f'tiles of {tile} cells cannot keep anything with a halo '
                     f'of {halo} and a blend of {blend} cells on each side; '
                     'use larger tiles or a smaller halo')
  count = -(-(n - overlap) // (tile - overlap))
  # The shortest equal tiles that cover the axis in `count` steps: less
  # computed twice than with full tiles and a last one pushed back.
  tile = -(-(n - overlap) // count) + overlap
  stride = tile - overlap
  return [(min(i * stride, n - tile), min(i * stride, n - tile) + tile)
          for i in range(count)]


def ramp(start: int, stop: int, n: int, halo: int, blend: int,
         out_cell: int) -> np.ndarray:
  """Weights, in output pixels, of the tile [start, stop) of an axis of `n`
  cells: 0 within `halo` of an edge inside the image, rising to 1 over
  `blend` cells."""
  length = (stop - start) * out_cell
  weight = np.ones(length, np.float32)
  distance = np.arange(length, dtype=np.float32) + 0.5
  h, b = halo * out_cell, blend * out_cell
  for d, inside in ((distance, start > 0), (distance[::-1], stop < n)):
    if inside:
      w = np.clip((d - h) / b, 0.0, 1.0) if b else (d > h).astype(np.float32)
      weight = np.minimum(weight, w)
  return weight


def apply_tiled(fn: Callable, variables: Any, x_HxWxC: np.ndarray, *,
                in_cell: int, out_cell: int, tile: int, halo: int, blend: int,
                batch: int = 4, on_tile: Optional[Callable[[int, int], None]] = None
                ) -> np.ndarray:
  """`fn` over overlapping tiles of `x` (sides multiples of `in_cell`);
  sizes in cells. `on_tile(done, total)` reports progress."""
  h, w = x_HxWxC.shape[:2]
  if h % in_cell or w % in_cell:
    raise ValueError(f'image of {h}x{w} is not a multiple of {in_cell}')
  nh, nw = h // in_cell, w // in_cell
  rows, cols = windows(nh, tile, halo, blend), windows(nw, tile, halo, blend)
  by_shape: dict[tuple[int, int], list] = {}
  for r in rows:
    for c in cols:
      by_shape.setdefault((r[1] - r[0], c[1] - c[0]), []).append((r, c))
  out, weights = None, np.zeros((nh * out_cell, nw * out_cell, 1), np.float32)
  done, total = 0, len(rows) * len(cols)
  for group in by_shape.values():
    for i in range(0, len(group), batch):
      chunk = group[i:i + batch]
      # A short last batch is filled up, so one shape compiles once.
      full = chunk + chunk[-1:] * (min(batch, len(group)) - len(chunk))
      xs = np.stack([x_HxWxC[r0 * in_cell:r1 * in_cell, c0 * in_cell:c1 * in_cell]
                     for (r0, r1), (c0, c1) in full])
      ys = np.asarray(fn(variables, jnp.asarray(xs)), np.float32)
      if out is None:
        out = np.zeros((nh * out_cell, nw * out_cell, ys.shape[-1]), np.float32)
      for ((r0, r1), (c0, c1)), y in zip(chunk, ys):
        weight = (ramp(r0, r1, nh, halo, blend, out_cell)[:, None] *
                  ramp(c0, c1, nw, halo, blend, out_cell)[None, :])[..., None]
        rs = slice(r0 * out_cell, r1 * out_cell)
        cs = slice(c0 * out_cell, c1 * out_cell)
        out[rs, cs] += y * weight
        weights[rs, cs] += weight
      done += len(chunk)
      if on_tile:
        on_tile(done, total)
  return out / weights


def _measure_field(fn, variables, channels, in_cell, out_cell, max_cells):
  n = 8
  while n <= max_cells:
    side, c = n * in_cell, n // 2
    x = jax.random.uniform(jax.random.key(0), (2, side, side, channels))

    def center(x):
      y = fn(variables, x)
      return jnp.sum(y[:, c * out_cell:(c + 1) * out_cell,
                       c * out_cell:(c + 1) * out_cell])

    g = np.abs(np.asarray(jax.grad(center)(x))).sum(axis=(0, 3))
    ys, xs = np.nonzero(g)
    if not len(ys):
      return 0
    lo = min(ys.min(), xs.min()) // in_cell
    hi = max(ys.max(), xs.max()) // in_cell
    if lo > 0 and hi < n - 1:  # The dependence ends inside the probe.
      # One cell more: a path through a unit that happens to be dead at
      # this probe would be missed.
      return int(max(c - lo, hi - c)) + 1
    n *= 2
  return None


_FIELDS: dict[tuple, Optional[int]] = {}


def receptive_field(fn: Callable, variables: Any, channels: int, in_cell: int,
                    out_cell: int, max_cells: int = 128) -> Optional[int]:
  """Cells of context on each side that one output cell depends on, measured
  from the gradient of `fn` at random inputs; None when that reaches past
  `max_cells` (a layer that pools over the whole image, e.g. GroupNorm).
  Measured once per function: it depends on the architecture."""
  key = (fn, channels, in_cell, out_cell, max_cells)
  if key not in _FIELDS:
    _FIELDS[key] = _measure_field(fn, variables, channels, in_cell, out_cell,
                                  max_cells)
  return _FIELDS[key]


def free_memory_bytes() -> int:
  """Free memory of the first device: accelerator memory, or host RAM."""
  stats = None
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # pylint: disable=broad-except
    pass
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit'] - stats.get('bytes_in_use', 0))
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')


_NEEDS: dict[tuple, int] = {}


def whole_image_bytes(fn: Callable, variables: Any, shape) -> int:
  """XLA's estimate of the memory `fn` needs for one input of `shape`
  (compiled ahead, not run; 0 where the backend gives no estimate). Kept
  per function and shape: evaluations during training ask again and again."""
  key = (fn, tuple(shape))
  if key not in _NEEDS:
    lower = fn.lower if hasattr(fn, 'lower') else jax.jit(fn).lower
    m = lower(variables, jax.ShapeDtypeStruct(shape, jnp.float32)).compile().memory_analysis()
    _NEEDS[key] = 0 if m is None else int(
        m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)
  return _NEEDS[key]


@dataclasses.dataclass
class Decision:
  """How an image was (or will be) computed: whole, or how it was tiled."""
  tiled: bool
  tile: int = 0  # cells
  halo: int = 0
  blend: int = 0
  exact: bool = True  # Tiles agree with the whole image (halo >= field).
  reason: str = ''


def decide(fn: Callable, variables: Any, shape, in_cell: int, out_cell: int,
           plan: Tiling) -> Decision:
  """Whole or tiled, with the tile sizes in cells, for an input of `shape`
  (1xHxWxC, sides multiples of `in_cell`)."""
  _, h, w, channels = shape
  if plan.mode == 'never':
    return Decision(False, reason='tiling off')
  if plan.mode == 'auto':
    budget = plan.memory_bytes or free_memory_bytes() // 2
    need = whole_image_bytes(fn, variables, shape)
    if need <= budget:
      return Decision(False, reason=f'fits whole ({need / 2**20:.0f} MiB)')
    reason = (f'whole needs {need / 2**20:.0f} MiB, over the budget of '
              f'{budget / 2**20:.0f} MiB')
  else:
    reason = 'tiling always'
  tile = max(1, plan.tile_size // in_cell)
  blend = -(-plan.blend // in_cell)
  field = receptive_field(fn, variables, channels, in_cell, out_cell)
  if plan.halo is not None:
    halo = -(-plan.halo // in_cell)
  else:
    halo = field if field is not None else tile // 4
  # A tile must keep something: at least as much as it spends on context.
  tile = max(tile, 2 * (2 * halo + blend))
  exact = field is not None and halo >= field
  return Decision(h // in_cell > tile or w // in_cell > tile, tile, halo, blend,
                  exact, reason)


def run(fn: Callable, variables: Any, x_HxWxC: np.ndarray, *, in_cell: int,
        out_cell: int, plan: Tiling,
        on_tile: Optional[Callable[[int, int], None]] = None
        ) -> tuple[np.ndarray, Decision]:
  """`fn` on `x` (sides multiples of `in_cell`), whole or tiled as `plan`
  says; returns the output and how it was computed."""
  shape = (1,) + x_HxWxC.shape
  d = decide(fn, variables, shape, in_cell, out_cell, plan)
  if not d.tiled:
    return np.asarray(fn(variables, jnp.asarray(x_HxWxC[None])), np.float32)[0], d
  out = apply_tiled(fn, variables, x_HxWxC, in_cell=in_cell, out_cell=out_cell,
                    tile=d.tile, halo=d.halo, blend=d.blend, batch=plan.batch,
                    on_tile=on_tile)
  return out, d


def pad_to(x_HxWxC: np.ndarray, multiple: int) -> np.ndarray:
  """Reflect-pads bottom and right to multiples of `multiple` (edge-pads an
  image too small to reflect)."""
  h, w = x_HxWxC.shape[:2]
  ph, pw = -h % multiple, -w % multiple
  mode = 'reflect' if min(h, w) > max(ph, pw) else 'edge'
  return np.pad(x_HxWxC, ((0, ph), (0, pw), (0, 0)), mode=mode)


def apply_image(fn: Callable, variables: Any, x_HxWxC: np.ndarray,
                multiple: int, plan: Tiling = Tiling(),
                on_tile: Optional[Callable[[int, int], None]] = None,
                scale: int = 1) -> tuple[np.ndarray, Decision]:
  """An image-to-image model on an image of any size: padded to `multiple`,
  run whole or tiled, cropped back. `scale`: the model's output is that many
  times larger than its input (super-resolution at low resolution)."""
  h, w = x_HxWxC.shape[:2]
  out, d = run(fn, variables, pad_to(x_HxWxC, multiple), in_cell=multiple,
               out_cell=multiple * scale, plan=plan, on_tile=on_tile)
  return out[:h * scale, :w * scale], d
