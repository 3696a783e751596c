"""The .aec file format: an image to a compact file and back, with a trained
compression model (`ae_research.compression`).

  codec = aec.Codec(model, variables)        # any compression model
  codec = aec.Codec.from_config(config, params)   # or workdir.load_codec(workdir)
  data = codec.encode(image_HxWxC_uint8)     # bytes
  image = codec.decode(data)                 # uint8, the same shape

  data = aec.compress(model, variables, image)     # the same, in one call
  image = aec.decompress(model, variables, data)

The commands `python -m ae_research.codec compress|decompress` use it. The
file (format version 5; versions 1 to 4 still decode):

  b'AEC' | version (1 byte) | model id (8 bytes)
  | height, width (varints)
  | channels (1 byte: 1 gray, 2 gray + alpha, 3 RGB, 4 RGB + alpha)
  | number of coded latents (1 byte; version 3): 1, y; or 2, z then y
  | the rate setting (varint; version 4): a variable-rate model's quality in
    tenths (0 to 1000; `compression.RateGains`), 0 for a model of one rate
  | per latent: number of escaped values (varint), payload length in 32-bit
    words (varint), the payload (constriction: ANS from version 5, a range
    coder before), the escaped values (zigzag varints); for y of a
    hyperprior (version 5) then the listed values: how many (varint), and
    per nonzero value of the narrowest table its position among that
    table's values after the previous one's and the value (varints)
  | with alpha: its length (varint) and the alpha plane, zlib-compressed
    (lossless)
  | CRC-32 of everything before (4 bytes)

A latent coded with an entropy bottleneck (y of the factorized prior, z of
the hyperpriors) is coded channel by channel; y of a hyperprior model
element by element with the Gaussian table its scale selects, grouped by
table. Versions 1 and 2 had one latent and no count byte (version 1 no
alpha), and their tables were computed with numpy's own exp and tanh;
version 3 had no rate setting. Version 5 codes with ANS (a stack: the
last table's values are pushed first) and lists the narrowest table's
nonzero values instead of coding that table (scale 0.11: zero with
probability 1 - 6e-6, yet 40 to 55% of y), and a hyperprior model's
decoder derives y's tables and means from z in 8-bit integers through XLA
(`compression.Int8HyperSynthesis`) where versions 3 and 4 use float64 on
the host (`compression.IntegerHyperSynthesis`), which still decodes their
files. Together: everything but the networks 5 to 7 times faster.

The rate setting is an integer, and nothing the range decoder depends on is
derived from it: a variable-rate model's hyper synthesis predicts the
entropy parameters of the gained latent itself, so the quality only selects
the inverse gain the decoded latent is multiplied by before the synthesis.

What is guaranteed: a file of version 3 or later decodes to the same integer latents
on every machine with IEEE 754 float64 (any CPU, any accelerator, any
thread count or XLA flags, whole images or tiles, one image or several),
because everything the entropy decoder depends on is computed in exact
or fully specified arithmetic: the tables (`entropy_models`,
`Exact`), and for the hyperpriors the scales and means of y (integer
arithmetic, `compression.Int8HyperSynthesis`, or for versions 3 and 4
`IntegerHyperSynthesis`); y's values are then q + mean, exact,
rounded once to float32. What is not: the decoded
pixels come from the synthesis network in floating point on whatever
device runs it, so two machines can differ by floating-point rounding
(in the tests, at most 1 in 8 bits at the rare pixel). Versions 1 and 2 are
decoded with their own (numpy) tables, which is exact on the machine kind
that wrote them.

The model id is a hash of the model's description and parameters, so a file
is only decoded by the model that wrote it. Every malformed, truncated or
foreign file raises `CodecError` with what is wrong, before the model runs.
Images too large for memory run through the networks in tiles
(`ae_research.tiling`), which give the whole image's latent and
reconstruction.

Decompression bombs: a file of a few dozen bytes can state an image of up
to MAX_SIDE x MAX_SIDE pixels behind a valid checksum, and decoding it would
allocate gigabytes and run for minutes. The decoder refuses, with a
CodecError that names the stated size and the limit, any file that states
more than `max_pixels` pixels (height x width), before it allocates or
entropy-decodes anything: `MAX_PIXELS` (2**28, 16384 x 16384) unless
`Codec.decode(data, max_pixels=...)` (or `decode_latent`, `parse`, or
`python -m ae_research.codec decompress --max_pixels=N`) says otherwise.
The alpha plane is inflated no further than the stated size. What a file
under the limit costs to decode is bounded by its stated size.
"""

import functools
import hashlib
import json
import struct
import zlib
from typing import Any, Optional

import constriction
import jax
import jax.numpy as jnp
import numpy as np

from ae_research import color, compression, entropy_models, errors, tiling

MAGIC = b'AEC'
VERSION = 5
READS = (1, 2, 3, 4, 5)  # Versions this decoder reads.
# The first version whose hyperprior tables come from Int8HyperSynthesis.
INT8_VERSION = 5
# The first version coded with asymmetric numeral systems (a range coder
# before).
ANS_VERSION = 5
# The first version in which a hyperprior's y lists the nonzero values of
# the narrowest table (scale 0.11: zero with probability 1 - 6e-6) instead
# of coding them all.
LISTED_VERSION = 5
# The rate setting: a quality in these units (tenths).
QUALITY_STEPS = 10
MAX_SETTING = int(compression.MAX_QUALITY * QUALITY_STEPS)
# Encodes the search for a target rate may spend (`Codec.encode_to_bpp`).
MAX_SEARCH_ENCODES = 8
MAX_SIDE = 1 << 15
# The largest image (height x width) the decoder accepts unless told more.
MAX_PIXELS = 1 << 28
MAX_ESCAPE = 1 << 20
# config.compress fields that enter the model id only for the models that
# use them (ids of the models from before them stay what they were).
_HYPER_FIELDS = ('hyper_features',)
# ... and those of the variable-rate models (the fixed-rate ids stay).
_RATE_FIELDS = ('rate_levels', 'lmbda_range')
# Fields that choose how a model is used, not which model it is.
_USE_FIELDS = ('quality', 'eval_qualities')
_NEW_MODULE_FIELDS = ('rate_levels', 'lmbda_range', 'default_quality')


class CodecError(errors.UserError, ValueError):
  """A file this codec cannot decode, or an image it cannot encode."""


def varint(n: int) -> bytes:
  """A whole number >= 0 as the file writes it: 7 bits a byte, low first."""
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _zigzag(v: int) -> int:
  return 2 * v if v >= 0 else -2 * v - 1


def seal(body: bytes) -> bytes:
  """A file's body with its CRC-32 after it."""
  return bytes(body) + struct.pack('<I', zlib.crc32(body))


class _Reader:
  """Reads the fields of a file; running past its end is a CodecError.
  `fields` lists those read: (name, start, stop, 'bytes' or 'varint')."""

  def __init__(self, data: bytes):
    self.data, self.pos = data, 0
    self.fields: list[tuple[str, int, int, str]] = []

  def _next(self, n: int, what: str) -> bytes:
    if self.pos + n > len(self.data):
      raise CodecError(f'file truncated: it ends inside the {what}')
    out = self.data[self.pos:self.pos + n]
    self.pos += n
    return out

  def take(self, n: int, what: str) -> bytes:
    self.fields.append((what, self.pos, self.pos + n, 'bytes'))
    return self._next(n, what)

  def varint(self, what: str) -> int:
    start, n, shift = self.pos, 0, 0
    while True:
      byte = self._next(1, what)[0]
      n |= (byte & 0x7F) << shift
      if not byte & 0x80:
        self.fields.append((what, start, self.pos, 'varint'))
        return n
      shift += 7
      if shift > 63:
        raise CodecError(f'malformed file: the {what} is not a valid number')


def _description(model: Any) -> str:
  """The model's repr, without the variable-rate fields of a model of one
  rate (its id is what it was before they existed)."""
  text = repr(model)
  if getattr(model, 'rate_levels', 0):
    return text
  return '\n'.join(line for line in text.split('\n') if line.strip().split(
      ' = ')[0] not in _NEW_MODULE_FIELDS)


def _hash(description: str, params: Any) -> bytes:
  h = hashlib.sha256()
  h.update(description.encode())
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    h.update(jax.tree_util.keystr(path).encode())
    h.update(np.ascontiguousarray(np.asarray(leaf, np.float32)).tobytes())
  return h.digest()[:8]


def model_id(config: Any, params: Any) -> bytes:
  """8 bytes identifying a configured model: its config and parameters."""
  compress = config.compress.to_dict()
  if compress.get('model') not in ('hyperprior', 'mean_scale'):
    for k in _HYPER_FIELDS:
      compress.pop(k, None)
  if not compress.get('rate_levels'):
    for k in _RATE_FIELDS:
      compress.pop(k, None)
  else:
    compress.pop('lmbda', None)  # Unused: lmbda_range.
  for k in _USE_FIELDS:
    compress.pop(k, None)
  return _hash(json.dumps({'compress': compress, 'model': config.model.to_dict()},
                          sort_keys=True, default=list), params)


@functools.lru_cache(maxsize=8)
def _compiled(model):
  """Jitted latent, hyper latent, synthesis and rate of a model, shared by
  every Codec of it (a new checkpoint of the same model compiles nothing
  new)."""
  hyper = (jax.jit(lambda v, y: model.apply(v, y, method='hyper_latent'))
           if isinstance(model, compression.ScaleHyperprior) else None)

  @jax.jit
  def code(v, y_hxwxk, gain_k, arrays, index_lookup):
    """What a version 5 file codes, from y: (z, q, table, means)."""
    y = y_hxwxk[None] * gain_k.reshape(1, 1, 1, -1)
    z = jnp.round(model.apply(v, y, method='hyper_latent')).astype(jnp.int32)
    table, means = compression.int8_entropy_parameters(
        z, arrays, index_lookup, mean_scale=model.mean_scale)
    means = jnp.zeros_like(y) if means is None else means
    return z[0], jnp.round(y - means).astype(jnp.int32)[0], table[0], means[0]

  if getattr(model, 'rate_levels', 0):
    rate = lambda v, x, q: model.apply(v, x, quality=q)
  else:
    rate = lambda v, x, q: model.apply(v, x)
  return (jax.jit(lambda v, x: model.apply(v, x, method='latent')), hyper,
          jax.jit(lambda v, y: jnp.clip(model.apply(v, y, method='synthesis'), 0.0, 1.0)),
          jax.jit(lambda v, x, q: entropy_models.bits(rate(v, x, q)['likelihoods'])),
          code if hyper else None)


@functools.lru_cache(maxsize=1)
def _gaussian_tables():
  table = entropy_models.scale_table_fixed()
  halves, pmfs = entropy_models.gaussian_tables(table)
  return table, _Tables(-halves, [len(p) - 1 for p in pmfs], pmfs)


def _grouped(table: np.ndarray) -> tuple[np.ndarray, list[int], np.ndarray]:
  """(order, tables used in increasing order, how many of each): the
  positions of a flat table array grouped by table, raster order within;
  one stable sort of the indexes as 8 or 16-bit integers (numpy sorts those
  by radix, in linear time)."""
  top = table.max(initial=0)
  small = np.uint8 if top < 1 << 8 else np.uint16 if top < 1 << 16 else np.int64
  order = np.argsort(table.astype(small, copy=False), kind='stable')
  counts = np.bincount(table, minlength=1)
  used = np.flatnonzero(counts)
  return order, used.tolist(), counts[used]


class _Tables:
  """Coding tables: table t codes value v as index v - offsets[t] when that
  lies in [0, sizes[t]), else as the escape index sizes[t]."""

  def __init__(self, offsets, sizes, pmfs):
    self.offsets = np.asarray(offsets, np.int64)
    self.sizes = np.asarray(sizes, np.int64)
    self.models = [constriction.stream.model.Categorical(
        np.asarray(p, np.float64), perfect=False) for p in pmfs]

  def encode(self, values: np.ndarray, table: np.ndarray, ans: bool = True,
             listed: bool = False) -> tuple[bytes, list, Any]:
    """Values (int) each coded with its table's model, grouped by table in
    order, raster order within, by asymmetric numeral systems (`ans`,
    format version 5) or a range coder (versions 1 to 4); (payload,
    escaped values, listed). With `listed`, table 0's values are not
    coded: listed is (positions among them, values) of its nonzero ones."""
    order, used, counts = _grouped(table.ravel())
    values = values.ravel()[order].astype(np.int64)
    found = None
    if listed:
      n = int(counts[0]) if used and used[0] == 0 else 0
      nonzero = np.flatnonzero(values[:n])
      found = (nonzero, values[nonzero])
      values, used, counts = values[n:], used[1 if n else 0:], counts[1 if n else 0:]
    index = values - np.repeat(self.offsets[used], counts)
    size = np.repeat(self.sizes[used], counts)
    escaped = (index < 0) | (index >= size)
    index = np.where(escaped, size, index).astype(np.int32)
    parts = list(zip(used, np.split(index, np.cumsum(counts)[:-1])))
    if ans:  # A stack: the last group pushed first, each in reverse.
      encoder = constriction.stream.stack.AnsCoder()
      for t, part in reversed(parts):
        encoder.encode_reverse(part, self.models[t])
    else:
      encoder = constriction.stream.queue.RangeEncoder()
      for t, part in parts:
        encoder.encode(part, self.models[t])
    return (encoder.get_compressed().astype('<u4').tobytes(), values[escaped].tolist(),
            found)

  def decode(self, payload: np.ndarray, escapes: list, table: np.ndarray,
             ans: bool = True, listed: Any = None) -> np.ndarray:
    """encode's inverse, given the same tables per value (and, where
    encode listed table 0's nonzero values, that list)."""
    order, used, counts = _grouped(table.ravel())
    first = None  # Table 0's values, when listed.
    if listed is not None:
      n = int(counts[0]) if used and used[0] == 0 else 0
      positions, values = listed
      if len(positions) and positions[-1] >= n:
        raise CodecError(f'malformed file: a listed value at position '
                         f'{positions[-1]} of {n}')
      first = np.zeros(n, np.int32)
      first[positions] = values
      used, counts = used[1 if n else 0:], counts[1 if n else 0:]
    try:
      decoder = (constriction.stream.stack.AnsCoder(payload) if ans else
                 constriction.stream.queue.RangeDecoder(payload))
      index = np.concatenate([decoder.decode(self.models[t], int(n))
                              for t, n in zip(used, counts)] or [np.zeros(0, np.int32)])
    except Exception as e:  # pylint: disable=broad-except
      raise CodecError(f'malformed payload: {e}') from e
    if ans and not decoder.is_empty():
      raise CodecError('malformed payload: data left after the last value')
    # int32 throughout (escaped values are under MAX_ESCAPE): half the
    # memory traffic of int64.
    index = index.astype(np.int32, copy=False)
    escaped = index == np.repeat(self.sizes[used].astype(np.int32), counts)
    n = int(np.count_nonzero(escaped))
    if n > len(escapes):
      raise CodecError('malformed file: more escaped values coded than stored')
    if n != len(escapes):
      raise CodecError('malformed file: escaped values left over')
    values = index + np.repeat(self.offsets[used].astype(np.int32), counts)
    values[escaped] = escapes
    out = np.empty(table.size, np.int32)
    out[order] = values if first is None else np.concatenate([first, values])
    return out.reshape(table.shape)


def _per_channel(shape) -> np.ndarray:
  return np.broadcast_to(np.arange(shape[-1]), shape)


def _flat_tables(model: Any, params: Any, exact: bool) -> _Tables:
  """The tables of a latent coded channel by channel."""
  if isinstance(model, compression.QuantizedAutoencoder):  # Uniform; nothing escapes.
    k = model.levels + 1
    pmf = np.concatenate([np.full(k, 1.0 / k), [0.0]])
    channels = model.latent_features
    return _Tables(np.zeros(channels), [k] * channels, [pmf] * channels)
  offsets, pmfs = entropy_models.bottleneck_tables(params['densities'], exact)
  return _Tables(offsets, [len(p) - 1 for p in pmfs], pmfs)


def _read_section(r: _Reader, name: str, listed: int = 0) -> tuple:
  """One coded latent's payload, escaped values and (`listed`: the number
  of the latent's values, which bounds the positions) listed values
  (positions, values)."""
  num_escapes = r.varint(f'number of escaped values of {name}')
  words = r.varint(f'payload length of {name}')
  payload = np.frombuffer(r.take(4 * words, f'payload of {name}'),
                          '<u4').astype(np.uint32)
  escapes = []
  for _ in range(num_escapes):
    z = r.varint(f'escaped values of {name}')
    v = (z >> 1) ^ -(z & 1)
    if abs(v) > MAX_ESCAPE:
      raise CodecError(f'malformed file: escaped latent value {v}')
    escapes.append(v)
  if not listed:
    return payload, escapes, None
  count = r.varint(f'number of listed values of {name}')
  positions, values, at = [], [], -1
  for _ in range(count):
    at += 1 + r.varint(f'listed positions of {name}')
    if at >= listed:
      raise CodecError(f'malformed file: a listed value at position {at} of '
                       f'{name}\'s {listed} values')
    z = r.varint(f'listed values of {name}')
    v = (z >> 1) ^ -(z & 1)
    if abs(v) > MAX_ESCAPE:
      raise CodecError(f'malformed file: listed latent value {v}')
    positions.append(at)
    values.append(v)
  return payload, escapes, (np.asarray(positions, np.int64), np.asarray(values, np.int32))


def _read_alpha(r: _Reader, h: int, w: int) -> np.ndarray:
  """The zlib-packed alpha plane, inflated to at most its stated size."""
  packed = r.take(r.varint('alpha length'), 'alpha plane')
  inflate = zlib.decompressobj()
  try:  # No further than one byte past the stated size: no zlib bomb.
    plane = inflate.decompress(packed, h * w + 1)
  except zlib.error as e:
    raise CodecError(f'malformed alpha plane: {e}') from None
  if len(plane) > h * w:
    raise CodecError(f'malformed alpha plane: more than {h * w} bytes for '
                     f'{h}x{w} pixels')
  if not inflate.eof:
    raise CodecError('malformed alpha plane: incomplete or truncated stream')
  if len(plane) != h * w:
    raise CodecError(f'malformed alpha plane: {len(plane)} bytes for '
                     f'{h}x{w} pixels')
  return np.frombuffer(plane, np.uint8).reshape(h, w, 1)


class Codec:
  """Encodes images to bytes and back with one trained compression model.

    codec = Codec(model, variables)          # any compression.MODELS model
    codec = Codec.from_config(config, params, model_state)
    data = codec.encode(image_HxWxC_uint8)   # bytes; C: 1 to 4 (alpha last)
    image = codec.decode(data)               # uint8, the same shape

  `plan` says when and how images are tiled; `on_tile(done, total)`, if
  set, reports the tiles of a large image.
  """

  def __init__(self, model: Any, variables: Any, model_id: Optional[bytes] = None,
               plan: tiling.Tiling = tiling.Tiling()):
    self.model = model
    self.variables = dict(variables)
    self.params = jax.device_get(self.variables['params'])
    self.id = model_id or _hash(_description(model), self.params)
    self.hyper = isinstance(model, compression.ScaleHyperprior)
    self.multiple = model.downsampling  # Images are padded to multiples.
    self.latent_multiple = (model.latent_downsampling if self.hyper
                            else model.downsampling)
    self.latent_features = model.latent_features
    # Variable rate: the gains of every quality, computed here on the host.
    self.variable_rate = bool(getattr(model, 'rate_levels', 0))
    if self.variable_rate:
      gains = self.params['gains']
      self._log_gain = np.asarray(gains['log_gain'], np.float64)
      self._log_inverse_gain = np.asarray(gains['log_inverse_gain'], np.float64)
    if self.hyper:
      self.hyper_synthesis = compression.Int8HyperSynthesis(model, self.params)
      self._float64_hyper_synthesis = None  # Versions 3 and 4, made when needed.
      self.scale_table, self.tables_y = _gaussian_tables()
      self._index_lookup = jnp.asarray(entropy_models.scale_index_lookup(self.scale_table))
      self.tables_z = _flat_tables(model, self.params, exact=True)
    else:
      self.tables_y = _flat_tables(model, self.params, exact=True)
    self._legacy = None
    (self._latent, self._hyper_latent, self._synthesis, self._bits,
     self._code) = _compiled(model)
    self.plan = plan
    self.on_tile = None
    self.last_decision: tiling.Decision | None = None  # Of the last network run.
    self.config = None  # The config, for a codec made by from_config.

  @classmethod
  def from_config(cls, config: Any, params: Any, model_state: Any = None,
                  plan: tiling.Tiling = tiling.Tiling()) -> 'Codec':
    """The codec of a configured model (config.compress, config.model)."""
    codec = cls(compression.from_config(config),
                {'params': params, **(model_state or {})},
                model_id=model_id(config, jax.device_get(params)), plan=plan)
    codec.config = config
    return codec

  def _run(self, fn, x, in_cell: int, out_cell: int) -> np.ndarray:
    out, self.last_decision = tiling.run(
        fn, self.variables, x, in_cell=in_cell, out_cell=out_cell,
        plan=self.plan, on_tile=self.on_tile)
    return out

  def continuous_latent(self, image: np.ndarray) -> np.ndarray:
    """The analysis transform's y of an image (padded): float32 hxwxk."""
    return self.analysis(self._padded(image[..., :3 if image.shape[-1] > 2 else 1]))

  def analysis(self, x_HxWx3: np.ndarray) -> np.ndarray:
    """The analysis network alone, on a float image in [0, 1] whose sides are
    multiples of `multiple`: y, float32 hxwxk."""
    return self._run(self._latent, x_HxWx3, self.latent_multiple, 1)

  def hyper_analysis(self, y_hxwxk: np.ndarray) -> np.ndarray:
    """A hyperprior's hyper analysis network alone: the continuous z of a
    (gained) latent, float32."""
    return np.asarray(self._hyper_latent(self.variables, jnp.asarray(y_hxwxk[None])))[0]

  def setting(self, quality: Optional[float]) -> int:
    """The rate setting a file stores for `quality` (0 to 100, rounded to
    tenths; None: the model's default); 0 for a model of one rate, which
    refuses a quality."""
    if not self.variable_rate:
      if quality is not None:
        raise CodecError('this model codes one rate; a quality is for a '
                         'variable-rate model (config.compress.rate_levels)')
      return 0
    if quality is None:
      quality = self.model.default_quality
    top = compression.MAX_QUALITY
    if isinstance(quality, bool) or not isinstance(quality, (int, float, np.number)) or not (
        0 <= quality <= top):
      raise CodecError(f'quality {quality!r}: use a number from 0 to {top:g}')
    return int(round(float(quality) * QUALITY_STEPS))

  def gains(self, setting: int) -> tuple[np.ndarray, np.ndarray]:
    """(gain, inverse gain) of a rate setting: float32 [latent_features]."""
    quality = np.array([setting / QUALITY_STEPS])
    return tuple(compression.interpolate_levels(g, quality, np)[0].astype(np.float32)
                 for g in (self._log_gain, self._log_inverse_gain))

  def latent(self, image: np.ndarray, setting: Optional[int] = None,
             version: int = VERSION) -> dict[str, np.ndarray]:
    """The integers an image is coded as: {'y'} (int64 hxwxk), and for the
    hyperpriors {'z'} and y's coding tables and means ({'table',
    'means'}, as format `version` derives them); a variable-rate model's
    at its rate `setting` (None: its default quality's)."""
    return self.latent_of(self.continuous_latent(image), setting, version)

  def latent_of(self, y: np.ndarray, setting: Optional[int] = None,
                version: int = VERSION) -> dict[str, np.ndarray]:
    """`latent` from the analysis transform's output (coding one image at
    several rates runs the analysis once)."""
    gain = (self.gains(self.setting(None) if setting is None else setting)[0]
            if self.variable_rate else np.ones(y.shape[-1], np.float32))
    if self.hyper and version >= INT8_VERSION:  # One XLA computation.
      z, q, table, means = (np.asarray(a) for a in self._code(
          self.variables, y, gain, self.hyper_synthesis.arrays, self._index_lookup))
      return {'z': z.astype(np.int64), 'y': q.astype(np.int64), 'table': table,
              'means': means}
    y = y * gain
    if not self.hyper:
      return {'y': np.round(y).astype(np.int64)}
    z = self.hyper_analysis(y)
    z = np.round(z).astype(np.int64)
    table, means = self.entropy_parameters(z, version)
    q = np.round(y - means).astype(np.int64)
    return {'z': z, 'y': q, 'table': table, 'means': means}

  def entropy_parameters(self, z: np.ndarray, version: int = VERSION
                         ) -> tuple[np.ndarray, np.ndarray]:
    """(table index, mean) of every element of y, from the integer z, as
    format `version` derives them: the same on every machine. The means
    are integers / 2**FRACTION_BITS (under 2**22 of them), exact in float32."""
    if version >= INT8_VERSION:
      table, means = self.hyper_synthesis.entropy_parameters(z, self._index_lookup)
      return table, np.zeros(table.shape, np.float32) if means is None else means
    if self._float64_hyper_synthesis is None:
      self._float64_hyper_synthesis = compression.IntegerHyperSynthesis(
          self.model, self.params)
    scales, means = self._float64_hyper_synthesis(z)
    table = entropy_models.scale_indexes(scales, self.scale_table)
    if means is None:
      return table, np.zeros(table.shape, np.float32)
    return table, np.ldexp(means.astype(np.float32),
                           -compression.IntegerHyperSynthesis.FRACTION_BITS)

  def reconstruct(self, y_hat_hxwxk: np.ndarray) -> np.ndarray:
    """The decoded image of a latent: float32 in [0, 1], padded size."""
    return self._run(self._synthesis, y_hat_hxwxk.astype(np.float32), 1,
                     self.latent_multiple)

  # -- encoding ------------------------------------------------------------

  def _padded(self, image: np.ndarray) -> np.ndarray:
    if image.shape[-1] == 1:
      image = np.repeat(image, 3, axis=-1)
    x = tiling.pad_to(image, self.multiple).astype(np.float32)
    return np.divide(x, 255.0, out=x)  # As image / 255.0, in place.

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

  def estimated_bits(self, image: np.ndarray, quality: Optional[float] = None) -> float:
    """The model's own estimate of the coded latents' size, in bits (a
    variable-rate model's at `quality`; None: its default)."""
    self._check_image(image)
    color = image[..., :3 if image.shape[-1] > 2 else 1]
    q = self.setting(quality) / QUALITY_STEPS
    return float(self._bits(self.variables, jnp.asarray(self._padded(color)[None]),
                            jnp.float32(q))[0])

  def _legacy_tables(self) -> _Tables:
    if self._legacy is None:
      self._legacy = _flat_tables(self.model, self.params, exact=False)
    return self._legacy

  def _versions(self) -> tuple[int, ...]:
    """The format versions this codec writes (older ones for tests and old
    decoders): a variable-rate model from version 4."""
    if self.variable_rate:
      return (4, VERSION)
    return (3, 4, VERSION) if self.hyper else (2, 3, 4, VERSION)

  def encode(self, image: np.ndarray, version: int = VERSION,
             quality: Optional[float] = None) -> bytes:
    """The file of an image; a variable-rate model's at `quality` (0 to
    100; None: its default). `version` 2 to 4 writes an older format, for
    tests and old decoders."""
    self._check_image(image)
    if version not in self._versions():
      raise CodecError(f'this codec writes format versions '
                       f'{", ".join(map(str, self._versions()))}; not {version}')
    setting = self.setting(quality)
    color = image[..., :3 if image.shape[-1] > 2 else 1]
    return self._file(image, self.latent(color, setting, version), setting, version)

  def encode_to_bpp(self, image: np.ndarray, bpp: float,
                    max_encodes: int = MAX_SEARCH_ENCODES) -> tuple[bytes, float]:
    """(file, quality) of a variable-rate model: the highest quality (in
    tenths) whose file is at most `bpp` bits per pixel, found in at most
    `max_encodes` encodes (the analysis runs once); the lowest quality if
    even that is over. Files grow by 32-bit words, so several qualities
    can code to the same size; the search may end on any of those. Rates rise with the quality; the search interpolates
    log(bpp) between the qualities that bracket the target."""
    self._check_image(image)
    if not self.variable_rate:
      raise CodecError('a target rate needs a variable-rate model '
                       '(config.compress.rate_levels); this one codes one rate')
    if not (isinstance(bpp, (int, float)) and bpp > 0):
      raise CodecError(f'target rate {bpp!r}: use a number of bits per pixel > 0')
    h, w = image.shape[:2]
    y = self.continuous_latent(image[..., :3 if image.shape[-1] > 2 else 1])
    tried: dict[int, tuple[float, bytes]] = {}

    def at(setting: int) -> float:
      data = self._file(image, self.latent_of(y, setting), setting, VERSION)
      tried[setting] = (8 * len(data) / (h * w), data)
      return tried[setting][0]

    # Rates rise about exponentially with the quality: until the target is
    # bracketed, step by that prior slope; then find where log(bpp) crosses
    # the target by the Illinois method (regula falsi that halves the weight
    # of an end kept twice, so both ends close in).
    slope = np.log(15.0) / MAX_SETTING
    guess = self.setting(None)
    weight = {}  # The residual log(rate / bpp) of each bracket end, as weighed.
    side = None  # Which end moved last.
    for _ in range(max_encodes):
      residual = np.log(at(guess) / bpp)
      under = [s for s in tried if tried[s][0] <= bpp]
      over = [s for s in tried if tried[s][0] > bpp]
      low, high = max(under, default=None), min(over, default=None)
      if low == MAX_SETTING or high == 0:
        break  # The target is beyond the model's range.
      moved = 'low' if residual <= 0 else 'high'
      weight[guess] = residual
      if low is None or high is None:
        known = low if low is not None else high
        if len(tried) >= 2:  # The slope of the last two tries, if it rises.
          a, b = list(tried)[-2:]
          secant = np.log(tried[b][0] / tried[a][0]) / (b - a)
          slope = secant if secant > 0 else slope
        # A third past the estimate, to bracket the target in one step.
        step = -1.3 * np.log(tried[known][0] / bpp) / slope
        guess = int(np.clip(round(known + step), 0, MAX_SETTING))
        if guess == known:
          guess += 1 if low is not None else -1
        side = moved
        continue
      if high - low <= 1:
        break  # Adjacent settings bracket it: the lower is the answer.
      kept = high if moved == 'low' else low
      if side == moved:
        weight[kept] = weight.get(kept, np.log(tried[kept][0] / bpp)) / 2
      side = moved
      f_low = weight.get(low, np.log(tried[low][0] / bpp))
      f_high = weight.get(high, np.log(tried[high][0] / bpp))
      t = -f_low / max(f_high - f_low, 1e-12)
      guess = int(np.clip(round(low + t * (high - low)), low + 1, high - 1))
    under = [s for s in tried if tried[s][0] <= bpp]
    best = max(under) if under else min(tried)
    return tried[best][1], best / QUALITY_STEPS

  def quality_of(self, data: bytes) -> Optional[float]:
    """The quality a file was coded at (None: a model of one rate)."""
    f = self.parse(data)
    return f['setting'] / QUALITY_STEPS if self.variable_rate else None

  def _file(self, image: np.ndarray, symbols: dict, setting: int,
            version: int) -> bytes:
    h, w, channels = image.shape
    ans = version >= ANS_VERSION
    if self.hyper:
      sections = [self.tables_z.encode(symbols['z'], _per_channel(symbols['z'].shape), ans),
                  self.tables_y.encode(symbols['y'], symbols['table'], ans,
                                       listed=version >= LISTED_VERSION)]
    else:
      tables = self.tables_y if version >= 3 else self._legacy_tables()
      sections = [tables.encode(symbols['y'], _per_channel(symbols['y'].shape), ans)]
    body = [MAGIC, bytes([version]), self.id, varint(h), varint(w), bytes([channels])]
    if version >= 3:
      body.append(bytes([len(sections)]))
    if version >= 4:
      body.append(varint(setting))
    for payload, escapes, listed in sections:
      body += [varint(len(escapes)), varint(len(payload) // 4), payload]
      body += [varint(_zigzag(v)) for v in escapes]
      if listed is not None:
        positions, values = listed
        gaps = np.diff(positions, prepend=-1) - 1
        body.append(varint(len(positions)))
        body += [varint(int(g)) + varint(_zigzag(int(v))) for g, v in zip(gaps, values)]
    body = b''.join(body)
    if channels in (2, 4):
      alpha = zlib.compress(np.ascontiguousarray(image[..., -1]).tobytes(), 9)
      body += varint(len(alpha)) + alpha
    return seal(body)

  # -- decoding ------------------------------------------------------------

  def parse(self, data: bytes, max_pixels: Optional[int] = None) -> dict[str, Any]:
    """Checks a file and reads its header; CodecError if anything is wrong,
    or if it states an image of more than `max_pixels` pixels (None:
    MAX_PIXELS)."""
    limit = MAX_PIXELS if max_pixels is None else max_pixels
    if not isinstance(data, (bytes, bytearray)):
      raise CodecError(f'expected the bytes of a file, got {type(data).__name__}')
    data = bytes(data)
    if len(data) < 4 or data[:3] != MAGIC:
      raise CodecError(f'not an ae_research compressed file: it starts with '
                       f'{data[:3]!r}, not {MAGIC!r}')
    version = data[3]
    if version not in READS:
      raise CodecError(f'file format version {version}; this decoder reads '
                       f'versions {", ".join(map(str, READS))}')
    if len(data) < 4 + 8 + 4:
      raise CodecError(f'file truncated: {len(data)} bytes is shorter than any '
                       'header')
    body, crc = data[:-4], struct.unpack('<I', data[-4:])[0]
    if zlib.crc32(body) != crc:
      raise CodecError('file corrupted or truncated: its checksum does not match')
    r = _Reader(body)
    r.take(3, 'magic')
    r.take(1, 'format version')
    file_id = r.take(8, 'model id')
    if file_id != self.id:
      raise CodecError(f'file made by model {file_id.hex()}; this model is '
                       f'{self.id.hex()}: decompress it with the workdir that '
                       'compressed it')
    h, w = r.varint('height'), r.varint('width')
    channels = r.take(1, 'channels')[0]
    allowed = (1, 2, 3, 4) if version >= 2 else (1, 3)
    if not (0 < h <= MAX_SIDE and 0 < w <= MAX_SIDE) or channels not in allowed:
      raise CodecError(f'malformed header: {h}x{w}x{channels} is not an image '
                       f'shape (sides 1 to {MAX_SIDE}, channels '
                       f'{", ".join(map(str, allowed))})')
    if h * w > limit:
      raise CodecError(
          f'image too large: the file states {h}x{w} = {h * w:,} pixels, over the '
          f'limit of {limit:,} pixels; if you trust the file, raise the limit '
          '(max_pixels= of Codec.decode, or --max_pixels of python -m '
          'ae_research.codec decompress)')
    expected = 2 if self.hyper else 1
    if version < 3 and self.hyper:
      raise CodecError(f'file format version {version} has no hyper latent; '
                       f'this model writes versions 3 to {VERSION}')
    count = r.take(1, 'number of latents')[0] if version >= 3 else 1
    if count != expected:
      raise CodecError(f'malformed header: {count} coded latents; this model '
                       f'codes {expected}')
    setting = r.varint('rate setting') if version >= 4 else 0
    if self.variable_rate and version < 4:
      raise CodecError(f'file format version {version} has no rate setting; '
                       f'this variable-rate model writes version {VERSION}')
    if setting > (MAX_SETTING if self.variable_rate else 0):
      raise CodecError(f'malformed header: rate setting {setting}; this model '
                       + (f'codes 0 to {MAX_SETTING}' if self.variable_rate
                          else 'codes one rate (0)'))
    lh, lw = self._latent_size(h, w)
    listed = (lh * lw * self.latent_features
              if self.hyper and version >= LISTED_VERSION else 0)
    sections = [_read_section(r, name, listed=listed if name == 'y' else 0)
                for name in (['z', 'y'] if self.hyper else ['y'])]
    alpha = _read_alpha(r, h, w) if channels in (2, 4) else None
    if r.pos != len(body):
      raise CodecError(f'malformed file: {len(body) - r.pos} bytes after the '
                       'last field')
    # Where each field lies, for tools that edit files (the fuzzer).
    fields = r.fields + [('checksum', len(body), len(data), 'bytes')]
    out = {'version': version, 'height': h, 'width': w, 'channels': channels,
           'setting': setting, 'alpha': alpha, 'sections': sections,
           'fields': fields}
    # The latent's escapes (kept under their former name).
    out['payload'], out['escapes'], _ = sections[-1]
    return out

  def _latent_size(self, h: int, w: int) -> tuple[int, int]:
    """y's height and width for an image of h x w (padded to `multiple`)."""
    cells = self.multiple // self.latent_multiple
    return -(-h // self.multiple) * cells, -(-w // self.multiple) * cells

  def decode_latent(self, data: bytes, max_pixels: Optional[int] = None
                    ) -> tuple[dict[str, Any], np.ndarray]:
    """(the parsed file, y_hat as float32 hxwxk): everything before the
    synthesis network, the part that is the same on every machine (a
    variable-rate model's gained latent, before its inverse gain). A file
    stating more than `max_pixels` pixels (None: MAX_PIXELS) is refused."""
    f = self.parse(data, max_pixels)
    ans = f['version'] >= ANS_VERSION
    lh, lw = self._latent_size(f['height'], f['width'])
    y_shape = (lh, lw, self.latent_features)
    if not self.hyper:
      tables = self.tables_y if f['version'] >= 3 else self._legacy_tables()
      q = tables.decode(*f['sections'][0][:2], _per_channel(y_shape), ans)
      return f, q.astype(np.float32)
    step = self.multiple // self.latent_multiple
    z_shape = (lh // step, lw // step, self.tables_z.sizes.shape[0])
    z = self.tables_z.decode(*f['sections'][0][:2], _per_channel(z_shape), ans)
    table, means = self.entropy_parameters(z, f['version'])
    q = self.tables_y.decode(*f['sections'][1][:2], table, ans, f['sections'][1][2])
    # One float32 rounding of the exact q + mean (both exact in float32):
    # what float64 and then float32 gave, bit for bit.
    return f, q.astype(np.float32) + means

  def decode(self, data: bytes, max_pixels: Optional[int] = None) -> np.ndarray:
    """The image of a file: uint8 HxWxC, the size and channels its header
    states. CodecError for a malformed file, or one stating more than
    `max_pixels` pixels (None: MAX_PIXELS), refused before anything is
    allocated."""
    f, y_hat = self.decode_latent(data, max_pixels)
    h, w = f['height'], f['width']
    if self.variable_rate:
      y_hat = y_hat * self.gains(f['setting'])[1]
    x = self.reconstruct(y_hat)[:h, :w]  # Clipped to [0, 1] already.
    image = np.round(x * 255.0).astype(np.uint8)
    if f['channels'] in (1, 2):
      image = np.round(color.luma(image.astype(np.float32))).astype(np.uint8)
    if f['alpha'] is not None:
      image = np.concatenate([image, f['alpha']], -1)
    return image


def compress(model: Any, variables: Any, image: np.ndarray) -> bytes:
  """An image (uint8 HxWxC) to the bytes of a .aec file, with any
  compression model and its variables."""
  return Codec(model, variables).encode(image)


def decompress(model: Any, variables: Any, data: bytes,
               max_pixels: Optional[int] = None) -> np.ndarray:
  """The image of a file `compress` wrote with the same model and variables
  (refused if it states more than `max_pixels` pixels; None: MAX_PIXELS)."""
  return Codec(model, variables).decode(data, max_pixels)
