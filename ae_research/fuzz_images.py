"""Image files as a fuzz target: image_io's contract, not the decoders' (Pillow
fuzzes its own), under mutated files and decompression bombs.

Input i of a fuzz seed is a seed file of format i % 5 (seed_files), changed
as drawn from (seed, i) alone: every `bomb_every`-th input of a format states
another width and height in its header (`restate`: at or just over the pixel
limit, huge, zero or random; a bomb when over it), the others get 1 to 3
blind byte edits. Each is read as the package reads files (header_size,
FolderSource.decoded_bytes, read, folder.load_rgb) and must either be refused
with an ImageError that starts with the file's path, the same by the header
readers and by the decoders, never through image_io's last-resort fallback
(any other exception is a crash); or decode, float32 in [0, 1], at the size
its header states (turned by its EXIF orientation; a rewritten header read
as written). A file stating more than the limit is refused by all four from
its header, naming the size, the worker growing by less than BOMB_GROWTH.
The limit (image_io.MAX_PIXELS) is lowered while checking to `max_pixels`
(default LIMIT_FACTOR times the largest seed): sizes around it are cheap.
"""

import collections
import dataclasses
import io
import os
import re
import struct
import zlib
from typing import Any, Callable, Optional

import numpy as np
import png
from PIL import Image

from ae_research import fuzzing, image_io
from ae_research.datasets import folder

FORMATS = ('png', 'jpeg', 'tiff', 'webp', 'bmp', 'ppm')
EXTENSION = dict(png='.png', jpeg='.jpg', tiff='.tif', webp='.webp', bmp='.bmp',
                 ppm='.ppm')
# The largest side each format's header can state (WebP: VP8X's 24 bits).
MAX_SIDE = {'png': 2**31 - 1, 'jpeg': 2**16 - 1, 'tiff': 2**32 - 1, 'webp': 2**24,
            'bmp': 2**31 - 1, 'ppm': 2**31 - 1}
LIMIT_FACTOR = 64  # The default pixel limit: this times the largest seed.
BOMB_GROWTH = 32 * 2**20  # Bytes a worker may grow by while refusing a bomb.
_ORIENTATION = 0x0112  # The EXIF tag.
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # JPEG frame headers.
_INTEGERS = (0, 1, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0xFFFF, 0x10000, 2**31 - 1,
             2**32 - 1)


Seed = collections.namedtuple('Seed', 'name fmt data')  # A valid file.


@dataclasses.dataclass
class Case:
  """One input: a seed file's bytes mutated."""
  data: bytes
  group: str  # '<format> bytes', '<format> size' or '<format> bomb'.
  what: str
  extension: str  # The file name's.
  stated: Optional[tuple[int, int]] = None  # (width, height) written in its header.


def _photo(h: int, w: int, c: int, rng: np.random.Generator) -> np.ndarray:
  small = rng.random((h // 8 + 2, w // 8 + 2, c))
  smooth = np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w]
  x = np.clip((smooth + 0.05 * rng.standard_normal((h, w, c))) * 255, 0, 255)
  return x.astype(np.uint8).squeeze(-1) if c == 1 else x.astype(np.uint8)


def _pillow(image: Any, fmt: str, **options) -> bytes:
  buf = io.BytesIO()
  (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(
      buf, format=fmt, **options)
  return buf.getvalue()


def seed_files() -> list[Seed]:
  """A few real files of each format, each a path of image_io's reading."""
  rng = np.random.default_rng(0)
  rgb, rgba = _photo(32, 40, 3, rng), _photo(36, 28, 4, rng)
  gray = _photo(30, 44, 1, rng)
  exif = Image.Exif()
  exif[_ORIENTATION] = 6
  rgba16 = png.from_array(rgba.reshape(36, -1).astype(np.uint16) * 257, 'RGBA;16')
  buf = io.BytesIO()
  rgba16.write(buf)
  files = {
      'png rgb': ('png', _pillow(rgb, 'PNG')),
      'png palette': ('png', _pillow(Image.fromarray(rgb).quantize(16), 'PNG',
                                     transparency=0)),
      'png 16-bit rgba': ('png', buf.getvalue()),
      'jpeg rotated': ('jpeg', _pillow(rgb, 'JPEG', exif=exif.tobytes())),
      'jpeg progressive gray': ('jpeg', _pillow(gray, 'JPEG', progressive=True)),
      'jpeg cmyk': ('jpeg', _pillow(Image.fromarray(rgb).convert('CMYK'), 'JPEG')),
      'tiff lzw rgba': ('tiff', _pillow(rgba, 'TIFF', compression='tiff_lzw')),
      'tiff 16-bit gray': ('tiff', _pillow(gray.astype(np.uint16) * 257, 'TIFF')),
      'tiff float': ('tiff', _pillow(gray.astype(np.float32) / 255, 'TIFF')),
      'webp lossy': ('webp', _pillow(rgb, 'WEBP', quality=80)),
      'webp lossless': ('webp', _pillow(rgb, 'WEBP', lossless=True)),
      'webp alpha': ('webp', _pillow(rgba, 'WEBP', quality=80)),
      'bmp rgb': ('bmp', _pillow(rgb, 'BMP')),
      'bmp gray': ('bmp', _pillow(gray, 'BMP')),
      'tiff raw rgb': ('tiff', _pillow(rgb, 'TIFF')),
      'ppm rgb': ('ppm', _pillow(rgb, 'PPM')),
      'pgm gray': ('ppm', _pillow(gray, 'PPM')),
      'pgm 16-bit': ('ppm', _pillow(gray.astype(np.uint16) * 257, 'PPM')),
      'pbm bilevel': ('ppm', _pillow(gray > 127, 'PPM')),
  }
  return [Seed(name, fmt, data) for name, (fmt, data) in files.items()]


def _blind(rng: np.random.Generator, b: bytearray) -> str:
  """One edit that knows nothing of the format, half the time in the first
  64 bytes."""
  top = len(b) if rng.random() < 0.5 else min(len(b), 64)
  at = int(rng.integers(max(top, 1)))
  kind = int(rng.integers(6))
  if kind == 0:
    b[at] ^= 1 << int(rng.integers(8))
    return f'bit flip at {at}'
  if kind == 1:
    b[at] = int(rng.choice((0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(256)))))
    return f'byte set at {at}'
  if kind == 2:
    size, order = int(rng.choice((2, 4))), '<>'[int(rng.integers(2))]
    value = int(rng.choice(_INTEGERS)) % (1 << 8 * size)
    b[at:at + size] = struct.pack(order + ('H' if size == 2 else 'I'), value)
    return f'{8 * size}-bit {value} at {at}'
  n = int(rng.integers(1, 65))
  if kind == 3:
    del b[at + 1:]
    return f'truncated to {at + 1} bytes'
  if kind == 4:
    b[at:at] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return f'{n} bytes inserted at {at}'
  del b[at:at + n]
  return f'{n} bytes deleted at {at}'


def _png_reseal(b: bytearray) -> None:
  """Each PNG chunk's CRC made valid again, as far as the chunks parse."""
  at = 8
  while at + 12 <= len(b):
    end = at + 8 + struct.unpack('>I', b[at:at + 4])[0]  # Of the chunk's data.
    if end + 4 > len(b):
      return
    b[end:end + 4] = struct.pack('>I', zlib.crc32(b[at + 4:end]))
    at = end + 4


def _size(rng: np.random.Generator, fmt: str, limit: int) -> tuple[int, int]:
  """A width and height to state: at or just over `limit` pixels, huge, with
  a zero side, or random (log-uniform)."""
  top, kind = MAX_SIDE[fmt], int(rng.integers(6))
  w = int(rng.integers(limit // top + 1, min(top, limit) + 1))
  if kind == 0:
    size = w, limit // w
  elif kind == 1:
    size = w, limit // w + 1
  elif kind == 2:
    huge = [s for s in ((top, top), (top, 1), (60000, 60000)) if max(s) <= top]
    size = huge[int(rng.integers(len(huge)))]
  elif kind == 3:
    size = 0, w
  else:
    size = tuple(int(np.exp(rng.uniform(0, np.log(top + 1)))) for _ in range(2))
  size = size[::-1] if rng.random() < 0.5 else size
  return (max(size[0], 1), max(size[1], 1)) if fmt == 'webp' else size  # 1 at least.


def restate(fmt: str, data: bytes, width: int, height: int,
            rng: np.random.Generator) -> bytes:
  """A seed file with its header stating width x height (WebP: 1 at least)."""
  b = bytearray(data)
  if fmt == 'png':
    b[16:24] = struct.pack('>II', width, height)
    _png_reseal(b)
  elif fmt == 'jpeg':
    at = 2
    while b[at + 1] not in _SOF:
      at += 2 + struct.unpack('>H', b[at + 2:at + 4])[0]
    b[at + 5:at + 9] = struct.pack('>HH', height, width)
  elif fmt == 'tiff':
    order = '<' if b[:2] == b'II' else '>'
    ifd = struct.unpack(order + 'I', b[4:8])[0]
    entries = struct.unpack(order + 'H', b[ifd:ifd + 2])[0]
    for at in range(ifd + 2, ifd + 2 + 12 * entries, 12):
      tag = struct.unpack(order + 'H', b[at:at + 2])[0]
      if tag in (256, 257):  # ImageWidth, ImageLength: LONG.
        value = width if tag == 256 else height
        b[at + 2:at + 12] = struct.pack(order + 'HII', 4, 1, value)
  elif fmt == 'webp':
    kind, side = bytes(b[12:16]), max(width, height)
    canvas = (width - 1).to_bytes(3, 'little') + (height - 1).to_bytes(3, 'little')
    if kind == b'VP8X':
      b[24:30] = canvas
    elif kind == b'VP8 ' and side < 1 << 14 and rng.random() < 0.5:  # 14 bits.
      b[26:30] = struct.pack('<HH', width, height)
    elif kind == b'VP8L' and side <= 1 << 14 and rng.random() < 0.5:  # 14 bits, - 1.
      bits = (width - 1) | (height - 1) << 14 | (b[24] >> 4) << 28
      b[21:25] = bits.to_bytes(4, 'little')
    else:  # An extended header in front, stating the canvas.
      b[12:12] = b'VP8X' + struct.pack('<I', 10) + bytes(4) + canvas
      b[4:8] = struct.pack('<I', len(b) - 8)
  elif fmt == 'ppm':  # 'P6 <width> <height> [<maxval>]', one whitespace, pixels.
    at, tokens = 2, []
    for _ in range(2 if b[1] == ord('4') else 3):
      while b[at] in b' \t\r\n':
        at += 1
      start = at
      while b[at] not in b' \t\r\n':
        at += 1
      tokens.append(bytes(b[start:at]))
    maxval = b' ' + tokens[2] if len(tokens) == 3 else b''
    b = bytearray(bytes(b[:2]) + f' {width} {height}'.encode() + maxval + bytes(b[at:]))
  else:  # BMP; Pillow reads a height as top-down (negative) when its top byte is 0xff.
    top_down = height < 1 << 24 and rng.random() < 0.5
    b[18:26] = struct.pack('<ii', width, -height if top_down else height)
  return bytes(b)


def make_case(seeds: list[Seed], seed: int, index: int, bomb_every: int,
              limit: int) -> Case:
  """Input `index` of fuzz seed `seed`: the same bytes whenever it is made."""
  rng = np.random.default_rng([seed, index])
  fmt = FORMATS[index % len(FORMATS)]
  mine = [s for s in seeds if s.fmt == fmt]
  source = mine[int(rng.integers(len(mine)))]
  if bomb_every and (index // len(FORMATS)) % bomb_every == 0:
    width, height = _size(rng, fmt, limit)
    data = restate(fmt, source.data, width, height, rng)
    group = 'bomb' if width * height > limit else 'size'
    return Case(data, f'{fmt} {group}', f'{source.name}; states {width}x{height}',
                EXTENSION[fmt], (width, height))
  b = bytearray(source.data)
  what = [source.name] + [_blind(rng, b) for _ in range(int(rng.integers(1, 4))) if b]
  if fmt == 'png' and rng.random() < 0.5:  # Past the CRCs, into the chunks.
    _png_reseal(b)
    what.append('CRCs made valid')
  return Case(bytes(b), f'{fmt} bytes', '; '.join(what), EXTENSION[fmt])


def _attempt(read: Callable[[], Any]) -> Any:
  """What `read` returns, or its ImageError (anything else escapes: a crash)."""
  try:
    return read()
  except image_io.ImageError as e:
    return e


def _decoded(image: image_io.Image) -> dict:
  """What is checked of image_io.read's result (the pixels are let go of)."""
  bad = [name for name, x in (('pixels', image.pixels), ('alpha', image.alpha))
         if x is not None and not (x.dtype == np.float32 and np.all(abs(x - 0.5) <= 0.5))]
  return {'shape': image.pixels.shape, 'bad': bad,
          'alpha': None if image.alpha is None else image.alpha.shape}


def judge(case: Case, path: str, limit: int, header: Any, listed: Any, image: Any,
          rgb: Any) -> fuzzing.Result:
  """The outcome of reading `path` four ways: header_size, decoded_bytes,
  read (summarized by _decoded) and load_rgb (shape, dtype)."""
  ways = dict(header_size=header, decoded_bytes=listed, read=image, load_rgb=rgb)
  errors = {k: str(v) for k, v in ways.items() if isinstance(v, image_io.ImageError)}
  for where, message in errors.items():  # pylint: disable=protected-access
    if image_io._UNEXPECTED in message:
      return fuzzing.Result('crash', f'{where}: only the last resort caught it: '
                            + message)
  stated = case.stated or (0, 0)
  over = stated[0] * stated[1] > limit
  problems = [f'{k} raised an error not naming the file: {m}' for k, m in errors.items()
              if not m.startswith(path)]
  for where, message in errors.items():
    m = re.search(r'states (\d+)x(\d+) = ', message)
    if 'more than the limit' in message and (not m or int(m[1]) * int(m[2]) <= limit):
      problems.append(f'{where} refused a size within the limit: {message}')
  for a, b in (('header_size', 'decoded_bytes'), ('read', 'load_rgb')):
    if errors.get(a) != errors.get(b):
      problems.append(f'{a} and {b} differ: {str(ways[a])[:300]} / '
                      + str(ways[b])[:300])
  if 'header_size' in errors and 'read' not in errors:
    problems.append('read decoded a file whose header was refused: '
                    + errors['header_size'])
  if over:
    problems += [f'stating {stated[0]}x{stated[1]} over the limit, not refused by its '
                 f'header in {k}: {str(v)[:300]}' for k, v in ways.items()
                 if f'{stated[0]}x{stated[1]} = ' not in errors.get(k, '')]
  facts = {'bomb': stated[0] * stated[1]} if over else {}
  # Memory: a bomb or a file refused from its header costs next to nothing;
  # one refused while decoding at most what its stated size would have
  # (4 channels), one decoded what its uint8 array is (image_io.MEMORY_FACTOR).
  growth = BOMB_GROWTH
  if not over and 'header_size' not in errors:
    growth += image_io.MEMORY_FACTOR * 4 * header[0] * header[1]
  if not problems and 'read' in errors:
    return fuzzing.Result('refused', errors['read'], facts, growth)
  if not problems:
    w, h = header
    with Image.open(path) as img:
      if img.getexif().get(_ORIENTATION, 1) in range(5, 9):
        w, h = h, w
    problems = [f'{name} not float32 in [0, 1]' for name in image['bad']]
    if (image['shape'] not in ((h, w, 1), (h, w, 3))
        or image['alpha'] not in (None, (h, w, 1))):
      problems.append(f'pixels {image["shape"]}, alpha {image["alpha"]} for {w}x{h}')
    if rgb != ((h, w, 3), np.uint8) or listed != 3 * w * h or w * h > limit:
      problems.append(f'load_rgb {rgb}, decoded_bytes {listed} for {w}x{h} '
                      f'(limit {limit})')
    if case.stated and header != case.stated:
      problems.append(f'header_size {header}; the header states {case.stated}')
  if problems:
    return fuzzing.Result('wrong', '; '.join(problems), facts)
  h, w, c = image['shape']
  decoded = h * w * (c + (image['alpha'] is not None))  # Its uint8 array.
  return fuzzing.Result('decoded', facts={**facts, 'decoded_bytes': decoded},
                        max_growth=BOMB_GROWTH + image_io.MEMORY_FACTOR * decoded)


class Target:
  """The fuzzing harness's target: input i is make_case(seeds, seed, i, ...),
  read under image_io.MAX_PIXELS = max_pixels and judged."""

  def __init__(self, seed: int = 0, bomb_every: int = 4,
               max_pixels: Optional[int] = None):
    self.seeds, self.seed, self.bomb_every = seed_files(), seed, bomb_every
    largest = max(w * h for w, h in (Image.open(io.BytesIO(s.data)).size
                                     for s in self.seeds))
    self.max_pixels = max_pixels or LIMIT_FACTOR * largest
    self.folder = ''

  def start(self, folder: str) -> None:
    self.folder = os.path.join(folder, 'input')
    os.makedirs(self.folder, exist_ok=True)

  def make(self, index: int) -> Case:
    return make_case(self.seeds, self.seed, index, self.bomb_every, self.max_pixels)

  def check(self, case: Case) -> fuzzing.Result:
    for name in os.listdir(self.folder):  # The input alone in its folder.
      os.remove(os.path.join(self.folder, name))
    path = os.path.join(self.folder, 'input' + case.extension)
    with open(path, 'wb') as f:
      f.write(case.data)
    saved, image_io.MAX_PIXELS = image_io.MAX_PIXELS, self.max_pixels
    try:
      header = _attempt(lambda: image_io.header_size(path))
      listed = _attempt(lambda: folder.FolderSource([self.folder]).decoded_bytes())
      image = _attempt(lambda: _decoded(image_io.read(path)))
      rgb = _attempt(lambda: folder.FolderSource([self.folder])[0]['image'])
      rgb = rgb if isinstance(rgb, Exception) else (rgb.shape, rgb.dtype)
    finally:
      image_io.MAX_PIXELS = saved
    return judge(case, path, self.max_pixels, header, listed, image, rgb)

  def again(self, index: int) -> str:
    return (f'python benchmarks/fuzz_images.py --seed={self.seed} --bomb_every='
            f'{self.bomb_every} --max_pixels={self.max_pixels} --only={index}')


def summary(report: fuzzing.Report, show: int = 5) -> str:
  """The harness's report by kind of input, then the bombs."""
  bombs, fact = fuzzing.Tally(), report.facts.get('bomb', fuzzing.Fact())
  used = report.facts.get('bound_used', fuzzing.Fact())
  decoded = report.facts.get('decoded_bytes', fuzzing.Fact())
  memory = (f'\nmemory: every input within its bound ({image_io.MEMORY_FACTOR} '
            f'times its decoded uint8 array, {decoded.high / 2**20:.1f} MiB at the '
            f'largest, plus {BOMB_GROWTH / 2**20:.0f} MiB; decoding stopped short: '
            f'the array its header states); {100 * used.high:.0f}% of it used at '
            f'the most (input {used.high_index})' if used.n else '')
  for tally in (t for g, t in report.groups.items() if g.endswith(' bomb')):
    bombs.merge(tally)
  return fuzzing.summary(report, show, name='input') + (
      f'\nbombs: {bombs.counts["refused"]:,} of {bombs.inputs:,} refused from the '
      f'header, stating {fact.low:,} to {fact.high:,} pixels, limit '
      f'{report.target.max_pixels:,}; resident memory grew by at most '
      f'{bombs.growth[0] / 2**20:.1f} MiB while refusing one' if bombs.inputs else ''
  ) + memory
