"""Image files in and out, as float pixels with their alpha and bit depth.

  image = image_io.read('photo.jpg')   # EXIF orientation applied
  image.pixels      # float32 HxWxC in [0, 1]; C is 1 (gray) or 3 (RGB)
  image.alpha       # float32 HxWx1 in [0, 1], or None
  image.bit_depth   # 8, or 16 for 16-bit PNG and TIFF
  image_io.header_size('photo.jpg')    # (width, height), nothing decoded
  image_io.write_png('out.png', pixels, alpha, bit_depth)

Pillow reads every common format; 16-bit PNGs are read and written with
pypng, since Pillow reduces 16-bit color PNGs to 8 bits. A file that is empty,
truncated, corrupt or not an image raises `ImageError` saying which.

Decompression bombs: a file whose header states more than `MAX_PIXELS` pixels
(width x height; 1 << 28 = 268,435,456 by default, e.g. 16384 x 16384) is
refused with `ImageError` from its header, before any pixel is allocated: a
few kilobytes can state 60000 x 60000 pixels, 10 GB decoded. Raise the limit
with the environment variable AE_RESEARCH_MAX_PIXELS (read on import), or by
setting `image_io.MAX_PIXELS`. Since this module checks every size itself,
importing it turns off Pillow's own check (`PIL.Image.MAX_IMAGE_PIXELS =
None`), whose warning and error would otherwise pre-empt this one, or refuse
sizes MAX_PIXELS allows.

Uncompressed files hold their pixels' bytes: a BMP (no RLE), a TIFF with no
compression, or a binary PPM, PGM or PBM whose header states more than
`RAW_FACTOR` times the file's size in raw pixel bytes (rows x bytes per row
as stated) is refused from its header too. Pillow would allocate the whole
image and zero-fill what is missing (short TIFF strips), so a file of a few
kilobytes could cost gigabytes within the pixel limit. A file that passes
both checks costs at most about `MEMORY_FACTOR` times its decoded uint8 array
(height x width x channels) to read as float pixels (measured by
benchmarks/fuzz_images.py, which checks every input against it).
"""

import contextlib
import dataclasses
import os
import traceback
import zlib
from typing import Iterator, Optional

import numpy as np
import png
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from ae_research import errors

EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm',
              '.pgm', '.pbm')
_ORIENTATION = 0x0112  # The EXIF tag.
_MAX_PIXELS_VARIABLE = 'AE_RESEARCH_MAX_PIXELS'


def _max_pixels_from_environment() -> int:
  value = os.environ.get(_MAX_PIXELS_VARIABLE, '').strip()
  if not value:
    return 1 << 28
  try:
    limit = int(value)
  except ValueError:
    limit = 0
  if limit < 1:
    raise ValueError(f'{_MAX_PIXELS_VARIABLE}={value!r}: expected a positive '
                     'whole number of pixels, e.g. 1000000000')
  return limit


# The most pixels (width x height) an image may state; see the docstring.
MAX_PIXELS = _max_pixels_from_environment()
# The most raw pixel bytes an uncompressed file may state, per byte it holds.
RAW_FACTOR = 2
# Peak memory of `read`, in bytes per byte of the decoded uint8 array, beyond
# a constant (the fuzzer's bound).
MEMORY_FACTOR = 16
PILImage.MAX_IMAGE_PIXELS = None  # Checked here, against MAX_PIXELS.

# What Pillow and pypng raise on malformed files. Besides the usual: TypeError
# where Pillow uses a TIFF tag of the wrong type (e.g. strip offsets stated as
# RATIONAL or FLOAT) as an integer.
_CORRUPT = (OSError, SyntaxError, ValueError, EOFError, zlib.error, png.Error,
            TypeError)
_UNEXPECTED = 'the decoder failed unexpectedly'


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
    x = to_uint8(self.pixels)  # Before expanding gray: a quarter of the memory.
    return np.repeat(x, 3, -1) if self.gray else x


def to_uint8(x: np.ndarray) -> np.ndarray:
  y = np.clip(x, 0.0, 1.0)  # One float copy, scaled and rounded in place.
  y *= 255.0
  return np.round(y, out=y).astype(np.uint8)


def orient(x_HxWxC: np.ndarray, orientation: int) -> np.ndarray:
  """Pixels as they are meant to be seen, given the EXIF orientation (1-8)."""
  ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
         4: lambda a: a[::-1], 5: lambda a: a.transpose(1, 0, 2),
         6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 2).transpose(1, 0, 2),
         8: lambda a: np.rot90(a, 1)}
  return np.ascontiguousarray(ops.get(orientation, lambda a: a)(x_HxWxC))


def _split(array: np.ndarray, has_alpha: bool, scale: float,
           bit_depth: int) -> Image:
  # One float copy of a possibly huge image (none of a float32 one, which
  # is this module's own), scaled in place.
  x = array.astype(np.float32, copy=array.dtype != np.float32)
  x /= scale
  if x.ndim == 2:
    x = x[..., None]
  if has_alpha:
    return Image(x[..., :-1], x[..., -1:], bit_depth)
  return Image(x, None, bit_depth)


def _check_pixels(path: str, width: int, height: int) -> None:
  """ImageError unless a width x height image is within MAX_PIXELS."""
  if width * height > MAX_PIXELS:
    raise ImageError(
        f'{path}: the file states {width}x{height} = {width * height:,} pixels, '
        f'more than the limit of {MAX_PIXELS:,} (image_io.MAX_PIXELS); refused '
        f'before decoding, as a possible decompression bomb. To read it, raise '
        f'the limit: {_MAX_PIXELS_VARIABLE}={width * height} in the '
        f'environment, or image_io.MAX_PIXELS in Python')


def _webp_size(head: bytes) -> Optional[tuple[int, int]]:
  """The canvas size a WebP file's first chunk states, if it is one. Pillow
  hands a WebP file to libwebp's decoder on `open`, which allocates the
  canvas at once, so it is checked before."""
  if len(head) < 30 or head[:4] != b'RIFF' or head[8:12] != b'WEBP':
    return None
  chunk = head[12:16]
  if chunk == b'VP8X':  # Canvas width and height - 1, 24 bits each.
    return (int.from_bytes(head[24:27], 'little') + 1,
            int.from_bytes(head[27:30], 'little') + 1)
  if chunk == b'VP8 ' and head[23:26] == b'\x9d\x01\x2a':  # 14 bits each.
    return (int.from_bytes(head[26:28], 'little') & 0x3FFF,
            int.from_bytes(head[28:30], 'little') & 0x3FFF)
  if chunk == b'VP8L' and head[20] == 0x2F:  # Width and height - 1, 14 bits.
    bits = int.from_bytes(head[21:25], 'little')
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
  return None


# Bits per pixel of binary PPM/PGM/PBM data, by Pillow's raw mode.
_PPM_BITS = {'1;I': 1, 'L': 8, 'I;16B': 16, 'I;32B': 32, 'RGB': 24,
             'RGB;16B': 48, 'F;32F': 32, 'F;32BF': 32}


def _tiff_bits(img: PILImage.Image) -> int:
  samples = img.tag_v2.get(277, 1)
  bits = img.tag_v2.get(258, 1)
  bits = tuple(bits) if isinstance(bits, (tuple, list)) else (bits,)
  if len(bits) == 1:
    bits = bits * max(int(samples), 1)
  return sum(int(b) for b in bits)


def raw_bytes(img: PILImage.Image) -> Optional[int]:
  """The bytes an uncompressed file's header states its pixels take (rows
  x bytes per row), or None for compressed data and other formats."""
  width, height = img.size
  if img.format == 'TIFF':
    if img.tag_v2.get(259, 1) != 1:  # Compression: 1 is none.
      return None
    return (width * _tiff_bits(img) + 7) // 8 * height
  raw = [t for t in img.tile if t[0] == 'raw']
  if not raw or len(raw) != len(img.tile):
    return None
  if img.format in ('BMP', 'DIB'):  # (raw mode, stride, orientation).
    args = raw[0][3]
    stride = args[1] if isinstance(args, tuple) and len(args) > 1 else 0
    return int(stride) * height if stride and stride > 0 else None
  if img.format == 'PPM':
    rawmode = raw[0][3] if isinstance(raw[0][3], str) else raw[0][3][0]
    return (width * _PPM_BITS.get(rawmode, 1) + 7) // 8 * height
  return None


def _check_raw_bytes(path: str, img: PILImage.Image) -> None:
  """ImageError if an uncompressed file states more pixel bytes than
  RAW_FACTOR times its size."""
  stated = raw_bytes(img)
  if stated is None:
    return
  size = os.path.getsize(path)
  if stated > RAW_FACTOR * size:
    width, height = img.size
    raise ImageError(
        f'{path}: the header states {width}x{height} pixels of uncompressed '
        f'{img.format} data, {stated:,} bytes, but the file holds {size:,} '
        f'bytes; refused before decoding (an uncompressed file may state at '
        f'most {RAW_FACTOR} times its size: image_io.RAW_FACTOR). The file is '
        'truncated or its header is wrong')


@contextlib.contextmanager
def _open(path: str) -> Iterator[PILImage.Image]:
  """The file opened by Pillow (its header read, nothing decoded), its size
  checked against MAX_PIXELS."""
  with open(path, 'rb') as f:
    head = f.read(30)
  size = _webp_size(head)
  if size is not None:
    _check_pixels(path, *size)
  with PILImage.open(path) as img:
    _check_pixels(path, *img.size)
    _check_raw_bytes(path, img)
    yield img


@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
  """Turns whatever reading `path` raises into an ImageError saying why."""
  try:
    yield
  except ImageError:
    raise
  except UnidentifiedImageError:
    with open(path, 'rb') as f:
      head = f.read(8)
    raise ImageError(f'{path}: not an image (no image format starts with '
                     f'{head!r}); expected one of {", ".join(EXTENSIONS)}') from None
  except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as e:
    # Only when other code has set PIL.Image.MAX_IMAGE_PIXELS again.
    raise ImageError(
        f'{path}: refused by Pillow as a possible decompression bomb ({e}); '
        f'PIL.Image.MAX_IMAGE_PIXELS={PILImage.MAX_IMAGE_PIXELS} was set after '
        f'image_io turned it off; image_io checks MAX_PIXELS itself') from None
  except MemoryError:
    raise ImageError(f'{path}: not enough memory to decode the image') from None
  except _CORRUPT as e:
    raise ImageError(f'{path}: truncated or corrupt image data '
                     f'({type(e).__name__}: {e})') from None
  except Exception as e:  # Nothing else has been seen (fuzz_images.py counts
    # any as a crash), but no malformed file may stop a run with a traceback.
    frame = traceback.extract_tb(e.__traceback__)[-1]
    raise ImageError(f'{path}: {_UNEXPECTED} ({type(e).__name__} at '
                     f'{os.path.basename(frame.filename)}:{frame.lineno}: {e}); '
                     'the file is probably malformed') from e


def _check_file(path: str) -> None:
  if not os.path.isfile(path):
    raise ImageError(f'{path}: no such file')
  if os.path.getsize(path) == 0:
    raise ImageError(f'{path}: empty file (0 bytes)')


def header_size(path: str) -> tuple[int, int]:
  """(width, height) as the file's header states them, before any EXIF
  rotation; nothing decoded. ImageError if it is not an image, or states
  more than MAX_PIXELS pixels."""
  _check_file(path)
  with _reading(path), _open(path) as img:
    return img.size


def _read_png16(path: str) -> Image:
  width, height, rows, info = png.Reader(filename=path).asDirect()
  _check_pixels(path, width, height)  # As Pillow's was; pypng reads the IHDR again.
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
    array = np.array(img, np.float32)  # 16-bit values are exact.
    # NaN and infinities (float TIFFs) do not set the range; NaN is black.
    top = array.max(where=np.isfinite(array), initial=0.0)
    scale = 1.0 if mode == 'F' and top <= 1.0 else 65535.0 if top > 255 else 255.0
    array /= scale  # In place, as below: a huge image is not copied again.
    np.clip(np.nan_to_num(array, copy=False), 0.0, 1.0, out=array)
    return _split(array, False, 1.0, 16 if scale == 65535.0 else 8)
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
  a readable image, or states more than MAX_PIXELS pixels."""
  _check_file(path)
  with _reading(path):  # Also around turning it: orient() copies the pixels.
    with _open(path) as img:
      orientation = img.getexif().get(_ORIENTATION, 1)
      if _is_png16(path):
        image = _read_png16(path)
      else:
        img.load()  # Decodes everything now: a truncated file fails here.
        image = _from_pillow(img)
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
