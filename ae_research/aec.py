"""The .aec file format: an image to a compact file and back, with a trained
compression model (`ae_research.compression`).

  codec = aec.Codec(config, params)          # or workdir.load_codec(workdir)
  data = codec.encode(image_HxWxC_uint8)     # bytes
  image = codec.decode(data)                 # uint8, the same shape

The commands `python -m ae_research.codec compress|decompress` use it. The file (format version 2; version 1 files, which have no alpha, decode too):

  b'AEC' | version (1 byte) | model id (8 bytes)
  | height, width (varints)
  | channels (1 byte: 1 gray, 2 gray + alpha, 3 RGB, 4 RGB + alpha)
  | number of escaped values (varint) | payload length in 32-bit words (varint)
  | payload: the range-coded latent (constriction), channel by channel
  | escaped values (zigzag varints)
  | with alpha: its length (varint) and the alpha plane, zlib-compressed
    (lossless)
  | CRC-32 of everything before (4 bytes)

The model id is a hash of the model's description and parameters, so a file
is only decoded by the model that wrote it. Every malformed, truncated or
foreign file raises `CodecError` with what is wrong, before the model runs.
Decoding is deterministic: the coding tables are computed from the
parameters in float64 numpy on the host (`compression.coding_tables`).
Images too large for memory run through the networks in tiles
(`ae_research.tiling`), which give the whole image's latent and
reconstruction.
"""

import functools
import hashlib
import json
import struct
import zlib
from typing import Any

import constriction
import jax
import jax.numpy as jnp
import numpy as np

from ae_research import color, compression, errors, image_io, tiling

MAGIC = b'AEC'
VERSION = 2
READS = (1, 2)  # Versions this decoder reads.
MAX_SIDE = 1 << 15
MAX_ESCAPE = 1 << 20


class CodecError(errors.UserError, ValueError):
  """A file this codec cannot decode, or an image it cannot encode."""


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


class _Reader:
  """Reads the fields of a file; running past its end is a CodecError."""

  def __init__(self, data: bytes):
    self.data, self.pos = data, 0

  def take(self, n: int, what: str) -> bytes:
    if self.pos + n > len(self.data):
      raise CodecError(f'file truncated: it ends inside the {what}')
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def varint(self, what: str) -> int:
    n, shift = 0, 0
    while True:
      byte = self.take(1, what)[0]
      n |= (byte & 0x7F) << shift
      if not byte & 0x80:
        return n
      shift += 7
      if shift > 63:
        raise CodecError(f'malformed file: the {what} is not a valid number')


def model_id(config: Any, params: Any) -> bytes:
  """8 bytes identifying the model: its description and its parameters."""
  h = hashlib.sha256()
  h.update(json.dumps({'compress': config.compress.to_dict(),
                       'model': config.model.to_dict()},
                      sort_keys=True, default=list).encode())
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return h.digest()[:8]


@functools.lru_cache(maxsize=8)
def _compiled(model):
  """Jitted latent, synthesis and rate of a model, shared by every Codec of
  it (a new checkpoint of the same model compiles nothing new)."""
  return (jax.jit(lambda v, x: model.apply(v, x, method='latent')),
          jax.jit(lambda v, y: model.apply(v, y, method='synthesis')),
          jax.jit(lambda v, x: model.apply(v, x)['bits']))


class Codec:
  """Encodes images to bytes and back with one trained compression model.

    codec = Codec(config, params)            # or workdir.load_codec(workdir)
    data = codec.encode(image_HxWxC_uint8)   # bytes; C: 1 to 4 (alpha last)
    image = codec.decode(data)               # uint8, the same shape

  `plan` says when and how images are tiled; `on_tile(done, total)`, if
  set, reports the tiles of a large image.
  """

  def __init__(self, config: Any, params: Any, model_state: Any = None,
               plan: tiling.Tiling = tiling.Tiling()):
    self.config = config
    self.model = compression.from_config(config)
    self.params = jax.device_get(params)
    self.variables = {'params': params, **(model_state or {})}
    self.id = model_id(config, self.params)
    self.multiple = self.model.downsampling
    self.latent_features = config.model.latent_features
    offsets, pmfs = compression.coding_tables(self.model, self.params)
    self.offsets = offsets
    self.sizes = [len(p) - 1 for p in pmfs]  # The escape index, per channel.
    self.entropy_models = [
        constriction.stream.model.Categorical(p.astype(np.float64), perfect=False)
        for p in pmfs]
    self._latent, self._synthesis, self._bits = _compiled(self.model)
    self.plan = plan
    self.on_tile = None
    self.last_decision: tiling.Decision | None = None  # Of the last network run.

  def _run(self, fn, x, in_cell: int, out_cell: int) -> np.ndarray:
    out, self.last_decision = tiling.run(
        fn, self.variables, x, in_cell=in_cell, out_cell=out_cell,
        plan=self.plan, on_tile=self.on_tile)
    return out

  def latent(self, image: np.ndarray) -> np.ndarray:
    """The symbols an image is coded as: int32 hxwxk."""
    x = self._padded(image[..., :3 if image.shape[-1] > 2 else 1])
    return np.round(self._run(self._latent, x, self.multiple, 1)).astype(np.int32)

  def reconstruct(self, symbols_hxwxk: np.ndarray) -> np.ndarray:
    """The decoded image of the symbols: float32 in [0, 1], padded size."""
    x = self._run(self._synthesis, symbols_hxwxk.astype(np.float32), 1, self.multiple)
    return np.clip(x, 0.0, 1.0)

  # -- encoding ------------------------------------------------------------

  def _padded(self, image: np.ndarray) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    if x.shape[-1] == 1:
      x = np.repeat(x, 3, axis=-1)
    return tiling.pad_to(x, self.multiple)

  def _check_image(self, image: np.ndarray) -> None:
    if (not isinstance(image, np.ndarray) or image.dtype != np.uint8 or
        image.ndim != 3 or image.shape[-1] not in (1, 2, 3, 4)):
      what = (f'{image.dtype} array of shape {image.shape}'
              if isinstance(image, np.ndarray) else type(image).__name__)
      raise CodecError(f'the codec encodes uint8 images of shape HxWx1 (gray), '
                       f'HxWx3 (RGB), or either with alpha last (HxWx2, HxWx4); '
                       f'got a {what}')
    h, w = image.shape[:2]
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE):
      raise CodecError(f'image of {h}x{w} pixels: sides must be 1 to {MAX_SIDE}')

  def estimated_bits(self, image: np.ndarray) -> float:
    """The model's own estimate of the coded latent's size, in bits."""
    self._check_image(image)
    color = image[..., :3 if image.shape[-1] > 2 else 1]
    return float(self._bits(self.variables, jnp.asarray(self._padded(color)[None]))[0])

  def encode(self, image: np.ndarray) -> bytes:
    self._check_image(image)
    h, w, channels = image.shape
    q = self.latent(image)
    encoder = constriction.stream.queue.RangeEncoder()
    escapes = []
    for c in range(q.shape[-1]):
      values = q[..., c].ravel().astype(np.int64)
      index = values - self.offsets[c]
      escaped = (index < 0) | (index >= self.sizes[c])
      index[escaped] = self.sizes[c]
      escapes.extend(values[escaped].tolist())
      encoder.encode(index.astype(np.int32), self.entropy_models[c])
    payload = encoder.get_compressed().astype('<u4').tobytes()
    body = b''.join([
        MAGIC, bytes([VERSION]), self.id, _varint(h), _varint(w),
        bytes([channels]), _varint(len(escapes)), _varint(len(payload) // 4),
        payload] + [_varint(2 * v if v >= 0 else -2 * v - 1) for v in escapes])
    if channels in (2, 4):
      alpha = zlib.compress(np.ascontiguousarray(image[..., -1]).tobytes(), 9)
      body += _varint(len(alpha)) + alpha
    return body + struct.pack('<I', zlib.crc32(body))

  # -- decoding ------------------------------------------------------------

  def parse(self, data: bytes) -> dict[str, Any]:
    """Checks a file and reads its header; CodecError if anything is wrong."""
    if not isinstance(data, (bytes, bytearray)):
      raise CodecError(f'expected the bytes of a file, got {type(data).__name__}')
    data = bytes(data)
    if len(data) < 4 or data[:3] != MAGIC:
      raise CodecError(f'not an ae_research compressed file: it starts with '
                       f'{data[:3]!r}, not {MAGIC!r}')
    if data[3] not in READS:
      raise CodecError(f'file format version {data[3]}; this decoder reads '
                       f'versions {", ".join(map(str, READS))}')
    if len(data) < 4 + 8 + 4:
      raise CodecError(f'file truncated: {len(data)} bytes is shorter than any '
                       'header')
    body, crc = data[:-4], struct.unpack('<I', data[-4:])[0]
    if zlib.crc32(body) != crc:
      raise CodecError('file corrupted or truncated: its checksum does not match')
    r = _Reader(body)
    r.take(4, 'header')
    file_id = r.take(8, 'model id')
    if file_id != self.id:
      raise CodecError(f'file made by model {file_id.hex()}; this model is '
                       f'{self.id.hex()}: decompress it with the workdir that '
                       'compressed it')
    h, w = r.varint('height'), r.varint('width')
    channels = r.take(1, 'channels')[0]
    allowed = (1, 2, 3, 4) if data[3] >= 2 else (1, 3)
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE) or channels not in allowed:
      raise CodecError(f'malformed header: {h}x{w}x{channels} is not an image '
                       f'shape (sides 1 to {MAX_SIDE}, channels '
                       f'{", ".join(map(str, allowed))})')
    num_escapes = r.varint('number of escaped values')
    words = r.varint('payload length')
    payload = np.frombuffer(r.take(4 * words, 'payload'), '<u4').astype(np.uint32)
    escapes = []
    for _ in range(num_escapes):
      z = r.varint('escaped values')
      v = (z >> 1) ^ -(z & 1)
      if abs(v) > MAX_ESCAPE:
        raise CodecError(f'malformed file: escaped latent value {v}')
      escapes.append(v)
    alpha = None
    if channels in (2, 4):
      packed = r.take(r.varint('alpha length'), 'alpha plane')
      try:
        plane = zlib.decompress(packed)
      except zlib.error as e:
        raise CodecError(f'malformed alpha plane: {e}') from None
      if len(plane) != h * w:
        raise CodecError(f'malformed alpha plane: {len(plane)} bytes for '
                         f'{h}x{w} pixels')
      alpha = np.frombuffer(plane, np.uint8).reshape(h, w, 1)
    if r.pos != len(body):
      raise CodecError(f'malformed file: {len(body) - r.pos} bytes after the '
                       'last field')
    return {'height': h, 'width': w, 'channels': channels, 'payload': payload,
            'escapes': escapes, 'alpha': alpha}

  def decode(self, data: bytes) -> np.ndarray:
    f = self.parse(data)
    h, w = f['height'], f['width']
    lh, lw = -(-h // self.multiple), -(-w // self.multiple)
    count = lh * lw
    q = np.empty((lh, lw, self.latent_features), np.int32)
    escapes = iter(f['escapes'])
    used = 0
    try:
      decoder = constriction.stream.queue.RangeDecoder(f['payload'])
      for c in range(self.latent_features):
        index = np.asarray(decoder.decode(self.entropy_models[c], count), np.int64)
        escaped = index == self.sizes[c]
        n = int(escaped.sum())
        if used + n > len(f['escapes']):
          raise CodecError('malformed file: more escaped values coded than stored')
        values = index + self.offsets[c]
        values[escaped] = [next(escapes) for _ in range(n)]
        used += n
        q[..., c] = values.reshape(lh, lw)
    except CodecError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      raise CodecError(f'malformed payload: {e}') from e
    if used != len(f['escapes']):
      raise CodecError('malformed file: escaped values left over')
    x = self.reconstruct(q)
    image = image_io.to_uint8(x[:h, :w])
    if f['channels'] in (1, 2):
      image = np.round(color.luma(image.astype(np.float32))).astype(np.uint8)
    if f['alpha'] is not None:
      image = np.concatenate([image, f['alpha']], -1)
    return image
