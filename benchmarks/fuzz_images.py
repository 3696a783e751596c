"""Fuzzing the image readers with mutated files and decompression bombs.

  python benchmarks/fuzz_images.py                        # 10,000 inputs
  nice -n 10 python benchmarks/fuzz_images.py --inputs=50000 --workers=2
  python benchmarks/fuzz_images.py --seed=0 --only=1234 --save=/tmp/fuzz
      # one input again, in this process: its file kept, its traceback shown

Mutated PNG, JPEG, TIFF, WebP and BMP files, read the way `apply` and
`folder:` read them; none may crash, hang, or be decoded past
image_io.MAX_PIXELS.

Builds seed files from images shipped in scikit-image (`skimage.data`, shrunk
to a few dozen pixels a side so that decoding is fast): PNG (8-bit RGB, gray,
RGBA, palette, interlaced, with EXIF; 16-bit RGB and gray+alpha, which
image_io reads with pypng), JPEG (baseline, progressive, EXIF-rotated, gray,
CMYK, restart markers), TIFF (8-bit, 16-bit, 32-bit float and integer, LZW,
Deflate, PackBits, JPEG), WebP (lossy, lossless, with alpha, with EXIF) and
BMP (24-bit, 32-bit, palette, gray, 1-bit). Input i of --seed s is a seed
file of format i % 5, mutated as drawn from (s, i) alone, so that any input
can be made again: 1 to 3 bit flips, byte sets, integer sets, truncations,
insertions, deletions, copies, and edits of the format's structure (PNG
chunks with their CRCs made valid again, recompressed IDAT data, APNG
chunks, JPEG segments and markers, MPO indexes, TIFF directory entries and
loops, WebP RIFF chunks, BMP header fields, RLE data, EXIF blocks). Every
--bomb_every-th input of a format is instead a decompression bomb: its header
alone edited to state more than MAX_PIXELS pixels (e.g. 60000x60000 from a
file of a few kilobytes).

Each input is written to a folder of its own in a temporary directory and
read by worker processes (--workers) through image_io.read (as `apply` and
`codec` read) and a folder.FolderSource over that folder (`decoded_bytes`,
then the image through folder.load_rgb, as `folder:` reads). Each read must
decode to an array of the size the header states (turned by the EXIF
orientation), values in [0, 1], or raise image_io.ImageError, both ways the
same; a bomb must be refused with the MAX_PIXELS message by both, without
the worker's resident memory growing (its peak is reset before each input,
through /proc/self/clear_refs). Anything else escaping, or caught only by
image_io's last-resort fallback, is a crash; an input that takes longer than
--timeout is a hang: the parent kills that worker and starts another. Prints
per format: inputs, decoded, refused, bombs refused before allocation,
crashes, hangs, wrong results, inputs per second of a worker's time reading,
the peak resident memory of the workers; then the first few failures with
the command that reproduces each. Exits 1 on any failure.
"""

import argparse
import collections
import dataclasses
import io
import json
import os
import resource
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import zlib
from typing import Optional

import numpy as np
import png
import skimage.data
from PIL import Image

from ae_research import image_io
from ae_research.datasets import folder

FORMATS = ('png', 'jpeg', 'tiff', 'webp', 'bmp')
EXTENSION = {'png': '.png', 'jpeg': '.jpg', 'tiff': '.tif', 'webp': '.webp',
             'bmp': '.bmp'}
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_ORIENTATION = 0x0112
# A bomb that made the worker's resident memory grow by more than this was
# (at least partly) allocated; every bomb states at least MAX_PIXELS * 3 bytes.
_BOMB_GROWTH_KB = 64 * 1024


@dataclasses.dataclass
class Seed:
  name: str
  fmt: str
  data: bytes


@dataclasses.dataclass
class Case:
  """One fuzzing input: a seed file's bytes mutated."""
  index: int
  seed: Seed
  data: bytes
  mutations: list
  bomb: Optional[tuple] = None  # The (width, height) a bomb states.


# Seed files.


def _small(array: np.ndarray, width: int) -> Image.Image:
  height = max(1, round(array.shape[0] * width / array.shape[1]))
  return Image.fromarray(array).resize((width, height), Image.Resampling.LANCZOS)


def _pillow(img: Image.Image, fmt: str, **options) -> bytes:
  buf = io.BytesIO()
  img.save(buf, format=fmt, **options)
  return buf.getvalue()


def _pypng(array: np.ndarray, mode: str, **options) -> bytes:
  buf = io.BytesIO()
  png.from_array(array.reshape(array.shape[0], -1), mode, info=options).write(buf)
  return buf.getvalue()


def _to_16(img: Image.Image) -> np.ndarray:
  """8-bit pixels spread to 16 bits, low byte varied so every bit matters."""
  x = np.asarray(img, np.uint16)
  return x * 257 ^ (np.arange(x.size, dtype=np.uint16).reshape(x.shape) % 251)


def seed_files() -> list:
  """The real files every input is mutated from, a few per kind."""
  astronaut = _small(skimage.data.astronaut(), 40)
  coffee = _small(skimage.data.coffee(), 48)
  camera = _small(skimage.data.camera(), 32)
  logo = _small(skimage.data.logo(), 36)
  chelsea = _small(skimage.data.chelsea(), 44)
  rotated = Image.Exif()
  rotated[_ORIENTATION] = 6
  exif = rotated.tobytes()
  palette = chelsea.quantize(16)
  gray16 = Image.fromarray(_to_16(camera)).convert('I;16')
  gray_float = Image.fromarray(np.asarray(camera, np.float32) / 255)
  gray_int32 = Image.fromarray(np.asarray(camera, np.int32))
  files = {
      'png_rgb': ('png', _pillow(astronaut, 'PNG')),
      'png_gray': ('png', _pillow(camera, 'PNG')),
      'png_rgba': ('png', _pillow(logo, 'PNG')),
      'png_palette': ('png', _pillow(palette, 'PNG', transparency=0)),
      'png_interlaced': ('png', _pypng(np.asarray(coffee), 'RGB', interlace=True)),
      'png_exif': ('png', _pillow(chelsea, 'PNG', exif=exif)),
      'png_16_rgb': ('png', _pypng(_to_16(coffee), 'RGB;16')),
      'png_16_gray_alpha': ('png', _pypng(
          _to_16(logo.convert('LA')), 'LA;16')),
      'jpeg_baseline': ('jpeg', _pillow(coffee, 'JPEG', quality=85)),
      'jpeg_progressive': ('jpeg', _pillow(astronaut, 'JPEG', progressive=True)),
      'jpeg_exif_rotated': ('jpeg', _pillow(chelsea, 'JPEG', exif=exif)),
      'jpeg_gray': ('jpeg', _pillow(camera, 'JPEG')),
      'jpeg_cmyk': ('jpeg', _pillow(coffee.convert('CMYK'), 'JPEG')),
      'jpeg_restart': ('jpeg', _pillow(astronaut, 'JPEG', restart_marker_rows=1,
                                       subsampling=0)),
      'tiff_rgb': ('tiff', _pillow(astronaut, 'TIFF')),
      'tiff_16': ('tiff', _pillow(gray16, 'TIFF')),
      'tiff_16_deflate': ('tiff', _pillow(gray16, 'TIFF',
                                          compression='tiff_adobe_deflate')),
      'tiff_lzw': ('tiff', _pillow(coffee, 'TIFF', compression='tiff_lzw')),
      'tiff_deflate_rgba': ('tiff', _pillow(logo, 'TIFF',
                                            compression='tiff_adobe_deflate')),
      'tiff_packbits_gray': ('tiff', _pillow(camera, 'TIFF', compression='packbits')),
      'tiff_jpeg': ('tiff', _pillow(coffee, 'TIFF', compression='jpeg')),
      'tiff_float': ('tiff', _pillow(gray_float, 'TIFF')),
      'tiff_int32': ('tiff', _pillow(gray_int32, 'TIFF', compression='tiff_lzw')),
      'webp_lossy': ('webp', _pillow(coffee, 'WEBP', quality=80)),
      'webp_lossless': ('webp', _pillow(astronaut, 'WEBP', lossless=True)),
      'webp_alpha': ('webp', _pillow(logo, 'WEBP', quality=80)),
      'webp_exif': ('webp', _pillow(chelsea, 'WEBP', exif=exif)),
      'bmp_rgb': ('bmp', _pillow(astronaut, 'BMP')),
      'bmp_rgba': ('bmp', _pillow(logo, 'BMP')),
      'bmp_palette': ('bmp', _pillow(palette, 'BMP')),
      'bmp_gray': ('bmp', _pillow(camera, 'BMP')),
      'bmp_1bit': ('bmp', _pillow(camera.convert('1'), 'BMP')),
  }
  return [Seed(name, fmt, data) for name, (fmt, data) in files.items()]


# Mutations that know nothing of the format.

_INTERESTING = (0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff,
                0x10000, 0x7fffffff, 0x80000000, 0xffffffff)


def _position(rng, data, header: int = 256) -> int:
  """A byte of data, half the time within its first `header` bytes."""
  top = min(len(data), header) if rng.random() < 0.5 else len(data)
  return int(rng.integers(max(top, 1)))


def _pick(rng, options):
  return options[int(rng.integers(len(options)))]


def _random_bytes(rng, n: int) -> bytes:
  return rng.integers(0, 256, n, dtype=np.uint8).tobytes()


def _bit_flip(rng, b: bytearray) -> str:
  n = int(rng.integers(1, 9))
  for _ in range(n):
    b[_position(rng, b)] ^= 1 << int(rng.integers(8))
  return f'bit_flip*{n}'


def _byte_set(rng, b: bytearray) -> str:
  n = int(rng.integers(1, 5))
  for _ in range(n):
    values = (0, 0xff, 0x7f, 0x80, 1, int(rng.integers(256)))
    b[_position(rng, b)] = _pick(rng, values)
  return f'byte_set*{n}'


def _int_set(rng, b: bytearray) -> str:
  size = _pick(rng, (2, 4))
  if len(b) < size:
    return _byte_set(rng, b)
  at = min(_position(rng, b), len(b) - size)
  value = _pick(rng, _INTERESTING) % (1 << 8 * size)
  order = '<>'[int(rng.integers(2))]
  b[at:at + size] = struct.pack(order + ('H' if size == 2 else 'I'), value)
  return f'int_set@{at}'


def _truncate(rng, b: bytearray) -> str:
  keep = _position(rng, b, 64) + 1 if len(b) > 1 else 1
  del b[keep:]
  return f'truncate@{keep}'


def _insert(rng, b: bytearray) -> str:
  at = _position(rng, b)
  n = int(rng.integers(1, 65))
  if rng.random() < 0.5:  # A copy of the file's own bytes.
    start = int(rng.integers(len(b)))
    piece = bytes(b[start:start + n])
  else:
    piece = _random_bytes(rng, n)
  b[at:at] = piece
  return f'insert@{at}+{len(piece)}'


def _delete(rng, b: bytearray) -> str:
  at = _position(rng, b)
  n = int(rng.integers(1, 65))
  del b[at:at + n]
  return f'delete@{at}-{n}'


def _copy(rng, b: bytearray) -> str:
  start, at = int(rng.integers(len(b))), _position(rng, b)
  n = int(rng.integers(1, 129))
  piece = bytes(b[start:start + n])
  b[at:at + len(piece)] = piece
  return f'copy@{at}'


_BLIND = (_bit_flip, _byte_set, _int_set, _truncate, _insert, _delete, _copy)


# EXIF blocks, for JPEG APP1, PNG eXIf and WebP EXIF.


def _exif(rng) -> bytes:
  """A TIFF structure of EXIF tags (orientation, an Exif IFD, a GPS IFD), its
  bytes then mutated: counts, types, offsets, loops between directories."""
  exif = Image.Exif()
  exif[_ORIENTATION] = int(rng.integers(0, 10))
  exif[0x010F] = 'maker'
  exif[0x0132] = '2024:01:01 00:00:00'
  exif.get_ifd(0x8769)[0x9003] = '2024:01:01 00:00:00'
  exif.get_ifd(0x8825)[0x0002] = (1.0, 2.0, 3.0)
  b = bytearray(exif.tobytes()[6:])  # Without the 'Exif\0\0' prefix.
  for _ in range(int(rng.integers(0, 4))):
    if rng.random() < 0.3:  # An IFD pointer or count aimed back at the start.
      at = 8 + 2 + 12 * int(rng.integers(0, 5)) + 8
      if at + 4 <= len(b):
        b[at:at + 4] = struct.pack('<I', _pick(rng, (0, 8, 0xffffffff)))
    else:
      _BLIND[int(rng.integers(3))](rng, b)
  return bytes(b)


# PNG: chunks, rebuilt with valid CRCs.

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _png_chunks(data: bytes) -> Optional[list]:
  if data[:8] != _PNG_SIGNATURE:
    return None
  chunks, at = [], 8
  while at + 12 <= len(data):
    length, kind = struct.unpack('>I4s', data[at:at + 8])
    if at + 12 + length > len(data):
      return None
    chunks.append([kind, data[at + 8:at + 8 + length]])
    at += 12 + length
    if kind == b'IEND':
      return chunks
  return None


def _png_join(chunks: list) -> bytes:
  out = [_PNG_SIGNATURE]
  for kind, body in chunks:
    out += [struct.pack('>I', len(body)), kind, body,
            struct.pack('>I', zlib.crc32(kind + body))]
  return b''.join(out)


def _png_new_chunk(rng) -> list:
  kinds = (b'tRNS', b'PLTE', b'sBIT', b'gAMA', b'cHRM', b'sRGB', b'iCCP',
           b'tEXt', b'zTXt', b'iTXt', b'eXIf', b'pHYs', b'bKGD', b'hIST',
           b'tIME', b'acTL', b'fcTL', b'fdAT', b'IDAT', b'IEND', b'IHDR')
  kind = _pick(rng, kinds)
  if kind == b'eXIf':
    return [kind, _exif(rng)]
  if kind in (b'zTXt', b'iCCP'):  # A little zlib bomb, or garbage.
    body = zlib.compress(bytes(int(rng.integers(1, 1 << 22))))
    return [kind, b'k\0\0' + (body if rng.random() < 0.7 else _random_bytes(rng, 32))]
  if kind == b'acTL':
    return [kind, struct.pack('>II', int(rng.integers(0, 4)), 0)]
  if kind == b'fcTL':
    w, h, x, y = (int(v) for v in rng.integers(0, 80, 4))
    return [kind, struct.pack('>IIIIIHHBB', 0, w, h, x, y, 1, 1,
                              int(rng.integers(3)), int(rng.integers(3)))]
  return [kind, _random_bytes(rng, int(rng.integers(0, 40)))]


def _png_structure(rng, b: bytearray) -> str:
  chunks = _png_chunks(bytes(b))
  if not chunks:
    return _bit_flip(rng, b)
  what = int(rng.integers(9))
  i = int(rng.integers(len(chunks)))
  kind = chunks[i][0].decode('latin-1')
  if what == 0:  # One IHDR field.
    ihdr = bytearray(chunks[0][1].ljust(13, b'\0'))
    field = int(rng.integers(7))
    if field < 2:
      old = struct.unpack('>I', ihdr[4 * field:4 * field + 4])[0]
      new = (0, 1, old - 1, old + 1, 2 * old, int(rng.integers(1, 5000)))
      ihdr[4 * field:4 * field + 4] = struct.pack(
          '>I', max(0, _pick(rng, new)))
    else:
      values = ((0, 1, 2, 4, 8, 16, 3, 32), (0, 2, 3, 4, 6, 1, 5, 7),
                (0, 1), (0, 1), (0, 1, 2))[field - 2]
      ihdr[8 + field - 2] = _pick(rng, values)
    chunks[0][1] = bytes(ihdr)
    what_ = f'png_ihdr_field{field}'
  elif what in (1, 2):  # Bytes of a chunk, its CRC valid again.
    body = bytearray(chunks[i][1])
    if body:
      (_bit_flip if what == 1 else _byte_set)(rng, body)
    chunks[i][1] = bytes(body)
    what_ = f'png_{kind}_bytes'
  elif what == 3:  # The image data recompressed, its rows or filters altered.
    idat = [c for c in chunks if c[0] == b'IDAT']
    try:
      raw = bytearray(zlib.decompress(b''.join(c[1] for c in idat)))
    except zlib.error:
      raw = bytearray(_random_bytes(rng, 64))
    if raw:
      _pick(rng, _BLIND)(rng, raw)
    first = chunks.index(idat[0]) if idat else 1
    chunks = [c for c in chunks if c[0] != b'IDAT']
    body = zlib.compress(bytes(raw))
    pieces = int(rng.integers(1, 4))
    step = max(1, len(body) // pieces + 1)
    chunks[first:first] = [[b'IDAT', body[k:k + step]]
                           for k in range(0, len(body), step)]
    what_ = 'png_idat_recompressed'
  elif what == 4:
    del chunks[i]
    what_ = f'png_drop_{kind}'
  elif what == 5:
    chunks.insert(i, list(chunks[i]))
    what_ = f'png_duplicate_{kind}'
  elif what == 6:
    j = int(rng.integers(len(chunks)))
    chunks[i], chunks[j] = chunks[j], chunks[i]
    what_ = f'png_swap_{kind}'
  elif what == 7:
    new = _png_new_chunk(rng)
    chunks.insert(int(rng.integers(1, len(chunks) + 1)), new)
    what_ = f'png_insert_{new[0].decode()}'
  else:  # A chunk's length field wrong (its CRC cannot be valid then).
    out = _png_join(chunks)
    at = 8 + sum(12 + len(c[1]) for c in chunks[:i])
    out = bytearray(out)
    out[at:at + 4] = struct.pack('>I', _pick(rng, _INTERESTING))
    b[:] = out
    return f'png_{kind}_length'
  b[:] = _png_join(chunks)
  return what_


# JPEG: the segments up to the first scan.

_SOF = tuple(m for m in range(0xC0, 0xD0) if m not in (0xC4, 0xC8, 0xCC))


def _jpeg_segments(data: bytes) -> Optional[tuple]:
  """[marker, payload] of each segment from SOI up to the first SOS
  (included), and the bytes after it."""
  if data[:2] != b'\xff\xd8':
    return None
  segments, at = [], 2
  while at + 4 <= len(data) and data[at] == 0xFF:
    marker = data[at + 1]
    length = struct.unpack('>H', data[at + 2:at + 4])[0]
    if length < 2 or at + 2 + length > len(data):
      return None
    segments.append([marker, data[at + 4:at + 2 + length]])
    at += 2 + length
    if marker == 0xDA:
      return segments, data[at:]
  return None


def _jpeg_join(segments: list, rest: bytes) -> bytes:
  out = [b'\xff\xd8']
  for marker, body in segments:
    out += [bytes((0xFF, marker)), struct.pack('>H', len(body) + 2), body]
  return b''.join(out) + rest


def _mpf(rng) -> bytes:
  """A Multi-Picture Format index (an APP2 segment, which makes Pillow open
  the JPEG as an MPO): 1 to 3 images at any offsets and sizes, its bytes then
  mutated."""
  n = int(rng.integers(1, 4))
  entries = b''.join(
      struct.pack('<IIIHH', (0x20000000 if k == 0 else 0) | 0x020002,
                  int(rng.integers(0, 4000)),
                  0 if k == 0 else int(rng.integers(0, 4000)), 0, 0) for k in range(n))
  b = bytearray(b'II*\0' + struct.pack('<IH', 8, 3) +
                struct.pack('<HHI4s', 0xB000, 7, 4, b'0100') +
                struct.pack('<HHII', 0xB001, 4, 1, n) +
                struct.pack('<HHII', 0xB002, 7, 16 * n, 50) + struct.pack('<I', 0) +
                entries)
  for _ in range(int(rng.integers(0, 3))):
    _BLIND[int(rng.integers(3))](rng, b)
  return b'MPF\0' + bytes(b)


def _jpeg_new_segment(rng, segments: list) -> list:
  sof = [s for s in segments if s[0] in _SOF]
  choices = ('com', 'app', 'dri', 'dnl', 'sof', 'dht', 'dqt', 'adobe', 'exif', 'mpf',
             'mpf')
  kind = _pick(rng, choices)
  if kind == 'exif':
    return [0xE1, b'Exif\0\0' + _exif(rng)]
  if kind == 'mpf':
    return [0xE2, _mpf(rng)]
  if kind == 'adobe':  # Its transform flag changes the color conversion.
    return [0xEE, b'Adobe' + struct.pack('>HHHB', 100, 0, 0, int(rng.integers(4)))]
  if kind == 'dri':
    return [0xDD, struct.pack('>H', int(rng.integers(0, 5)))]
  if kind == 'dnl':
    return [0xDC, struct.pack('>H', int(rng.integers(0, 100)))]
  if kind == 'sof' and sof:
    return [_pick(rng, _SOF), sof[0][1]]
  marker = {'com': 0xFE, 'app': 0xE0 + int(rng.integers(16)), 'sof': 0xC0,
            'dht': 0xC4, 'dqt': 0xDB}[kind]
  return [marker, _random_bytes(rng, int(rng.integers(0, 80)))]


def _jpeg_structure(rng, b: bytearray) -> str:
  parsed = _jpeg_segments(bytes(b))
  if not parsed:
    return _bit_flip(rng, b)
  segments, rest = parsed
  what = int(rng.integers(8))
  i = int(rng.integers(len(segments)))
  name = f'{segments[i][0]:02X}'
  sof = [s for s in segments if s[0] in _SOF]
  if what == 0 and sof:  # One field of the frame header.
    body = bytearray(sof[0][1])
    field = int(rng.integers(5))
    if field == 0:
      body[0] = _pick(rng, (8, 12, 16, 0, 255))
    elif field in (1, 2):
      old = struct.unpack('>H', body[2 * field - 1:2 * field + 1])[0]
      new = (0, 1, old - 1, old + 1, 2 * old, int(rng.integers(1, 4000)))
      body[2 * field - 1:2 * field + 1] = struct.pack(
          '>H', max(0, min(0xFFFF, _pick(rng, new))))
    elif field == 3:
      body[5] = _pick(rng, (0, 1, 2, 3, 4, 5, 255))
    elif len(body) > 6:
      at = 6 + int(rng.integers(len(body) - 6))
      body[at] = int(rng.integers(256))
    sof[0][1] = bytes(body)
    what_ = f'jpeg_sof_field{field}'
  elif what == 1 and sof:  # Another kind of frame (lossless, arithmetic...).
    sof[0][0] = _pick(rng, _SOF)
    what_ = f'jpeg_sof_{sof[0][0]:02X}'
  elif what in (0, 1, 2):
    body = bytearray(segments[i][1])
    if body:
      _BLIND[int(rng.integers(3))](rng, body)
    segments[i][1] = bytes(body)
    what_ = f'jpeg_{name}_bytes'
  elif what == 3:
    del segments[i]
    what_ = f'jpeg_drop_{name}'
  elif what == 4:
    segments.insert(i, list(segments[i]))
    what_ = f'jpeg_duplicate_{name}'
  elif what == 5:
    new = _jpeg_new_segment(rng, segments)
    segments.insert(int(rng.integers(len(segments))), new)
    what_ = f'jpeg_insert_{new[0]:02X}'
  elif what == 6:  # A segment's length field wrong.
    out = bytearray(_jpeg_join(segments, rest))
    at = 2 + sum(4 + len(s[1]) for s in segments[:i]) + 2
    out[at:at + 2] = struct.pack('>H', int(rng.integers(0, 0x10000)))
    b[:] = out
    return f'jpeg_{name}_length'
  else:  # Markers in the entropy-coded data.
    rest = bytearray(rest)
    at = int(rng.integers(len(rest) + 1))
    marker = (0xD0 + int(rng.integers(8)), 0xD9, 0xDA, 0xC4, 0xDC, 0x00, 0xFF)
    rest[at:at] = bytes((0xFF, _pick(rng, marker)))
    what_ = 'jpeg_scan_marker'
  b[:] = _jpeg_join(segments, bytes(rest))
  return what_


# TIFF: the first directory, rebuilt at the end of the file.

_TIFF_TAGS = {
    256: (0, 1, 2, 65535, 1 << 16), 257: (0, 1, 2, 65535, 1 << 16),
    258: (0, 1, 2, 4, 8, 12, 16, 24, 32, 64), 259: (1, 2, 3, 4, 5, 6, 7, 8, 32773,
                                                    32946, 34712, 50000),
    262: (0, 1, 2, 3, 4, 5, 6, 8, 9, 10, 32844, 32845), 273: (0, 8, 0xffffffff),
    274: (0, 1, 5, 6, 8, 9, 0xffff), 277: (0, 1, 2, 3, 4, 5, 255),
    278: (0, 1, 2, 0xffffffff), 279: (0, 1, 0xffffffff), 284: (0, 1, 2, 3),
    317: (1, 2, 3, 4), 322: (0, 1, 16, 1 << 20), 323: (0, 1, 16, 1 << 20),
    324: (0, 8), 325: (0, 100), 338: (0, 1, 2, 3), 339: (1, 2, 3, 4, 5),
    320: (0, 8), 266: (0, 1, 2), 530: (0, 1, 2, 4), 34665: (0, 8, 0xffffffff),
    34853: (0, 8), 330: (8, 0),
}


def _tiff_directory(data: bytes) -> Optional[tuple]:
  """Byte order, [tag, type, count, value field] entries, next offset."""
  if len(data) < 8 or data[:4] not in (b'II*\0', b'MM\0*'):
    return None
  order = '<' if data[0] == ord('I') else '>'
  at = struct.unpack(order + 'I', data[4:8])[0]
  if at + 2 > len(data):
    return None
  n = struct.unpack(order + 'H', data[at:at + 2])[0]
  if at + 2 + 12 * n + 4 > len(data):
    return None
  entries = [list(struct.unpack(order + 'HHI4s', data[at + 2 + 12 * k:at + 14 + 12 * k]))
             for k in range(n)]
  next_ifd = struct.unpack(order + 'I', data[at + 2 + 12 * n:at + 6 + 12 * n])[0]
  return order, entries, next_ifd


def _tiff_join(b: bytearray, order: str, entries: list, next_ifd: int) -> None:
  """The directory appended to b, the header pointed at it."""
  if len(b) % 2:
    b.append(0)
  at = len(b)
  b += struct.pack(order + 'H', len(entries))
  for tag, kind, count, value in entries:
    b += struct.pack(order + 'HHI4s', tag, kind, count, value)
  b += struct.pack(order + 'I', next_ifd)
  b[4:8] = struct.pack(order + 'I', at)


def _tiff_value(order: str, kind: int, value: int) -> bytes:
  return struct.pack(order + ('H' if kind == 3 else 'I'), value).ljust(4, b'\0')


def _tiff_structure(rng, b: bytearray) -> str:
  parsed = _tiff_directory(bytes(b))
  if not parsed:
    return _bit_flip(rng, b)
  order, entries, next_ifd = parsed
  what = int(rng.integers(7))
  i = int(rng.integers(len(entries))) if entries else 0
  if what == 0 and entries:  # A known tag set to a telling value.
    tags = [k for k, e in enumerate(entries) if e[0] in _TIFF_TAGS]
    k = _pick(rng, tags) if tags else i
    values = _TIFF_TAGS.get(entries[k][0], (0, 1))
    value = _pick(rng, values)
    kind = 3 if value <= 0xffff and rng.random() < 0.5 else 4
    entries[k][1:] = [kind, 1, _tiff_value(order, kind, value)]
    what_ = f'tiff_tag{entries[k][0]}={value}'
  elif what == 1 and entries:  # An entry's type, count or value field.
    field = int(rng.integers(1, 4))
    if field == 1:
      entries[i][1] = _pick(rng, (0, 1, 2, 3, 4, 5, 7, 9, 11, 12, 13, 16, 17, 255))
    elif field == 2:
      entries[i][2] = _pick(rng, (0, 1, 2, 3, 1 << 16, 1 << 30, 0xffffffff))
    else:
      entries[i][3] = struct.pack(
          order + 'I', _pick(rng, (0, 1, 8, len(b), len(b) + 1, 0xffffffff)))
    what_ = f'tiff_entry{entries[i][0]}_field{field}'
  elif what == 2:  # A tag added.
    tag = _pick(rng, list(_TIFF_TAGS))
    values = _TIFF_TAGS[tag]
    value = _pick(rng, values)
    kind = 3 if value <= 0xffff and rng.random() < 0.5 else 4
    entries.append([tag, kind, 1, _tiff_value(order, kind, value)])
    entries.sort(key=lambda e: e[0])
    what_ = f'tiff_add{tag}={value}'
  elif what == 3 and entries:
    del entries[i]
    what_ = 'tiff_drop'
  elif what == 4 and entries:
    entries.insert(i, list(entries[i]))
    what_ = 'tiff_duplicate'
  elif what == 5:  # Directories that loop.
    next_ifd = _pick(rng, (8, len(b), 0xffffffff))
    if rng.random() < 0.5:
      entries.append([34665, 4, 1, _tiff_value(order, 4, len(b) + len(b) % 2)])
    what_ = 'tiff_loop'
  else:  # The entry count wrong, in place.
    at = struct.unpack(order + 'I', bytes(b[4:8]))[0]
    b[at:at + 2] = struct.pack(order + 'H', int(rng.integers(0, 0x10000)))
    return 'tiff_count'
  _tiff_join(b, order, entries, next_ifd)
  return what_


# WebP: RIFF chunks, rebuilt with their sizes.


def _webp_chunks(data: bytes) -> Optional[list]:
  if data[:4] != b'RIFF' or data[8:12] != b'WEBP':
    return None
  chunks, at = [], 12
  while at + 8 <= len(data):
    kind, size = data[at:at + 4], struct.unpack('<I', data[at + 4:at + 8])[0]
    if at + 8 + size > len(data):
      return None
    chunks.append([kind, data[at + 8:at + 8 + size]])
    at += 8 + size + size % 2
  return chunks


def _webp_join(chunks: list) -> bytes:
  body = b''.join(kind + struct.pack('<I', len(data)) + data + b'\0' * (len(data) % 2)
                  for kind, data in chunks)
  return b'RIFF' + struct.pack('<I', len(body) + 4) + b'WEBP' + body


def _vp8x(flags: int, width: int, height: int) -> list:
  return [b'VP8X', bytes((flags, 0, 0, 0)) + (width - 1).to_bytes(3, 'little') +
          (height - 1).to_bytes(3, 'little')]


def _webp_structure(rng, b: bytearray) -> str:
  chunks = _webp_chunks(bytes(b))
  if not chunks:
    return _bit_flip(rng, b)
  what = int(rng.integers(7))
  i = int(rng.integers(len(chunks)))
  kind = chunks[i][0].decode('latin-1').strip()
  if what in (0, 1):  # Bytes of a chunk, mostly its header.
    body = bytearray(chunks[i][1])
    if body:
      (_bit_flip if what == 0 else _byte_set)(rng, body)
    chunks[i][1] = bytes(body)
    what_ = f'webp_{kind}_bytes'
  elif what == 2:  # An extended header, with any flags and a canvas near the
    # image's size (the bombs state huge ones).
    flags = int(rng.integers(256))
    width, height = (int(v) for v in rng.integers(1, 100, 2))
    chunks = [c for c in chunks if c[0] != b'VP8X']
    chunks.insert(0, _vp8x(flags, width, height))
    what_ = f'webp_vp8x_{flags:02x}'
  elif what == 3:
    kinds = (b'ANIM', b'ANMF', b'ALPH', b'EXIF', b'ICCP', b'XMP ', b'VP8 ', b'VP8L')
    new = _pick(rng, kinds)
    if new == b'EXIF':
      body = _exif(rng)
    elif new == b'ANMF':  # A frame holding a copy of the image chunk.
      image = chunks[-1]
      w, h = (int(v) for v in rng.integers(1, 100, 2))
      body = (bytes(6) + (w - 1).to_bytes(3, 'little') + (h - 1).to_bytes(3, 'little') +
              bytes((0, 0, 0, int(rng.integers(4)))) + image[0] +
              struct.pack('<I', len(image[1])) + image[1])
    else:
      body = _random_bytes(rng, int(rng.integers(0, 40)))
    chunks.insert(int(rng.integers(len(chunks) + 1)), [new, body])
    what_ = f'webp_insert_{new.decode().strip()}'
  elif what == 4:
    del chunks[i]
    what_ = f'webp_drop_{kind}'
  elif what == 5:
    chunks.insert(i, list(chunks[i]))
    what_ = f'webp_duplicate_{kind}'
  else:  # The RIFF size, or a chunk's, wrong.
    out = bytearray(_webp_join(chunks))
    at = 4 if rng.random() < 0.3 else 12 + sum(8 + len(c[1]) + len(c[1]) % 2
                                               for c in chunks[:i]) + 4
    out[at:at + 4] = struct.pack('<I', _pick(rng, _INTERESTING))
    b[:] = out
    return 'webp_size'
  b[:] = _webp_join(chunks)
  return what_


# BMP: header fields, palettes, RLE data.

_BMP_FIELDS = {  # Offset, size (bytes, signed), telling values.
    'file_size': (2, 4, (0, 1, 0xffffffff)),
    'offset': (10, 4, (0, 14, 54, 1 << 16, 0x7fffffff, 0xffffffff)),
    'header_size': (14, 4, (0, 12, 16, 40, 52, 56, 64, 108, 124, 255, 0xffffffff)),
    'width': (18, -4, (0, 1, -1, -40, 2, 100, 4095)),
    'height': (22, -4, (0, 1, -1, -40, -100, 2, 100, 4095)),
    'planes': (26, 2, (0, 1, 2, 0xffff)),
    'bits': (28, 2, (0, 1, 2, 4, 8, 15, 16, 24, 32, 48, 64, 0xffff)),
    'compression': (30, 4, (0, 1, 2, 3, 4, 5, 6, 11, 12, 13, 0xffffffff)),
    'image_size': (34, 4, (0, 1, 0xffffffff)),
    'colors': (46, 4, (0, 1, 2, 16, 256, 257, 1 << 16, 0x7fffffff, 0xffffffff)),
    'red_mask': (54, 4, (0, 0xff, 0xff0000, 0xffffffff, 0x80000001)),
    'alpha_mask': (66, 4, (0, 0xff000000, 0xffffffff)),
}


def _rle(rng, n: int) -> bytes:
  """BMP run-length data: runs, escapes (end of line, end, deltas, absolute
  runs), some of them running past the image."""
  out = bytearray()
  while len(out) < n:
    if rng.random() < 0.3:
      escape = int(rng.integers(0, 6))
      out += bytes((0, escape))
      if escape == 2:
        out += _random_bytes(rng, 2)
      elif escape >= 3:
        out += _random_bytes(rng, escape + escape % 2)
    else:
      out += bytes((int(rng.integers(1, 256)), int(rng.integers(256))))
  return bytes(out)


def _bmp_structure(rng, b: bytearray) -> str:
  if len(b) < 54 or b[:2] != b'BM':
    return _bit_flip(rng, b)
  what = int(rng.integers(4))
  if what <= 1:
    name = _pick(rng, list(_BMP_FIELDS))
    at, size, values = _BMP_FIELDS[name]
    value = _pick(rng, values)
    fmt = '<' + {4: 'I', -4: 'i', 2: 'H'}[size]
    if at + abs(size) <= len(b):
      b[at:at + abs(size)] = struct.pack(fmt, value)
    return f'bmp_{name}={value}'
  offset = struct.unpack('<I', bytes(b[10:14]))[0]
  if what == 2:  # The palette (or masks) between the headers and the pixels.
    start = 14 + struct.unpack('<I', bytes(b[14:18]))[0]
    if start < min(offset, len(b)):
      for _ in range(int(rng.integers(1, 9))):
        b[int(rng.integers(start, min(offset, len(b))))] = int(rng.integers(256))
    return 'bmp_palette'
  # Run-length compressed pixels: RLE8 at 8 bits, RLE4 at 4.
  rle4 = rng.random() < 0.5
  b[28:30] = struct.pack('<H', 4 if rle4 else 8)
  b[30:34] = struct.pack('<I', 2 if rle4 else 1)
  offset = min(offset, len(b))
  b[offset:] = _rle(rng, int(rng.integers(1, 600)))
  return 'bmp_rle4' if rle4 else 'bmp_rle8'


_STRUCTURE = {'png': _png_structure, 'jpeg': _jpeg_structure, 'tiff': _tiff_structure,
              'webp': _webp_structure, 'bmp': _bmp_structure}


# Bombs: the header alone edited to state more than MAX_PIXELS pixels.

_MAX_SIDE = {'png': 0x7fffffff, 'jpeg': 0xffff, 'tiff': 0xffffffff, 'webp': 1 << 24,
             'bmp': 0x7fffffff}


def _bomb_size(rng, fmt: str, limit: int) -> Optional[tuple]:
  """A width and height of more than `limit` pixels that the format can state."""
  top = _MAX_SIDE[fmt]
  if top * top <= limit:
    return None
  fixed = [(60000, 60000), (65535, 65535), (16385, 16385), (20000, 20000),
           (top, 1), (1, top), (top, top)]
  fixed = [(w, h) for w, h in fixed if max(w, h) <= top and w * h > limit]
  if rng.random() < 0.5:
    return _pick(rng, fixed)
  width = int(rng.integers(limit // top + 1, top + 1))
  height = int(rng.integers(limit // width + 1, top + 1))
  return width, height


def _bomb(rng, fmt: str, b: bytearray, size: tuple) -> None:
  width, height = size
  if fmt == 'png':
    chunks = _png_chunks(bytes(b))
    chunks[0][1] = struct.pack('>II', width, height) + chunks[0][1][8:]
    b[:] = _png_join(chunks)
  elif fmt == 'jpeg':
    segments, rest = _jpeg_segments(bytes(b))
    sof = [s for s in segments if s[0] in _SOF][0]
    sof[1] = sof[1][:1] + struct.pack('>HH', height, width) + sof[1][5:]
    b[:] = _jpeg_join(segments, rest)
  elif fmt == 'tiff':
    order, entries, next_ifd = _tiff_directory(bytes(b))
    for entry in entries:
      if entry[0] in (256, 257):
        entry[1:] = [4, 1, _tiff_value(order, 4, width if entry[0] == 256 else height)]
    _tiff_join(b, order, entries, next_ifd)
  elif fmt == 'webp':
    chunks = [c for c in _webp_chunks(bytes(b)) if c[0] != b'VP8X']
    flags = 0x10 if any(c[0] == b'ALPH' for c in chunks) else 0
    flags |= 0x08 if any(c[0] == b'EXIF' for c in chunks) else 0
    b[:] = _webp_join([_vp8x(flags, width, height)] + chunks)
  else:  # Pillow takes a height as top-down (negative) when its top byte is 0xff.
    top_down = height < 1 << 24 and rng.random() < 0.5
    b[18:26] = struct.pack('<ii', width, -height if top_down else height)


def make_case(seeds: list, seed: int, index: int, bomb_every: int = 20,
              limit: Optional[int] = None) -> Case:
  """Input `index` of run `seed`: the same bytes whenever it is made."""
  rng = np.random.default_rng([seed, index])
  fmt = FORMATS[index % len(FORMATS)]
  mine = [s for s in seeds if s.fmt == fmt]
  source = _pick(rng, mine)
  b = bytearray(source.data)
  limit = image_io.MAX_PIXELS if limit is None else limit
  if bomb_every and (index // len(FORMATS)) % bomb_every == 0:
    size = _bomb_size(rng, fmt, limit)
    if size is not None:
      _bomb(rng, fmt, b, size)
      return Case(index, source, bytes(b), [f'bomb_{size[0]}x{size[1]}'], size)
  mutations = []
  for _ in range(int(rng.integers(1, 4))):
    if not b:
      break
    if rng.random() < 0.45:
      mutations.append(_STRUCTURE[fmt](rng, b))
    else:
      mutations.append(_pick(rng, _BLIND)(rng, b))
  return Case(index, source, bytes(b), mutations)


# Reading an input, as `apply` and `folder:` do.


def _memory_kb() -> tuple:
  """(resident, peak resident since the last reset) in kB."""
  with open('/proc/self/status') as f:
    fields = dict(line.split(':', 1) for line in f if ':' in line)
  return int(fields['VmRSS'].split()[0]), int(fields['VmHWM'].split()[0])


def _reset_peak() -> None:
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')


def _crash(where: str, error: BaseException) -> dict:
  frame = traceback.extract_tb(error.__traceback__)[-1]
  at = f'{os.path.basename(frame.filename)}:{frame.lineno}'
  return {'outcome': 'crash',
          'message': f'{where}: {type(error).__name__} at {at}: {str(error)[:300]}',
          'traceback': ''.join(traceback.format_exception(error))}


def _stated_shape(path: str) -> tuple:
  """(height, width) the header states, turned as EXIF orientation says."""
  with Image.open(path) as img:
    width, height = img.size
    orientation = img.getexif().get(_ORIENTATION, 1)
  return (width, height) if orientation in range(5, 9) else (height, width)


def _image_summary(image: image_io.Image) -> dict:
  """What is checked of image_io.read's result (the pixels are let go of
  before the next read, which may need the memory)."""
  bad = [name for name, x in (('pixels', image.pixels), ('alpha', image.alpha))
         if x is not None and (x.dtype != np.float32 or
                               not np.all((x >= 0) & (x <= 1)))]
  return {'shape': image.pixels.shape,
          'alpha': None if image.alpha is None else image.alpha.shape, 'bad': bad}


def _rgb_summary(rgb: np.ndarray) -> tuple:
  return rgb.shape, rgb.dtype


_LOAD_RGB = 'FolderSource[0] (folder.load_rgb)'


def _judge(case: Case, path: str, directory: str) -> dict:
  """How reading `path` went: decoded or refused as it should be, or not."""
  results = {}
  for where, fn in (
      ('image_io.read', lambda: _image_summary(image_io.read(path))),
      ('FolderSource.decoded_bytes',
       lambda: folder.FolderSource([directory]).decoded_bytes()),
      (_LOAD_RGB, lambda: _rgb_summary(folder.FolderSource([directory])[0]['image']))):
    try:
      results[where] = fn()
    except image_io.ImageError as e:
      results[where] = e
    except Exception as e:  # What the fuzzing looks for.
      return _crash(where, e)
  errors = {k: str(v) for k, v in results.items() if isinstance(v, image_io.ImageError)}
  for where, message in errors.items():  # The fallback's ImageError hides a crash.
    if image_io._UNEXPECTED in message:
      return {'outcome': 'crash', 'message': f'{where}: {message}'[:500]}
  image, nbytes, rgb = results.values()
  if case.bomb:
    stated = f'{case.bomb[0]}x{case.bomb[1]}'
    for where in results:
      message = errors.get(where, '')
      if 'more than the limit' not in message or stated not in message:
        return {'outcome': 'wrong', 'message': f'bomb stating {stated} not refused '
                f'by its header in {where}: {str(results[where])[:300]}'}
    return {'outcome': 'refused', 'message': errors['image_io.read']}
  memory = [m for m in errors.values() if 'not enough memory' in m]
  if memory:  # Under --memory_gb: one read may fit where the next does not.
    return {'outcome': 'refused', 'message': memory[0]}
  read_error = errors.get('image_io.read')
  if (read_error is None) != (_LOAD_RGB not in errors):
    return {'outcome': 'wrong', 'message': f'image_io.read gave {str(image)[:200]}, '
            f'folder.load_rgb {str(rgb)[:200]}'}
  if read_error is not None:
    if read_error != errors[_LOAD_RGB]:
      return {'outcome': 'wrong', 'message': f'two messages: {image} / {rgb}'}
    return {'outcome': 'refused', 'message': read_error}
  h, w = _stated_shape(path)
  problems = [f'{name} not float32 in [0, 1]' for name in image['bad']]
  if image['shape'][:2] != (h, w) or image['shape'][2:] not in ((1,), (3,)):
    problems.append(f'pixels {image["shape"]} for a {w}x{h} header')
  if image['alpha'] not in (None, (h, w, 1)):
    problems.append(f'alpha {image["alpha"]}')
  if rgb != ((h, w, 3), np.uint8):
    problems.append(f'folder.load_rgb {rgb}')
  if nbytes != 3 * w * h:
    problems.append(f'decoded_bytes {nbytes} for {w}x{h}')
  if problems:
    return {'outcome': 'wrong', 'message': '; '.join(problems)}
  return {'outcome': 'decoded', 'message': f'{w}x{h}x{image["shape"][-1]}'}


def check(case: Case, directory: str) -> dict:
  """Writes the input alone into `directory` and reads it; its outcome
  ('decoded', 'refused', 'wrong' or 'crash'), the time and memory taken."""
  for name in os.listdir(directory):
    os.remove(os.path.join(directory, name))
  path = os.path.join(directory, 'input' + EXTENSION[case.seed.fmt])
  with open(path, 'wb') as f:
    f.write(case.data)
  _reset_peak()
  before, _ = _memory_kb()
  start = time.perf_counter()
  result = _judge(case, path, directory)
  seconds = time.perf_counter() - start
  _, peak = _memory_kb()
  result.update(index=case.index, format=case.seed.fmt, seed_file=case.seed.name,
                mutations=case.mutations, bomb=case.bomb, seconds=seconds,
                peak_kb=peak, growth_kb=peak - before)
  if case.bomb and result['outcome'] == 'refused' and peak - before > _BOMB_GROWTH_KB:
    result.update(outcome='wrong', message=f'bomb refused only after the worker '
                  f'grew by {(peak - before) // 1024} MB: {result["message"]}')
  return result


# The workers, and the parent that times them.


def _worker(args) -> None:
  """Reads input indices from stdin, answers one JSON line each."""
  seeds = seed_files()
  if args.memory_gb:
    resource.setrlimit(resource.RLIMIT_AS,
                       (args.memory_gb << 30, resource.RLIM_INFINITY))
  directory = tempfile.mkdtemp(dir=args.tmp)
  print('ready', flush=True)
  for line in sys.stdin:
    if int(line) == args.stall:  # For testing the parent's time limit.
      time.sleep(3600)
    case = make_case(seeds, args.seed, int(line), args.bomb_every)
    result = check(case, directory)
    result.pop('traceback', None)
    print(json.dumps(result), flush=True)


class _Worker:
  """A worker subprocess, asked one input at a time, within a time limit."""

  def __init__(self, args, tmp: str):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [_ROOT] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    self.stderr = tempfile.NamedTemporaryFile(dir=tmp, suffix='.stderr', delete=False)
    self.proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), '--_worker', f'--seed={args.seed}',
         f'--bomb_every={args.bomb_every}', f'--memory_gb={args.memory_gb}',
         f'--_tmp={tmp}', f'--_stall={args.stall}'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
        cwd=_ROOT, env=env)
    self._buffer = b''
    if self._line(300) != b'ready':
      raise RuntimeError(f'a fuzzing worker did not start: {self.tail()}')

  def _line(self, timeout: float) -> Optional[bytes]:
    """The next line, None past the timeout, b'' if the worker died."""
    deadline = time.monotonic() + timeout
    fd = self.proc.stdout.fileno()
    while b'\n' not in self._buffer:
      left = deadline - time.monotonic()
      if left <= 0 or not select.select([fd], [], [], left)[0]:
        return None
      chunk = os.read(fd, 1 << 16)
      if not chunk:
        return b''
      self._buffer += chunk
    line, self._buffer = self._buffer.split(b'\n', 1)
    return line

  def ask(self, index: int, timeout: float) -> dict:
    try:
      self.proc.stdin.write(f'{index}\n'.encode())
      self.proc.stdin.flush()
    except BrokenPipeError:
      pass
    line = self._line(timeout)
    if line:
      return json.loads(line)
    if line is None:
      self.stop()
      return {'outcome': 'hang', 'message': f'no answer in {timeout:g} s'}
    self.proc.wait()
    return {'outcome': 'crash', 'message': f'the worker died (exit status '
            f'{self.proc.returncode}): {self.tail()}'}

  def tail(self) -> str:
    with open(self.stderr.name, 'rb') as f:
      return f.read()[-600:].decode(errors='replace')

  def stop(self) -> None:
    if self.proc.poll() is None:
      self.proc.kill()
    self.proc.wait()


@dataclasses.dataclass
class Tally:
  """What the inputs of one format came to."""
  inputs: int = 0
  decoded: int = 0
  refused: int = 0
  bombs: int = 0
  bombs_refused: int = 0
  crashes: int = 0
  hangs: int = 0
  wrong: int = 0
  seconds: float = 0.0
  peak_kb: int = 0
  bomb_growth_kb: int = 0
  bomb_pixels: list = dataclasses.field(default_factory=list)
  slowest: tuple = (0.0, -1)  # (seconds, input)
  hungriest: tuple = (0, -1)  # (kB the worker grew by, input)

  def add(self, r: dict) -> None:
    self.inputs += 1
    outcome = r['outcome']
    self.decoded += outcome == 'decoded'
    self.refused += outcome == 'refused'
    self.crashes += outcome == 'crash'
    self.hangs += outcome == 'hang'
    self.wrong += outcome == 'wrong'
    self.seconds += r.get('seconds', 0.0)
    self.peak_kb = max(self.peak_kb, r.get('peak_kb', 0))
    self.slowest = max(self.slowest, (r.get('seconds', 0.0), r['index']))
    self.hungriest = max(self.hungriest, (r.get('growth_kb', 0), r['index']))
    if r.get('bomb'):
      self.bombs += 1
      self.bombs_refused += outcome == 'refused'
      self.bomb_growth_kb = max(self.bomb_growth_kb, r.get('growth_kb', 0))
      self.bomb_pixels.append(r['bomb'][0] * r['bomb'][1])

  def merge(self, other: 'Tally') -> None:
    for field in dataclasses.fields(self):
      a, b = getattr(self, field.name), getattr(other, field.name)
      keep_max = field.name.endswith('_kb') or field.name in ('slowest', 'hungriest')
      setattr(self, field.name, max(a, b) if keep_max else a + b)

  @property
  def failures(self) -> int:
    return self.crashes + self.hangs + self.wrong


def run(inputs: int = 10000, seed: int = 0, workers: int = 1, timeout: float = 120.0,
        bomb_every: int = 20, memory_gb: int = 6, first: int = 0,
        progress: bool = False, stall: int = -1) -> tuple:
  """Inputs first .. first + inputs - 1 read by `workers` subprocesses;
  ({format: Tally}, failing results in index order, wall seconds). The
  workers sleep on input `stall` (to test the time limit)."""
  args = argparse.Namespace(seed=seed, bomb_every=bomb_every, memory_gb=memory_gb,
                            stall=stall)
  tallies = {fmt: Tally() for fmt in FORMATS}
  failures, broken, lock = [], [], threading.Lock()
  todo = collections.deque(range(first, first + inputs))
  start = time.monotonic()

  def serve(tmp: str) -> None:
    worker = None
    try:
      while True:
        with lock:
          if not todo:
            return
          index = todo.popleft()
        if worker is None:
          worker = _Worker(args, tmp)
        result = worker.ask(index, timeout)
        if result['outcome'] in ('hang', 'crash') and 'index' not in result:
          result.update(index=index, format=FORMATS[index % len(FORMATS)])
          worker = None  # Killed or dead: the next input starts another.
        with lock:
          tallies[result['format']].add(result)
          if result['outcome'] in ('crash', 'hang', 'wrong'):
            failures.append(result)
          done = sum(t.inputs for t in tallies.values())
          if progress and done % 1000 == 0:
            print(f'{done}/{inputs} inputs, {time.monotonic() - start:.0f} s',
                  file=sys.stderr, flush=True)
    except Exception as e:  # A worker that does not start: the run stops.
      with lock:
        broken.append(e)
        todo.clear()
    finally:
      if worker is not None:
        worker.stop()

  with tempfile.TemporaryDirectory(prefix='fuzz_images_') as tmp:
    threads = [threading.Thread(target=serve, args=(tmp,)) for _ in range(workers)]
    for t in threads:
      t.start()
    for t in threads:
      t.join()
  if broken:
    raise broken[0]
  failures.sort(key=lambda r: r['index'])
  return tallies, failures, time.monotonic() - start


def summary(tallies: dict, failures: list, wall: float, seed: int,
            shown: int = 5) -> str:
  """The table of outcomes per format, then the first failures."""
  total = Tally()
  for t in tallies.values():
    total.merge(t)
  header = ('format', 'inputs', 'decoded', 'refused', 'bombs', 'bombs refused',
            'crashes', 'hangs', 'wrong', 'inputs/s', 'peak MB')
  rows = []
  for name, t in list(tallies.items()) + [('all', total)]:
    rate = t.inputs / (wall if name == 'all' else max(t.seconds, 1e-9))
    rows.append((name, t.inputs, t.decoded, t.refused, t.bombs, t.bombs_refused,
                 t.crashes, t.hangs, t.wrong, f'{rate:.0f}', f'{t.peak_kb / 1024:.0f}'))
  widths = [max(len(str(r[k])) for r in rows + [header]) for k in range(len(header))]
  lines = ['  '.join(str(v).rjust(w) for v, w in zip(r, widths))
           for r in [header] + rows]
  lines.append(f'{total.inputs} inputs in {wall:.1f} s ({total.inputs / wall:.0f}/s); '
               'inputs/s per format: of one worker\'s time reading')
  lines.append(f'slowest input: {total.slowest[1]} ({total.slowest[0]:.2f} s); most '
               f'memory: input {total.hungriest[1]} (the worker grew by '
               f'{total.hungriest[0] / 1024:.0f} MB)')
  if total.bomb_pixels:
    least = min(total.bomb_pixels)
    lines.append(
        f'bombs: {total.bombs_refused} of {total.bombs} refused from the header, '
        f'stating {least:,} to {max(total.bomb_pixels):,} pixels (at least '
        f'{3 * least / 2**30:.2f} GiB as RGB uint8, {12 * least / 2**30:.1f} GiB as '
        f'float32), limit '
        f'{image_io.MAX_PIXELS:,}; resident memory grew by at most '
        f'{total.bomb_growth_kb / 1024:.1f} MB while refusing one')
  for r in failures[:shown]:
    lines.append(f'{r["outcome"].upper()} input {r["index"]} ({r["format"]}, '
                 f'{r.get("seed_file", "?")}, {r.get("mutations", "?")}): '
                 f'{r["message"]}')
    lines.append(f'  again: python benchmarks/fuzz_images.py --seed={seed} '
                 f'--only={r["index"]} --save=/tmp/fuzz_images')
  if len(failures) > shown:
    lines.append(f'... and {len(failures) - shown} more failures')
  return '\n'.join(lines)


def _only(args) -> int:
  """The inputs of --only, read in this process, their files kept."""
  seeds = seed_files()
  os.makedirs(args.save, exist_ok=True)
  failed = 0
  for index in (int(i) for i in args.only.split(',')):
    case = make_case(seeds, args.seed, index, args.bomb_every)
    with tempfile.TemporaryDirectory() as directory:
      result = check(case, directory)
      kept = os.path.join(args.save,
                          f'{index}_{case.seed.name}{EXTENSION[case.seed.fmt]}')
      with open(kept, 'wb') as f:
        f.write(case.data)
    print(f'input {index}: {case.seed.name}, {case.mutations} -> {kept}\n'
          f'  {result["outcome"]}: {result["message"]}')
    if 'traceback' in result:
      print(result['traceback'])
    failed += result['outcome'] not in ('decoded', 'refused')
  return 1 if failed else 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--inputs', type=int, default=10000)
  parser.add_argument('--first', type=int, default=0, help='the first input index')
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--workers', type=int, default=1,
                      help='worker processes (each reads one input at a time)')
  parser.add_argument('--timeout', type=float, default=120.0,
                      help='seconds an input may take before it counts as a hang '
                           '(a mutated header may state, under MAX_PIXELS, an image '
                           'of many megapixels that decodes, slowly, as zeros)')
  parser.add_argument('--bomb_every', type=int, default=20,
                      help='every N-th input of each format is a bomb (0: none)')
  parser.add_argument('--memory_gb', type=int, default=6,
                      help="a worker's address space limit (0: none)")
  parser.add_argument('--only', default='',
                      help='comma-separated input indices, read in this process')
  parser.add_argument('--save', default='/tmp/fuzz_images',
                      help='where --only keeps its input files')
  parser.add_argument('--_worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--_tmp', default='', help=argparse.SUPPRESS)
  parser.add_argument('--_stall', type=int, default=-1, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args._worker:
    args.tmp, args.stall = args._tmp, args._stall
    _worker(args)
    return 0
  if args.only:
    return _only(args)
  tallies, failures, wall = run(args.inputs, args.seed, args.workers, args.timeout,
                                args.bomb_every, args.memory_gb, args.first,
                                progress=True)
  print(summary(tallies, failures, wall, args.seed))
  return 1 if failures else 0


if __name__ == '__main__':
  sys.exit(main())
