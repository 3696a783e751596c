"""Every image in one or several folders (PNG, JPEG, BMP, TIFF, WebP), any
size, as RGB; decoded once and kept in memory when asked (training)."""

import os
import threading
from typing import Optional, Sequence

import numpy as np

from ae_research import errors, image_io

EXTENSIONS = image_io.EXTENSIONS


def load_rgb(path: str) -> np.ndarray:
  """An image file as HxWx3 uint8: EXIF orientation applied, gray and
  palette images expanded to RGB, alpha dropped, 16-bit scaled to 8;
  image_io.ImageError if it cannot be read (or held in memory)."""
  image = image_io.read(path)
  try:
    return image.rgb_uint8()
  except MemoryError:
    height, width = image.pixels.shape[:2]
    raise image_io.ImageError(f'{path}: not enough memory for its {width}x{height} '
                              'pixels as RGB') from None


def _images_in(path: str) -> list[str]:
  if not os.path.isdir(path):
    raise errors.DataError(f'folder:{path} is not a folder')
  files = sorted(f for f in os.listdir(path) if f.lower().endswith(EXTENSIONS))
  if not files:
    raise errors.DataError(f'folder:{path} holds no image ({", ".join(EXTENSIONS)})')
  return [os.path.join(path, f) for f in files]


class FolderSource:
  """Random-access source over the images of `paths`: folder by folder, each
  sorted by file name. Example names are file names without extension,
  prefixed by the folder's name and '_' when there are several folders.

  With `cache`, each image is decoded on first use and kept (training reads
  every image many times; the standard training sets fit in memory).
  """

  def __init__(self, paths: Sequence[str], cache: bool = False):
    if isinstance(paths, str):
      paths = [paths]
    self.files = [f for p in paths for f in _images_in(p)]
    several = len(paths) > 1
    self.names = [
        (os.path.basename(os.path.dirname(f)) + '_' if several else '') +
        os.path.splitext(os.path.basename(f))[0] for f in self.files]
    self._cache: Optional[list] = [None] * len(self.files) if cache else None
    self._lock = threading.Lock()

  def __len__(self) -> int:
    return len(self.files)

  def _image(self, index: int) -> np.ndarray:
    if self._cache is None:
      return load_rgb(self.files[index])
    image = self._cache[index]
    if image is None:
      image = load_rgb(self.files[index])
      with self._lock:  # Grain reads from several threads.
        self._cache[index] = image
    return image

  def decoded_bytes(self) -> int:
    """Bytes of every image decoded as RGB uint8, read from the files'
    headers (nothing is decoded); image_io.ImageError for a file that is
    not an image, or states more than image_io.MAX_PIXELS pixels."""
    total = 0
    for f in self.files:
      width, height = image_io.header_size(f)
      total += 3 * width * height
    return total

  def __getitem__(self, index: int) -> dict:
    return {'image': self._image(index), 'name': self.names[index]}
