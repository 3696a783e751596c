"""Every image in a folder (PNG, JPEG, BMP, TIFF, WebP), any size, as RGB."""

import os

import numpy as np

from ae_research import errors, image_io

EXTENSIONS = image_io.EXTENSIONS


def load_rgb(path: str) -> np.ndarray:
  """An image file as HxWx3 uint8: EXIF orientation applied, gray and
  palette images expanded to RGB, alpha dropped, 16-bit scaled to 8."""
  return image_io.read(path).rgb_uint8()


class FolderSource:
  """Random-access source over the images of `path`, sorted by file name."""

  def __init__(self, path: str):
    if not os.path.isdir(path):
      raise errors.DataError(f'folder:{path} is not a folder')
    self.path = path
    self.files = sorted(f for f in os.listdir(path)
                        if f.lower().endswith(EXTENSIONS))
    if not self.files:
      raise errors.DataError(f'folder:{path} holds no image ({", ".join(EXTENSIONS)})')

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> dict:
    name = self.files[index]
    return {'image': load_rgb(os.path.join(self.path, name)),
            'name': os.path.splitext(name)[0]}
