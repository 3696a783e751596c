"""Fuzzes the .aec decoder at scale: mutated files must decode or be refused.

  python benchmarks/fuzz_aec.py                          # 1,000,000 inputs
  python benchmarks/fuzz_aec.py --inputs=20000 --seed=3
  python benchmarks/fuzz_aec.py --seed=0 --reproduce=123456   # one input, here

Builds real files of every container version (`ae_research.aec`): versions
1, 2 and 3 with a tiny factorized-prior model, version 3 with tiny
hyperprior and mean-scale models (configs/compress.py, shrunk and freshly
initialized with a fixed seed: decoding does not need a trained model),
gray, gray + alpha, RGB and RGBA (version 1: no alpha), each at a few small
sizes. Input i of --seed s is one of them mutated by a generator seeded with
(s, i), so any input can be made again: bit flips, byte sets, insertions,
deletions, truncations, appended bytes, deleted or repeated runs, splices
of two files, and edits of header fields (height, width, channels, number
of latents, counts of escaped values, payload and alpha lengths, escaped
values, version, model id) to small, near, bit-flipped, boundary and huge
values, minimal or overlong varints. Most mutations are sealed again with a
valid CRC-32, so they get past the checksum into the parser, the entropy
decoder and the synthesis network.

Each input must either decode to a uint8 image of exactly the height, width
and channels its header states, or raise `aec.CodecError`. Counted: decoded,
refused (by the first words of the message; those refused by the pixel
limit apart), crashes (any other exception: the first few are printed with
their traceback and the command that reproduces them), hangs (an input
still running after --time_limit seconds), wrong-size outputs. Inputs run
in --workers subprocesses that report each input; the parent kills a worker
that goes quiet for longer than --time_limit, records the hang and starts a
new worker from the next input. --max_pixels (default 64x the largest seed
image) is passed to the decoder, so a file whose header states a larger
image is refused before anything is allocated; the summary gives the
largest stated image that was decoded and the workers' peak memory, so one
can see memory is bounded by the stated size. The networks run whole
(tiling off: the images are small), compiled without XLA's backend
optimizations (FAST_COMPILE), each new size once for all the workers (a
compilation cache they share). Exit status 1 on any crash, hang or wrong
size. tests/test_fuzz_aec.py runs a few thousand inputs of it.
"""

import argparse
import collections
import dataclasses
import json
import os
import pickle
import random
import re
import resource
import selectors
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import zlib
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import aec, compression, tiling
from configs import compress as compress_config

MODELS = ('factorized', 'hyperprior', 'mean_scale')
# Seed image sizes (height, width); the last two pad to the same size, so
# making the seed files compiles one network size less.
SHAPES = ((16, 16), (45, 29), (48, 32))
CHANNEL_NAMES = {1: 'gray', 2: 'gray+alpha', 3: 'RGB', 4: 'RGBA'}
PARAMS_SEED = 0  # The models' initialization: fixed, whatever --seed.
# The latent's scale: spread over many symbols, with some values beyond the
# coding tables (escaped), as a trained model's are.
LATENT_SCALE = {'factorized': 300.0, 'hyperprior': 12.0, 'mean_scale': 12.0}
# XLA without its backend optimizations compiles each new image size in
# about half the time, and the tiny networks run as fast.
FAST_COMPILE = {'xla_backend_optimization_level': 0,
                'xla_llvm_disable_expensive_passes': True}
LIMIT_FACTOR = 64  # The default pixel limit: this times the largest seed.
TOO_LARGE = 'image too large'  # How the decoder's pixel-limit message starts.
INTERESTING = (0, 1, 2, 127, 128, 255, 256, 16383, 16384, aec.MAX_SIDE - 1,
               aec.MAX_SIDE, aec.MAX_SIDE + 1, 2**31 - 1, 2**31, 2**32,
               2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70)
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- the seed files ----------------------------------------------------------


def tiny_config(model: str) -> Any:
  """configs/compress.py's `model` (factorized, hyperprior, mean_scale),
  shrunk to two levels of 4 features and a latent of 4: fast to decode."""
  config = compress_config.get_config('' if model == 'factorized' else model)
  config.model.features = (4, 4)
  config.model.latent_features = 4
  config.compress.hyper_features = 4
  return config


def make_codecs() -> dict[str, aec.Codec]:
  """A codec per MODELS entry, freshly initialized with PARAMS_SEED, the
  latent scaled by LATENT_SCALE."""
  codecs = {}
  for model_name in MODELS:
    config = tiny_config(model_name)
    model = compression.from_config(config)
    # The rbg generator and FAST_COMPILE: seconds to compile, not tens.
    rngs = {'params': jax.random.key(PARAMS_SEED, impl='rbg'),
            'noise': jax.random.key(PARAMS_SEED + 1, impl='rbg')}
    x = jnp.zeros((1, 32, 32, 3))
    init = jax.jit(model.init).lower(rngs, x).compile(FAST_COMPILE)
    scale = LATENT_SCALE[model_name]
    params = jax.device_get(jax.tree_util.tree_map_with_path(
        lambda path, p, s=scale: p * s if 'to_latent' in jax.tree_util.keystr(path)
        else p, init(rngs, x)['params']))
    codecs[model_name] = codec_of(model_name, params)
  return codecs


def codec_of(model_name: str, params: Any) -> aec.Codec:
  """The codec of a tiny model with these parameters, networks run whole."""
  return aec.Codec.from_config(tiny_config(model_name), params,
                               plan=tiling.Tiling(mode='never'))


def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
  """(value, position after it); IndexError past the end."""
  n, shift = 0, 0
  while True:
    byte = data[pos]
    pos += 1
    n |= (byte & 0x7F) << shift
    if not byte & 0x80:
      return n, pos
    shift += 7


def seal(body: bytes) -> bytes:
  """The body with a valid CRC-32 after it."""
  return bytes(body) + struct.pack('<I', zlib.crc32(body))


def layout(data: bytes, latents: int) -> list[tuple[str, int, int, str]]:
  """The fields of a well-formed file, read apart from the decoder: (name,
  start, stop, kind), kind 'varint', 'byte' or 'bytes'."""
  fields = [('magic', 0, 3, 'bytes'), ('version', 3, 4, 'byte'), ('id', 4, 12, 'bytes')]
  pos = 12

  def varint(name):
    nonlocal pos
    value, end = _read_varint(data, pos)
    fields.append((name, pos, end, 'varint'))
    pos = end
    return value

  varint('height')
  varint('width')
  channels = data[pos]
  fields.append(('channels', pos, pos + 1, 'byte'))
  pos += 1
  if data[3] >= 3:
    fields.append(('latents', pos, pos + 1, 'byte'))
    pos += 1
  for name in ('z', 'y')[2 - latents:]:
    escapes = varint(f'escapes of {name}')
    words = varint(f'payload length of {name}')
    fields.append((f'payload of {name}', pos, pos + 4 * words, 'bytes'))
    pos += 4 * words
    for _ in range(escapes):
      varint(f'escaped value of {name}')
  if channels in (2, 4):
    length = varint('alpha length')
    fields.append(('alpha plane', pos, pos + length, 'bytes'))
    pos += length
  fields.append(('crc', pos, pos + 4, 'bytes'))
  if pos + 4 != len(data):
    raise ValueError(f'layout: {len(data) - pos - 4} bytes left over')
  return fields


def stated_shape(data: bytes) -> tuple[int, int, int]:
  """The height, width and channels a file's header states (read apart from
  the decoder)."""
  h, pos = _read_varint(data, 12)
  w, pos = _read_varint(data, pos)
  return h, w, data[pos]


@dataclasses.dataclass(frozen=True)
class Seed:
  """A valid file, and what it is."""
  name: str
  model: str
  version: int
  shape: tuple[int, int, int]
  data: bytes
  fields: tuple  # layout(data)


def _image(h: int, w: int, c: int, rng: np.random.Generator) -> np.ndarray:
  """A smooth random image with some noise, as photos are."""
  small = rng.random((h // 8 + 2, w // 8 + 2, c))
  smooth = np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w]
  noisy = smooth + 0.05 * rng.standard_normal((h, w, c))
  return np.clip(noisy * 255, 0, 255).astype(np.uint8)


def make_seeds(codecs: dict[str, aec.Codec]) -> list[Seed]:
  """Valid files of every container version: versions 3 and 2 (gray, RGB,
  either with alpha) and 1 (no alpha) of the factorized prior, version 3 of
  the hyperpriors, each at every SHAPES size."""
  rng = np.random.default_rng(0)
  seeds = []
  for model_name, codec in codecs.items():
    versions = (1, 2, 3) if not codec.hyper else (3,)
    for version in versions:
      for channels in ((1, 3) if version == 1 else (1, 2, 3, 4)):
        for h, w in SHAPES:
          image = _image(h, w, channels, rng)
          data = codec.encode(image, version=max(version, 2))
          if version == 1:  # A version 2 file without alpha, as version 1 was.
            data = seal(data[:3] + b'\x01' + data[4:-4])
          name = f'{model_name} v{version} {CHANNEL_NAMES[channels]} {h}x{w}'
          seeds.append(Seed(name, model_name, data[3], (h, w, channels), data,
                            tuple(layout(data, 2 if codec.hyper else 1))))
  return seeds


# -- the mutations ------------------------------------------------------------


@dataclasses.dataclass
class Mutation:
  """One fuzz input: the file, the model that decodes it, how it was made."""
  model: str
  data: bytes
  family: str
  what: str


def _byte_ops(rng: random.Random, buf: bytearray, lo: int, what: list) -> None:
  """1 to 4 byte edits at positions >= lo."""
  for _ in range(1 + min(3, int(rng.expovariate(1.0)))):
    if len(buf) <= lo:
      buf.append(rng.randrange(256))
      continue
    i = rng.randrange(lo, len(buf))
    op = rng.choice(('flip', 'flip', 'set', 'set', 'insert', 'delete'))
    if op == 'flip':
      bit = rng.randrange(8)
      buf[i] ^= 1 << bit
      what.append(f'flip bit {bit} of byte {i}')
    elif op == 'set':
      v = rng.choice((0, 0x7F, 0x80, 0xFF, rng.randrange(256), rng.randrange(256)))
      buf[i] = v
      what.append(f'set byte {i} to {v}')
    elif op == 'insert':
      v = rng.randrange(256)
      buf.insert(i, v)
      what.append(f'insert {v} at {i}')
    else:
      del buf[i]
      what.append(f'delete byte {i}')


def _new_value(rng: random.Random, old: int) -> int:
  k = rng.random()
  if k < 0.2:
    return rng.randrange(9)
  if k < 0.4:
    return max(0, old + rng.randint(-8, 8))
  if k < 0.55:
    return old ^ (1 << rng.randrange(24))
  if k < 0.62:
    return rng.choice((old * 2, old // 2, old * 16, old + 128))
  if k < 0.7:  # A large side: with the other, often a decompression bomb.
    return rng.randint(256, aec.MAX_SIDE)
  if k < 0.8:
    return rng.choice(INTERESTING)
  return rng.getrandbits(rng.choice((8, 16, 24, 32, 48, 63, 64, 71)))


def _edit_field(rng: random.Random, field: tuple, body: bytearray, what: list) -> None:
  """Rewrites one header field (name, start, stop, kind) of `body`."""
  name, start, stop, kind = field
  if kind == 'byte':
    old = body[start]
    new = rng.choice((0, 1, 2, 3, 4, 5, 255, rng.randrange(256),
                      old ^ (1 << rng.randrange(8))))
    body[start] = new
    what.append(f'{name} {old} -> {new}')
  elif kind == 'bytes':  # The model id.
    i = rng.randrange(start, stop)
    body[i] ^= 1 << rng.randrange(8)
    what.append(f'{name}: a bit of byte {i} flipped')
  else:
    old, _ = _read_varint(body, start)
    new = _new_value(rng, old)
    encoded = bytearray(_varint(new))
    if rng.random() < 0.1:  # Overlong: continuation bytes before a last 0.
      pad = rng.randint(1, 10)
      encoded[-1] |= 0x80
      encoded += b'\x80' * (pad - 1) + b'\x00'
      what.append(f'{name} {old} -> {new} (overlong, {len(encoded)} bytes)')
    else:
      what.append(f'{name} {old} -> {new}')
    body[start:stop] = encoded


def mutate(seeds: list[Seed], seed: int, index: int) -> Mutation:
  """Input `index` of fuzz seed `seed`: the same on every call."""
  rng = random.Random((seed << 40) ^ index)
  a = rng.choice(seeds)
  data, body = a.data, bytearray(a.data[:-4])
  what = [a.name]
  r = rng.random()
  if r < 0.12:
    family = 'bytes'  # Anywhere, checksum left as it was.
    out = bytearray(data)
    _byte_ops(rng, out, 0, what)
    return Mutation(a.model, bytes(out), family, '; '.join(what))
  if r < 0.42:
    family = 'bytes, resealed'
    _byte_ops(rng, body, 12 if rng.random() < 0.85 else 0, what)
  elif r < 0.74:
    family = 'header fields, resealed'
    editable = [f for f in a.fields if f[0] not in ('magic', 'crc')
                and not f[0].startswith(('payload of', 'alpha plane'))]
    chosen = rng.sample(editable, 1 if rng.random() < 0.75 else 2)
    # The later field first: the earlier one keeps its position.
    for field in sorted(chosen, key=lambda f: -f[1]):
      _edit_field(rng, field, body, what)
    if rng.random() < 0.2:
      _byte_ops(rng, body, 12, what)
    if rng.random() < 0.05:
      family = 'header fields'  # The checksum left as it was.
      return Mutation(a.model, bytes(body) + data[-4:], family, '; '.join(what))
  elif r < 0.82:
    family = 'truncations'
    if rng.random() < 0.5:
      n = rng.randrange(len(data))
      return Mutation(a.model, data[:n], family, f'{a.name}; first {n} bytes')
    n = rng.randrange(len(body))
    what.append(f'body cut to {n} bytes, resealed')
    body = body[:n]
  elif r < 0.85:
    family = 'appended bytes, resealed'
    extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    body += extra
    what.append(f'{len(extra)} bytes appended')
  elif r < 0.92:
    family = 'splices'
    same = [s for s in seeds if s.model == a.model]
    b = rng.choice(same if rng.random() < 0.7 else seeds)
    if rng.random() < 0.5:  # At field boundaries.
      i = rng.choice(a.fields)[1]
      at = {f[0]: f[1] for f in b.fields}
      j = at.get(rng.choice(a.fields)[0], rng.randrange(len(b.data)))
    else:
      i, j = rng.randrange(len(data)), rng.randrange(len(b.data))
    spliced = data[:i] + b.data[j:]
    what.append(f'first {i} bytes + {b.name} from byte {j}')
    if rng.random() < 0.25:
      return Mutation(a.model, spliced, family, '; '.join(what))
    family = 'splices, resealed'
    body = bytearray(spliced[:-4])
  else:
    family = 'runs deleted or repeated, resealed'
    i = rng.randrange(len(body))
    n = rng.randint(2, 64)
    if rng.random() < 0.5:
      del body[i:i + n]
      what.append(f'{n} bytes deleted at {i}')
    else:
      body[i:i] = body[i:i + n]
      what.append(f'{n} bytes at {i} repeated')
  return Mutation(a.model, seal(bytes(body)), family, '; '.join(what))


# -- one input -----------------------------------------------------------------


def reason(message: str) -> str:
  """The first words of a refusal, numbers and ids masked: its kind."""
  message = re.sub(r'\bmodel [0-9a-f]{16}\b', 'model ID', message)
  message = re.sub(r'-?\d[\d,]*', 'N', message)
  return ' '.join(message.split()[:7])


def check(codecs: dict[str, aec.Codec], mutation: Mutation, max_pixels: int,
          sabotage: str = '') -> tuple[str, Any]:
  """Decodes one input: ('ok', (stated height, width)), ('refused',
  message), ('crash', traceback) or ('wrong', what). `sabotage` ('crash', 'hang',
  'wrong', 'die') breaks this input on purpose, to test the harness."""
  codec = codecs[mutation.model]
  try:
    if sabotage == 'hang':
      time.sleep(10**6)
    if sabotage == 'die':
      os._exit(3)  # pylint: disable=protected-access
    if sabotage == 'crash':
      raise ZeroDivisionError('sabotaged')
    image = codec.decode(mutation.data, max_pixels=max_pixels)
  except aec.CodecError as e:
    return 'refused', str(e)
  except Exception:  # pylint: disable=broad-except
    return 'crash', traceback.format_exc()
  if sabotage == 'wrong':
    image = image[1:]
  h, w, c = stated_shape(mutation.data)
  if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
      or image.shape != (h, w, c)):
    got = (f'{image.dtype} {image.shape}' if isinstance(image, np.ndarray)
           else type(image).__name__)
    return 'wrong', f'header states {h}x{w}x{c}, decoded {got}'
  return 'ok', (h, w)


# -- the worker ------------------------------------------------------------------


def peak_memory_bytes(pid: str = 'self') -> int:
  """A process's peak resident memory: VmHWM, its own (ru_maxrss also
  counts the parent it was forked from, on Linux); 0 if unknown."""
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith('VmHWM:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 if pid == 'self' else 0


def _worker() -> None:
  """A worker: reads the path of the setup pickle, then 'START STOP' lines;
  writes a JSON line per input, and one at each chunk's end with its peak
  memory. (Started before the setup exists: it imports meanwhile.)"""
  with open(sys.stdin.readline().strip(), 'rb') as f:
    setup = pickle.load(f)
  codecs = {name: codec_of(name, params) for name, params in setup['params'].items()}
  for name, codec in codecs.items():
    if codec.id != setup['ids'][name]:
      raise RuntimeError(f'worker: the {name} model is not the parent\'s')
  seeds = [Seed(**s) for s in setup['seeds']]
  sabotage = setup['sabotage']
  out = sys.stdout

  def send(message):
    out.write(json.dumps(message) + '\n')
    out.flush()

  send({'ready': peak_memory_bytes()})
  for line in sys.stdin:
    start, stop = map(int, line.split())
    for i in range(start, stop):
      mutation = mutate(seeds, setup['seed'], i)
      outcome, detail = check(codecs, mutation, setup['max_pixels'],
                              sabotage.get(i, ''))
      message = {'i': i, 'o': outcome, 'f': mutation.family}
      if outcome == 'ok':
        message['px'] = detail
      elif outcome == 'refused':
        message['k'] = reason(detail)
      else:
        message.update(d=detail, w=mutation.what)
      send(message)
    send({'done': stop, 'rss': peak_memory_bytes()})


class _Worker:
  """A worker subprocess and the chunk of inputs it is on."""

  def __init__(self, log_path: str, cache_dir: str, number: int):
    # One thread each; FAST_COMPILE; compiled sizes shared through a cache.
    flags = ' '.join(f'--{k}={str(v).lower()}' for k, v in FAST_COMPILE.items())
    env = dict(os.environ, JAX_PLATFORMS='cpu', OMP_NUM_THREADS='1',
               OPENBLAS_NUM_THREADS='1', PYTHONUNBUFFERED='1',
               XLA_FLAGS='--xla_cpu_multi_thread_eigen=false '
                         f'intra_op_parallelism_threads=1 {flags}',
               JAX_COMPILATION_CACHE_DIR=cache_dir,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')
    self.log_path = log_path
    with open(log_path, 'ab') as log:
      self.proc = subprocess.Popen(
          [sys.executable, os.path.abspath(__file__), '--worker'],
          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=_ROOT,
          env=env)
    self.number = number
    self.buffer = b''
    self.ready = False
    self.started = self.last = time.monotonic()
    self.chunk: Optional[tuple[int, int]] = None
    self.next = 0  # The input in flight.

  def send(self, line: str) -> None:
    self.proc.stdin.write(f'{line}\n'.encode())
    self.proc.stdin.flush()

  def assign(self, start: int, stop: int) -> bool:
    """Hands it inputs start to stop - 1; False if it is gone."""
    try:
      self.send(f'{start} {stop}')
    except BrokenPipeError:
      return False
    self.chunk, self.next, self.last = (start, stop), start, time.monotonic()
    return True

  def busy(self) -> bool:
    """On an input of its chunk (not past its last)."""
    return self.chunk is not None and self.next < self.chunk[1]

  def lines(self) -> Optional[list[bytes]]:
    """Complete lines read now; None at the end of its output."""
    data = os.read(self.proc.stdout.fileno(), 1 << 16)
    if not data:
      return None
    self.buffer += data
    *done, self.buffer = self.buffer.split(b'\n')
    return done

  def log_tail(self, n: int = 3000) -> str:
    with open(self.log_path, 'rb') as f:
      return f.read()[-n:].decode(errors='replace')

  def stop(self, kill: bool = False) -> int:
    """Ends it: at once (kill), or after its chunk (its input closed)."""
    if kill and self.proc.poll() is None:
      self.proc.kill()
    for stream in (self.proc.stdin, self.proc.stdout):
      try:
        stream.close()
      except OSError:  # A pipe it no longer reads.
        pass
    return self.proc.wait()


# -- the run ------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
  """What a run found."""
  inputs: int = 0
  ok: int = 0
  refused: int = 0
  reasons: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  pixel_limit: int = 0  # Refused by the pixel limit.
  crashes: list = dataclasses.field(default_factory=list)  # {'index', ...}
  hangs: list = dataclasses.field(default_factory=list)  # Indices.
  wrong: list = dataclasses.field(default_factory=list)
  families: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)  # (family, outcome).
  largest_decoded: tuple = (0, 0)  # Stated (height, width).
  worker_rss: int = 0  # Bytes.
  parent_rss: int = 0
  seconds: float = 0.0  # All of it.
  setup_seconds: float = 0.0  # Models, seed files, workers started.
  seed: int = 0
  max_pixels: int = 0
  workers: int = 0
  restarts: int = 0
  # (name, model, version, channels, bytes) of each seed file.
  seeds: list = dataclasses.field(default_factory=list)

  @property
  def failed(self) -> bool:
    return bool(self.crashes or self.hangs or self.wrong)

  @property
  def rate(self) -> float:
    """Inputs a second, after the setup."""
    return self.inputs / max(self.seconds - self.setup_seconds, 1e-9)

  def add(self, message: dict) -> None:
    """Counts one input a worker reported."""
    i, outcome, family = message['i'], message['o'], message['f']
    self.inputs += 1
    self.families[family, outcome] += 1
    if outcome == 'ok':
      self.ok += 1
      h, w = message['px']
      if h * w > self.largest_decoded[0] * self.largest_decoded[1]:
        self.largest_decoded = (h, w)
    elif outcome == 'refused':
      self.refused += 1
      self.reasons[message['k']] += 1
      self.pixel_limit += message['k'].startswith(TOO_LARGE)
    else:
      (self.crashes if outcome == 'crash' else self.wrong).append(
          {'index': i, 'what': message['w'], 'family': family, 'detail': message['d']})


def _duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


class _Pool:
  """The workers, the chunks left, and what they reported."""

  def __init__(self, tmp: str, workers: int, inputs: int, chunk: int,
               report: Report):
    self.tmp, self.report = tmp, report
    self.setup_path: Optional[str] = None
    self.describe: Callable[[int], Mutation] = None
    self.pending = collections.deque((i, min(i + chunk, inputs))
                                     for i in range(0, inputs, chunk))
    self.selector = selectors.DefaultSelector()
    self.workers = [self._start(n) for n in range(workers)]

  def _start(self, number: int) -> _Worker:
    worker = _Worker(os.path.join(self.tmp, f'worker{number}.log'),
                     os.path.join(self.tmp, 'jax_cache'), number)
    self.selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)
    if self.setup_path:
      worker.send(self.setup_path)
    return worker

  def set_up(self, path: str, describe: Callable[[int], Mutation]) -> None:
    """Hands the workers the setup; `describe(i)` makes input i."""
    self.setup_path, self.describe = path, describe
    for worker in self.workers:
      try:
        worker.send(path)
      except BrokenPipeError:  # Failed to start: its end is read in step.
        pass

  def _replace(self, worker: _Worker, kill: bool) -> None:
    """A new worker in its place, on the rest of its chunk after the input
    in flight."""
    self.selector.unregister(worker.proc.stdout)
    self.report.worker_rss = max(self.report.worker_rss,
                                 peak_memory_bytes(str(worker.proc.pid)))
    worker.stop(kill=kill)
    if worker.chunk and worker.next + 1 < worker.chunk[1]:
      self.pending.appendleft((worker.next + 1, worker.chunk[1]))
    self.workers[self.workers.index(worker)] = self._start(worker.number)
    self.report.restarts += 1

  def running(self) -> bool:
    return bool(self.pending) or any(w.chunk for w in self.workers)

  def step(self, time_limit: float, startup_limit: float,
           log: Callable[[str], None]) -> None:
    """Hands out chunks, reads what the workers say (half a second at most),
    and replaces a worker that died or hung."""
    for worker in self.workers:
      if worker.ready and worker.chunk is None and self.pending:
        chunk = self.pending.popleft()
        if not worker.assign(*chunk):  # Gone: its end is read below.
          self.pending.appendleft(chunk)
    for key, _ in self.selector.select(timeout=0.5):
      worker = key.data
      worker.last = time.monotonic()
      lines = worker.lines()
      if lines is None:  # It died.
        code = worker.proc.wait()
        if not worker.ready:
          raise RuntimeError(f'a fuzz worker failed to start (exit status {code}); '
                             f'its log ends:\n{worker.log_tail()}')
        if worker.busy():
          mutation = self.describe(worker.next)
          self.report.add({'i': worker.next, 'o': 'crash', 'f': mutation.family,
                           'w': mutation.what,
                           'd': f'the worker process died (exit status {code}); '
                                f'its log ends:\n{worker.log_tail()}'})
        self._replace(worker, kill=False)
        continue
      for line in lines:
        message = json.loads(line)
        if 'ready' in message:
          worker.ready = True
          self.report.worker_rss = max(self.report.worker_rss, message['ready'])
        elif 'done' in message:
          worker.chunk = None
          self.report.worker_rss = max(self.report.worker_rss, message['rss'])
        else:
          worker.next = message['i'] + 1
          self.report.add(message)
    now = time.monotonic()
    for worker in list(self.workers):
      if not worker.ready and self.setup_path and now - worker.started > startup_limit:
        raise RuntimeError(f'a fuzz worker was not ready after {startup_limit:.0f} s; '
                           f'its log ends:\n{worker.log_tail()}')
      if worker.busy() and now - worker.last > time_limit:
        mutation = self.describe(worker.next)
        self.report.inputs += 1
        self.report.families[mutation.family, 'hang'] += 1
        self.report.hangs.append(worker.next)
        log(f'hang: input {worker.next} ({mutation.family}: {mutation.what}) ran past '
            f'{time_limit:g} s; its worker is killed and a new one goes on from the '
            'next input')
        self._replace(worker, kill=True)

  def close(self) -> None:
    for worker in self.workers:
      worker.stop(kill=worker.chunk is not None)
    self.selector.close()


def fuzz(inputs: int, seed: int = 0, workers: int = 2, time_limit: float = 10.0,
         max_pixels: Optional[int] = None, chunk: int = 200,
         progress_every: float = 30.0, log: Callable[[str], None] = print,
         sabotage: Optional[dict[int, str]] = None,
         setup: Optional[tuple[dict, list]] = None, startup_limit: float = 300.0
         ) -> Report:
  """Runs inputs 0 to `inputs` - 1 of `seed` in `workers` subprocesses.

  Args:
    inputs: how many inputs.
    seed: the fuzz seed; input i is mutate(seeds, seed, i).
    workers: worker subprocesses.
    time_limit: seconds an input may run before it counts as a hang.
    max_pixels: the decoder's pixel limit; None: LIMIT_FACTOR times the
      largest seed image.
    chunk: inputs handed to a worker at a time.
    progress_every: seconds between progress lines.
    log: where progress lines go.
    sabotage: {index: 'crash' | 'hang' | 'wrong' | 'die'}: inputs broken on
      purpose, to test this harness.
    setup: (codecs, seeds) made already (make_codecs, make_seeds).
    startup_limit: seconds a worker may take to start, once set up.

  Returns:
    The Report.
  """
  begin = time.monotonic()
  report = Report(seed=seed, workers=workers)
  with tempfile.TemporaryDirectory(prefix='fuzz_aec_') as tmp:
    # The workers import while the models and seed files are made.
    pool = _Pool(tmp, workers, inputs, chunk, report)
    try:
      codecs, seeds = setup or (make_codecs(), None)
      seeds = seeds or make_seeds(codecs)
      if max_pixels is None:
        max_pixels = LIMIT_FACTOR * max(s.shape[0] * s.shape[1] for s in seeds)
      report.max_pixels = max_pixels
      report.seeds = [(s.name, s.model, s.data[3], s.shape[2], len(s.data))
                      for s in seeds]
      path = os.path.join(tmp, 'setup.pickle')
      with open(path, 'wb') as f:
        pickle.dump({'params': {n: c.params for n, c in codecs.items()},
                     'ids': {n: c.id for n, c in codecs.items()},
                     'seeds': [dataclasses.asdict(s) for s in seeds], 'seed': seed,
                     'max_pixels': max_pixels, 'sabotage': dict(sabotage or {})}, f)
      pool.set_up(path, lambda i: mutate(seeds, seed, i))
      while not all(w.ready for w in pool.workers):
        pool.step(time_limit, startup_limit, log)
      report.setup_seconds = time.monotonic() - begin
      next_progress = time.monotonic() + progress_every
      while pool.running():
        pool.step(time_limit, startup_limit, log)
        now = time.monotonic()
        if now >= next_progress:
          next_progress = now + progress_every
          report.seconds = now - begin
          eta = (inputs - report.inputs) / max(report.rate, 1e-9)
          log(f'{report.inputs:,}/{inputs:,} inputs ({100 * report.inputs / inputs:.1f}%)'
              f' in {_duration(report.seconds)}, {report.rate:,.0f}/s, ETA '
              f'{_duration(eta)}: {report.ok:,} decoded, {report.refused:,} refused, '
              f'{len(report.crashes)} crashes, {len(report.hangs)} hangs, '
              f'{len(report.wrong)} wrong sizes')
    finally:
      pool.close()
  report.parent_rss = peak_memory_bytes()
  report.seconds = time.monotonic() - begin
  return report


def summary(report: Report, show: int = 3) -> str:
  """The report as printed: counts, refusals by kind, the mutation kinds,
  time, memory, and the first `show` crashes and wrong sizes in full."""
  versions = collections.defaultdict(set)
  for _, model, version, channels, _ in report.seeds:
    versions[model, version].add(CHANNEL_NAMES[channels])
  sizes = [s[-1] for s in report.seeds]
  h, w = report.largest_decoded
  lines = [
      f'seed files:    {len(report.seeds)}, {min(sizes)} to {max(sizes)} bytes: ' +
      '; '.join(f'{m} v{v} ({", ".join(sorted(c))})'
                for (m, v), c in sorted(versions.items())),
      f'inputs:        {report.inputs:,} (fuzz seed {report.seed}, {report.workers} '
      f'workers, {report.restarts} restarted)',
      f'decoded OK:    {report.ok:,} (largest stated image decoded: {h}x{w} = '
      f'{h * w:,} pixels)',
      f'refused:       {report.refused:,} (CodecError), {report.pixel_limit:,} of them '
      f'by the pixel limit of {report.max_pixels:,}; by the first words:',
  ]
  lines += [f'  {n:>11,}  {key}' for key, n in report.reasons.most_common()]
  lines += [
      f'crashes:       {len(report.crashes)}',
      f'hangs:         {len(report.hangs)}' +
      (f' (inputs {", ".join(map(str, report.hangs[:20]))})' if report.hangs else ''),
      f'wrong sizes:   {len(report.wrong)}',
      'by mutation:        inputs    decoded    refused',
  ]
  for family in sorted({f for f, _ in report.families}):
    n = {o: report.families[family, o]
         for o in ('ok', 'refused', 'crash', 'hang', 'wrong')}
    bad = ', '.join(f'{n[o]} {o}' for o in ('crash', 'hang', 'wrong') if n[o])
    bad = f' ({bad})' if bad else ''
    lines.append(f'  {sum(n.values()):>18,} {n["ok"]:>10,} {n["refused"]:>10,}  '
                 f'{family}{bad}')
  lines += [
      f'time:          {_duration(report.seconds)} ({report.seconds:,.1f} s, of which '
      f'{report.setup_seconds:.1f} s setup), {report.rate:,.0f} inputs/s',
      f'peak memory:   {report.worker_rss / 2**20:,.0f} MiB (peak RSS of a worker), '
      f'{report.parent_rss / 2**20:,.0f} MiB (of the parent)',
  ]
  for kind, items in (('crash', report.crashes), ('wrong size', report.wrong)):
    for item in sorted(items, key=lambda item: item['index'])[:show]:
      lines += [
          f'--- {kind} at input {item["index"]} ({item["family"]}: {item["what"]})',
          f'    reproduce: python benchmarks/fuzz_aec.py --seed={report.seed} '
          f'--max_pixels={report.max_pixels} --reproduce={item["index"]}',
          item['detail']]
  return '\n'.join(lines)


def reproduce(seed: int, index: int, max_pixels: Optional[int]) -> int:
  """Makes input `index` of `seed` again and decodes it here; prints what
  happened (a crash with its whole traceback)."""
  codecs = make_codecs()
  seeds = make_seeds(codecs)
  if max_pixels is None:
    max_pixels = LIMIT_FACTOR * max(s.shape[0] * s.shape[1] for s in seeds)
  mutation = mutate(seeds, seed, index)
  print(f'input {index} of seed {seed}: {mutation.family}: {mutation.what}')
  print(f'{len(mutation.data)} bytes: {mutation.data[:64].hex()}'
        f'{"..." if len(mutation.data) > 64 else ""}')
  outcome, detail = check(codecs, mutation, max_pixels)
  print(f'{outcome}: {detail}')
  return 1 if outcome in ('crash', 'wrong') else 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--inputs', type=int, default=1_000_000)
  parser.add_argument('--seed', type=int, default=0,
                      help='the fuzz seed: input i is made from (seed, i)')
  parser.add_argument('--workers', type=int, default=2,
                      help='worker subprocesses (one core each)')
  parser.add_argument('--time_limit', type=float, default=10.0,
                      help='seconds an input may run before it counts as a hang')
  parser.add_argument('--max_pixels', type=int, default=None,
                      help=f'the decoder\'s pixel limit (default {LIMIT_FACTOR}x '
                           'the largest seed image)')
  parser.add_argument('--progress_every', type=float, default=30.0,
                      help='seconds between progress lines')
  parser.add_argument('--show', type=int, default=3,
                      help='crashes and wrong sizes printed in full')
  parser.add_argument('--reproduce', type=int, default=None, metavar='INDEX',
                      help='make input INDEX again and decode it in this process')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    _worker()
    return 0
  if args.reproduce is not None:
    return reproduce(args.seed, args.reproduce, args.max_pixels)
  print(f'fuzzing the .aec decoder: {args.inputs:,} inputs, seed {args.seed}, '
        f'{args.workers} workers, {args.time_limit:g} s per input', flush=True)
  report = fuzz(args.inputs, seed=args.seed, workers=args.workers,
                time_limit=args.time_limit, max_pixels=args.max_pixels,
                progress_every=args.progress_every,
                log=lambda line: print(line, flush=True))
  print(summary(report, args.show), flush=True)
  return 1 if report.failed else 0


if __name__ == '__main__':
  sys.exit(main())
