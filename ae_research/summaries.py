"""What a researcher looks at: progress lines, TensorBoard, PNG grids, JSON.

TensorBoard event files are written with `tensorboardX` (no TensorFlow or
PyTorch); view them with `tensorboard`. Only process 0 writes.
"""

import itertools
import json
import os
import time
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tensorboardX import SummaryWriter

from ae_research import errors, image_io

# tensorboardX names event files by the second and host alone and opens them
# with 'wb': two Writers in one directory within a second would share, and
# truncate, one file. The pid and a counter keep every Writer's file its own
# (the counter zero-padded, so files of one second sort in the order written).
_WRITER_IDS = itertools.count()


def to_uint8(image: np.ndarray) -> np.ndarray:
  """[..., C] in [0, 1] to uint8 RGB: a gray channel is repeated to three."""
  image = np.asarray(image, np.float32)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image_io.to_uint8(image)


def image_grid(columns: Sequence[np.ndarray], pad: int = 2) -> np.ndarray:
  """One row per example, one column per array ([N,H,W,C] in [0,1]), uint8."""
  columns = [to_uint8(c) for c in columns]
  n, h = columns[0].shape[:2]
  rows = []
  for i in range(n):
    cells = []
    for c in columns:
      cells += [c[i], np.full((h, pad, 3), 255, np.uint8)]
    rows += [np.concatenate(cells[:-1], axis=1)]
    rows += [np.full((pad, rows[-1].shape[1], 3), 255, np.uint8)]
  return np.concatenate(rows[:-1], axis=0)


def labelled_row(columns: Sequence[tuple[str, np.ndarray]], pad: int = 2) -> np.ndarray:
  """Images side by side (HxWxC in [0, 1], the same height), each under its
  label, as uint8."""
  row = image_grid([c[None] for _, c in columns], pad)
  header = Image.new('RGB', (row.shape[1], 16), (255, 255, 255))
  draw, font = ImageDraw.Draw(header), ImageFont.load_default()
  x = 0
  for label, image in columns:
    draw.text((x + 2, 2), label, fill=(0, 0, 0), font=font)
    x += image.shape[1] + pad
  return np.concatenate([np.asarray(header), row], axis=0)


def save_png(path: str, image_uint8: np.ndarray, scale: int = 1) -> None:
  img = Image.fromarray(image_uint8)
  if scale > 1:
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  write_through_temp(path, lambda tmp: img.save(tmp, format='PNG'))


def write_through_temp(path: str, write) -> None:
  """`write(tmp)` to a temporary file beside `path`, then renamed to it: an
  interrupted or failed write leaves no half file, and the file that was
  there stays as it was. A full disk or a read-only place raises
  errors.StorageError naming `path`."""
  directory = os.path.dirname(os.path.abspath(path))
  tmp = os.path.join(directory, f'.{os.path.basename(path)}.tmp')
  existed = os.path.exists(path)
  with errors.writing(path, 'The file there is unchanged' if existed else
                      'No part of it was left'):
    try:
      write(tmp)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)


def write_text(path: str, text: str) -> None:
  def write(tmp):
    with open(tmp, 'w') as f:
      f.write(text)
  write_through_temp(path, write)


def write_bytes(path: str, data: bytes) -> None:
  def write(tmp):
    with open(tmp, 'wb') as f:
      f.write(data)
  write_through_temp(path, write)


def write_json(path: str, data: Any) -> None:
  def write(tmp):
    with open(tmp, 'w') as f:
      json.dump(data, f, indent=2, sort_keys=True)
  write_through_temp(path, write)


class Writer:
  """TensorBoard scalars and images in one event file under `logdir`; a no-op
  that writes no file when `enabled` is False."""

  def __init__(self, logdir: str, enabled: bool = True):
    self.logdir = logdir
    self._writer = None
    self._closed = False
    if enabled:
      self._writer = SummaryWriter(
          logdir, filename_suffix=f'.{os.getpid()}.{next(_WRITER_IDS):06d}')

  def _live(self):
    # tensorboardX reopens a closed SummaryWriter on the next call, in a
    # second file; refuse instead, as tensorboard's own writer did.
    if self._closed:
      raise IOError('Writer is closed')
    return self._writer

  def scalars(self, step: int, scalars: dict[str, float]) -> None:
    """One scalar per tag at `step`."""
    writer, wall_time = self._live(), time.time()
    if writer is not None:
      for tag, value in scalars.items():
        writer.add_scalar(tag, float(value), int(step), walltime=wall_time)

  def image(self, step: int, tag: str, image_uint8: np.ndarray) -> None:
    """An HxWxC uint8 image at `step`."""
    writer = self._live()
    if writer is not None:
      writer.add_image(tag, np.asarray(image_uint8, np.uint8), int(step),
                       dataformats='HWC')

  def flush(self) -> None:
    writer = self._live()
    if writer is not None:
      with errors.writing(self.logdir):
        writer.flush()

  def close(self) -> None:
    if self._writer is not None and not self._closed:
      self._closed = True
      with errors.writing(self.logdir):
        self._writer.close()


def format_duration(seconds: float) -> str:
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m{s:02d}s' if h else f'{m}m{s:02d}s'


class Progress:
  """Step rate since the last report and the ETA from it."""

  def __init__(self, total_steps: int, batch_size: int, start_step: int):
    self.total, self.batch_size = total_steps, batch_size
    self._last_step, self._last_time = start_step, time.perf_counter()

  def restart(self, step: int) -> None:
    self._last_step, self._last_time = step, time.perf_counter()

  def report(self, step: int, scalars: dict[str, float]) -> str:
    now = time.perf_counter()
    steps = step - self._last_step
    rate = steps / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self.total - step) / rate if rate > 0 else float('inf')
    scalars['images_per_sec'] = rate * self.batch_size
    parts = ' '.join(f'{k} {v:.4g}' for k, v in scalars.items()
                     if k != 'images_per_sec')
    return (f'step {step}/{self.total} {parts} images/s '
            f'{rate * self.batch_size:.0f} ETA {format_duration(eta)}')
