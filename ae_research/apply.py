"""Runs a trained model on your own images.

  python -m ae_research.apply --workdir=runs/denoise --output=out photo.jpg photos/
  python -m ae_research.apply --workdir=runs/sr_x3 --output=out --compare small.png
  python -m ae_research.apply --pretrained=sr-x3 --output=out small.png

Uses the config stored in the workdir and its latest checkpoint (or --step),
or a model shipped with the package (--pretrained, `ae_research.pretrained`),
and does what the run's experiment does: denoise, colorize, upscale by the
model's factor, or compress and decompress. For every input it writes
OUT/<name>.png (at the input's bit depth, its alpha carried through), for a
compression run also OUT/<name>.aec (the compressed file), and with
--compare OUT/compare/<name>.png: input | output | classical baseline(s)
(| the original). Inputs are image files or folders (their images, recursively;
the outputs keep the folder's layout).

Images of any size: one too large for memory whole runs in overlapping tiles
(`ae_research.tiling`) that give the whole image's output. A file that
cannot be read is reported and skipped, and the exit status is then 1;
existing outputs are never replaced without --overwrite.
"""

import os
import sys
import time
from typing import Callable, Optional

from absl import flags
import jax
from tqdm import tqdm

from ae_research import cli, errors, image_io, summaries, tasks, tiling
from ae_research import pretrained as pretrained_lib
from ae_research import workdir as workdir_lib
from ae_research.tasks.base import Result


class Applier:
  """A trained run, or a shipped model, as a function of one image:

    applier = Applier('runs/denoise')               # a workdir
    applier = Applier.pretrained('denoise-sp')      # ae_research.pretrained
    result = applier(image_io.read('photo.png'), compare=True)
    result.image.pixels   # the output; result.files: e.g. {'.aec': bytes}
  """

  def __init__(self, workdir: str, step: Optional[int] = None,
               plan: tiling.Tiling = tiling.Tiling()):
    config = workdir_lib.load_config(workdir)
    state, step = workdir_lib.restore_latest(config, workdir, step)
    self._build(config, state, step, plan, f'{workdir}, step {step}')

  @classmethod
  def pretrained(cls, name: str, plan: tiling.Tiling = tiling.Tiling(),
                 zoo_dir: Optional[str] = None) -> 'Applier':
    """The shipped model `name` (`ae_research.pretrained`)."""
    applier = cls.__new__(cls)
    config, state = pretrained_lib.load_state(name, zoo_dir)
    applier._build(config, state, None, plan, f'pretrained {name}')
    return applier

  def _build(self, config, state, step: Optional[int], plan: tiling.Tiling,
             label: str) -> None:
    self.config, self.step, self.label = config, step, label
    self.task = tasks.get(config.task)
    # One image at a time runs on one device (restored, it is replicated).
    self.state = jax.device_put(state, jax.devices()[0])
    self._apply = self.task.make_applier(self.config, self.state, plan)
    # Files written per image; the PNG comes first.
    self.suffixes = ('.png',) + tuple(self.task.apply_files)

  def __call__(self, image: image_io.Image, compare: bool = False,
               on_tile: Optional[Callable[[int, int], None]] = None) -> Result:
    return self._apply(image, compare, on_tile)


# ---------------------------------------------------------------------------
# The command line.


def collect(paths: list[str], exclude: str) -> list[tuple[str, str]]:
  """(path, name) of every input: files as given, the images in folders
  recursively (name: the path inside the folder, without extension), skipping
  anything under `exclude`. ValueError for a path that does not exist or a
  folder without images."""
  exclude = os.path.abspath(exclude)
  found = []
  for path in paths:
    if os.path.isfile(path):
      found.append((path, os.path.splitext(os.path.basename(path))[0]))
    elif os.path.isdir(path):
      inside = []
      for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.') and
                         os.path.abspath(os.path.join(root, d)) != exclude)
        for f in sorted(files):
          if f.lower().endswith(image_io.EXTENSIONS) and not f.startswith('.'):
            full = os.path.join(root, f)
            inside.append((full, os.path.splitext(os.path.relpath(full, path))[0]))
      if not inside:
        raise ValueError(f'{path} holds no image files '
                         f'({", ".join(image_io.EXTENSIONS)})')
      found += inside
    else:
      raise ValueError(f'{path}: no such file or folder')
  names: dict[str, list[str]] = {}
  for path, name in found:
    names.setdefault(name, []).append(path)
  clashes = {n: p for n, p in names.items() if len(p) > 1}
  if clashes:
    raise ValueError('these inputs would write the same outputs: ' + '; '.join(
        f'{" and ".join(p)} (as {n})' for n, p in clashes.items()) +
        '. Apply them in separate runs with different --output folders.')
  return found


def outputs(out_dir: str, name: str, suffixes: tuple[str, ...],
            compare: bool) -> dict[str, str]:
  """The paths one input writes, by suffix ('compare': the comparison)."""
  paths = {s: os.path.join(out_dir, name + s) for s in suffixes}
  if compare:
    paths['compare'] = os.path.join(out_dir, 'compare', name + '.png')
  return paths


def _write(path: str, write: Callable[[str], None]) -> None:
  with errors.writing(path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  summaries.write_through_temp(path, write)


def _write_bytes(data: bytes) -> Callable[[str], None]:
  def write(path):
    with open(path, 'wb') as f:
      f.write(data)
  return write


def save(result: Result, paths: dict[str, str]) -> None:
  """Writes a result to the paths `outputs` gave: all of them or, when one
  fails (errors.StorageError: a full disk, a read-only folder), none of the
  new ones (a file that was there stays as it was), so a rerun does the
  image again."""
  image = result.image
  new = [p for p in paths.values() if not os.path.exists(p)]
  try:
    for key, path in paths.items():
      if key == '.png':
        _write(path, lambda p: image_io.write_png(p, image.pixels, image.alpha,
                                                  image.bit_depth))
      elif key == 'compare':
        grid = summaries.labelled_row(result.compare)
        _write(path, lambda p: summaries.save_png(p, grid))
      else:
        _write(path, _write_bytes(result.files[key]))
  except BaseException:
    for path in new:
      if os.path.exists(path):
        os.remove(path)
    raise


class _Skipped(Exception):
  """An input that cannot be done (the message says why); the others go on."""


def _one(applier: Applier, path: str, paths: dict[str, str], progress) -> tuple:
  """(image, result) of one input, its outputs all written (or none); a bad
  file or too little memory for it is _Skipped."""
  try:
    image = image_io.read(path)
    result = applier(image, compare=_COMPARE.value, on_tile=progress.on_tile)
    save(result, paths)
  except (image_io.ImageError, ValueError) as e:
    raise _Skipped(str(e)) from e
  except errors.StorageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    if not errors.out_of_memory(e):
      raise
    raise _Skipped(f'{path}: not enough memory to apply the model to it '
                   f'({type(e).__name__}); nothing written for it. Smaller '
                   'tiles need less: --memory_mb or --tiling=tiles '
                   '--tile_size') from e
  return image, result


_WORKDIR = cli.define_workdir('The training run to apply (or --pretrained).')
_PRETRAINED = cli.define_pretrained('A shipped model to apply instead of a '
                                    'training run (python -m '
                                    'ae_research.pretrained lists them).')
_OUTPUT = cli.define_output('Folder for the outputs.')
_STEP = flags.DEFINE_integer(
    'step', None, 'Checkpoint step to use (default: the latest).')
_OVERWRITE = cli.define_overwrite(
    'Replace outputs that exist (by default such inputs are skipped).')
_COMPARE = flags.DEFINE_bool(
    'compare', False, 'Also write compare/<name>.png: input | output | '
    'classical baseline.')
_TILES = tiling.Tiling()
_TILING = flags.DEFINE_enum(
    'tiling', _TILES.mode, tiling.MODES, 'auto: tiles only images that would '
    'not fit in memory whole; always; never.')
_TILE_SIZE = flags.DEFINE_integer(
    'tile_size', _TILES.tile_size, 'Side of a tile, in model-input pixels.')
_TILE_HALO = flags.DEFINE_integer(
    'tile_halo', _TILES.halo, "Context pixels around each tile (default: the "
    "model's receptive field, which makes tiles exact).")
_TILE_BLEND = flags.DEFINE_integer(
    'tile_blend', _TILES.blend, 'Pixels over which tiles cross-fade.')
_TILE_BATCH = flags.DEFINE_integer(
    'tile_batch', _TILES.batch, 'Tiles per model call.')
_MEMORY_MB = flags.DEFINE_integer(
    'memory_mb', None, 'Memory budget for one whole image before tiling '
    '(default: half the free device memory).')


class _Progress:
  """Progress over the files on stderr: a bar (and one for the tiles of a
  large image) on a terminal, else one line per file (for logs)."""

  def __init__(self, total: int):
    self.total, self.done, self.start = total, 0, time.perf_counter()
    self.tiles = None
    self.bar = None
    if sys.stderr.isatty():
      self.bar = tqdm(total=total, unit='image', desc='images', file=sys.stderr,
                      dynamic_ncols=True)

  def write(self, message: str) -> None:
    if self.bar is not None:
      tqdm.write(message, file=sys.stderr)
    else:
      print(message, file=sys.stderr, flush=True)

  def on_tile(self, done: int, total: int) -> None:
    if self.bar is None:
      return
    if self.tiles is None:
      self.tiles = tqdm(total=total, unit='tile', desc='  tiles',
                              file=sys.stderr, leave=False, dynamic_ncols=True)
    self.tiles.update(done - self.tiles.n)

  def next_file(self, name: str, megapixels_per_s: float) -> None:
    self.done += 1
    if self.tiles is not None:
      self.tiles.close()
      self.tiles = None
    if self.bar is not None:
      self.bar.set_postfix_str(f'{name} {megapixels_per_s:.2f} MP/s')
      self.bar.update(1)
      return
    elapsed = time.perf_counter() - self.start
    eta = elapsed / self.done * (self.total - self.done)
    self.write(f'[{self.done}/{self.total}] {name} {megapixels_per_s:.2f} MP/s '
               f'ETA {summaries.format_duration(eta)}')

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()


def main(argv: list[str]) -> int:
  """The command; argv[1:] are the inputs (absl has parsed the flags)."""
  cli.require_one(_WORKDIR, _PRETRAINED)
  cli.require(_OUTPUT)
  if len(argv) < 2:
    cli.usage_error('no inputs: name the image files or folders of images to '
                    'apply the run to')
  workdir, output, memory_mb = _WORKDIR.value, _OUTPUT.value, _MEMORY_MB.value
  # Everything that can be wrong with the command is found before any compute.
  try:
    plan = tiling.Tiling(
        mode=_TILING.value, tile_size=_TILE_SIZE.value, halo=_TILE_HALO.value,
        blend=_TILE_BLEND.value, batch=_TILE_BATCH.value,
        memory_bytes=None if memory_mb is None else memory_mb * 2**20)
    if memory_mb is not None and memory_mb < 1:
      raise ValueError(f'--memory_mb={memory_mb} must be positive')
    if os.path.exists(output) and not os.path.isdir(output):
      raise ValueError(f'--output={output} is a file, not a folder')
    inputs = collect(argv[1:], exclude=output)
    if workdir is not None:
      applier = Applier(workdir, _STEP.value, plan)
    else:
      if _STEP.value is not None:
        raise ValueError('--step picks a checkpoint of a --workdir; a '
                         '--pretrained model has one set of weights')
      applier = Applier.pretrained(_PRETRAINED.value, plan)
  except (ValueError, errors.UserError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2

  todo, skipped = [], 0
  for path, name in inputs:
    paths = outputs(output, name, applier.suffixes, _COMPARE.value)
    existing = [p for p in paths.values() if os.path.exists(p)]
    if existing and not _OVERWRITE.value:
      print(f'skipped {path}: {existing[0]} exists (pass --overwrite to '
            'replace it)', file=sys.stderr)
      skipped += 1
    else:
      todo.append((path, name, paths))
  print(f'{applier.label}: {applier.config.task}; '
        f'{len(todo)} image(s) -> {output}', file=sys.stderr)

  failed, written = [], 0
  progress = _Progress(len(todo))
  try:
    for path, name, paths in todo:
      start = time.perf_counter()
      try:
        image, result = _one(applier, path, paths, progress)
      except errors.StorageError as e:
        progress.write(f'error: {e}. The {written} image(s) written before it '
                       'are complete; free space and run the same command '
                       'again: it skips them and does the rest.')
        return 1
      except _Skipped as e:
        progress.write(f'error: {e}; skipped')
        failed.append(path)
        progress.next_file(name, 0.0)
        continue
      written += 1
      h, w = image.pixels.shape[:2]
      d = result.decision
      if d is not None and d.tiled:
        progress.write(f'{name}: {w}x{h} in tiles ({d.reason}; '
                       f'{"exact" if d.exact else "blended"})')
      if result.note:
        progress.write(f'{name}: {result.note}')
      progress.next_file(name, h * w / 1e6 / (time.perf_counter() - start))
  finally:
    progress.close()
  print(f'{written} written, {skipped} skipped (outputs exist), {len(failed)} '
        f'failed' + (': ' + ', '.join(failed) if failed else ''), file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  cli.run(main)
