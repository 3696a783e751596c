"""Image files in and out, as float pixels with their alpha and bit depth.

  image = image_io.read('photo.jpg')   # EXIF orientation applied
  image.pixels      # float32 HxWxC in [0, 1]; C is 1 (gray) or 3 (RGB)
  image.alpha       # float32 HxWx1 in [0, 1], or None
  image.bit_depth   # 8, or 16 for 16-bit PNG and TIFF
  image_io.write_png('out.png', pixels, alpha, bit_depth)

Pillow reads every common format; 16-bit PNGs are read and written with
pypng, since Pillow reduces 16-bit color PNGs to 8 bits. A file that is empty,
truncated, corrupt or not an image raises `ImageError` saying which.
"""

import dataclasses
import os
import zlib
from typing import Optional

import numpy as np
import png
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from ae_research import errors

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
_ORIENTATION = 0x0112  # The EXIF tag.


class ImageError(errors.UserError, ValueError):
  """A file that cannot be read as an image."""


@dataclasses.dataclass
class Image:
  pixels: np.ndarray  # float32 HxWxC in [0, 1], C = 1 or 3.
  alpha: Optional[np.ndarray] = None  # float32 HxWx1 in [0, 1].
  bit_depth: int = 8

  @property
  def gray(self) -> bool:
    return self.pixels.shape[-1] == 1

  def rgb_uint8(self) -> np.ndarray:
    """HxWx3 uint8, gray expanded, alpha dropped."""
    return to_uint8(np.repeat(self.pixels, 3, -1) if self.gray else self.pixels)


def to_uint8(x: np.ndarray) -> np.ndarray:
  return np.round(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def orient(x_HxWxC: np.ndarray, orientation: int) -> np.ndarray:
  """Pixels as they are meant to be seen, given the EXIF orientation (1-8)."""
  ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
         4: lambda a: a[::-1], 5: lambda a: a.transpose(1, 0, 2),
         6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
         8: lambda a: np.rot90(a, 1)}
  return np.ascontiguousarray(ops.get(orientation, lambda a: a)(x_HxWxC))


def _split(array: np.ndarray, has_alpha: bool, scale: float,
           bit_depth: int) -> Image:
  x = array.astype(np.float32) / scale
  if x.ndim == 2:
    x = x[..., None]
  if has_alpha:
    return Image(x[..., :-1], x[..., -1:], bit_depth)
  return Image(x, None, bit_depth)


def _read_png16(path: str) -> Image:
  width, height, rows, info = png.Reader(filename=path).asDirect()
  planes = info['planes']
  array = np.vstack([np.asarray(r, np.uint16) for r in rows])
  array = array.reshape(height, width, planes)
  return _split(array, info['alpha'], 65535.0, 16)


def _is_png16(path: str) -> bool:
  """A PNG of 16 bits per channel (its IHDR's bit depth)."""
  with open(path, 'rb') as f:
    head = f.read(25)
  return len(head) == 25 and head[:8] == b'\x89PNG\r\n\x1a\n' and head[24] == 16


def _from_pillow(img: PILImage.Image) -> Image:
  mode = img.mode
  if mode.startswith('I;16'):
    return _split(np.asarray(img), False, 65535.0, 16)
  if mode in ('I', 'F'):  # 32-bit integer or float: 8- or 16-bit ranges.
    array = np.asarray(img, np.float64)
    top = array.max() if array.size else 0
    scale = 1.0 if mode == 'F' and top <= 1.0 else 65535.0 if top > 255 else 255.0
    return _split(np.clip(array / scale, 0.0, 1.0), False, 1.0,
                  16 if scale == 65535.0 else 8)
  if mode == 'P':
    mode = 'RGBA' if 'transparency' in img.info else 'RGB'
  elif mode in ('1', 'L'):
    mode = 'L'
  elif mode in ('LA', 'La', 'PA'):
    mode = 'LA'
  elif mode in ('RGBA', 'RGBa') or 'A' in mode:
    mode = 'RGBA'
  else:  # RGB, CMYK, YCbCr, LAB, HSV...
    mode = 'RGB'
  array = np.asarray(img.convert(mode) if mode != img.mode else img)
  return _split(array, mode in ('LA', 'RGBA'), 255.0, 8)


def read(path: str) -> Image:
  """The image in `path`, EXIF orientation applied; ImageError if it is not
  a readable image."""
  if not os.path.isfile(path):
    raise ImageError(f'{path}: no such file')
  if os.path.getsize(path) == 0:
    raise ImageError(f'{path}: empty file (0 bytes)')
  try:
    with PILImage.open(path) as img:
      orientation = img.getexif().get(_ORIENTATION, 1)
      if _is_png16(path):
        image = _read_png16(path)
      else:
        img.load()  # Decodes everything now: a truncated file fails here.
        image = _from_pillow(img)
  except UnidentifiedImageError:
    with open(path, 'rb') as f:
      head = f.read(8)
    raise ImageError(f'{path}: not an image (no image format starts with '
                     f'{head!r}); expected one of {", ".join(EXTENSIONS)}') from None
  except PILImage.DecompressionBombError as e:
    raise ImageError(f'{path}: {e}') from None
  except (OSError, SyntaxError, ValueError, EOFError, zlib.error,
          png.Error) as e:
    raise ImageError(f'{path}: truncated or corrupt image data '
                     f'({type(e).__name__}: {e})') from None
  if image.pixels.shape[0] == 0 or image.pixels.shape[1] == 0:
    raise ImageError(f'{path}: the image has no pixels '
                     f'({image.pixels.shape[1]}x{image.pixels.shape[0]})')
  if orientation in range(2, 9):
    image.pixels = orient(image.pixels, orientation)
    if image.alpha is not None:
      image.alpha = orient(image.alpha, orientation)
  return image


def write_png(path: str, pixels: np.ndarray, alpha: Optional[np.ndarray] = None,
              bit_depth: int = 8) -> None:
  """Float pixels (HxWx1 or HxWx3 in [0, 1]) and optional alpha as a PNG of
  8 or 16 bits per channel."""
  x = pixels if alpha is None else np.concatenate([pixels, alpha], -1)
  channels = x.shape[-1]
  if bit_depth == 16:
    mode = {1: 'L', 2: 'LA', 3: 'RGB', 4: 'RGBA'}[channels] + ';16'
    array = np.round(np.clip(x, 0.0, 1.0) * 65535.0).astype(np.uint16)
    with open(path, 'wb') as f:
      png.from_array(array.reshape(x.shape[0], -1), mode).write(f)
    return
  array = to_uint8(x)
  PILImage.fromarray(array[..., 0] if channels == 1 else array).save(
      path, format='PNG')
