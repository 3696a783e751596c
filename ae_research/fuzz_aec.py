"""The .aec decoder as a fuzz target: mutated files must decode or be refused.

  report = fuzz_aec.fuzz(20000, seed=3)      # benchmarks/fuzz_aec.py runs it
  print(fuzz_aec.summary(report))

Builds real files of every container version (`ae_research.aec`): versions
1 to 5 with a tiny factorized-prior model, versions 3 to 5 with tiny
hyperprior and mean-scale models (two levels of 4 features, a latent of 4,
freshly initialized with a fixed seed: decoding does not need a trained
model), gray, gray + alpha, RGB and RGBA (version 1: no alpha), each at a
few small sizes. Input i of seed s is one of them mutated by a generator
seeded with (s, i), so any input can be made again: bit flips, byte sets,
insertions, deletions, truncations, appended bytes, deleted or repeated
runs, splices of two files, and edits of header fields (height, width,
channels, number of latents, rate setting, counts of escaped values, payload and alpha
lengths, escaped values, version, model id) to small, near, bit-flipped,
boundary and huge values, minimal or overlong varints. Where the fields lie
is read by the decoder itself (`Codec.parse`'s 'fields'). Most mutations are
sealed again with a valid CRC-32, so they get past the checksum into the
parser, the entropy decoder and the synthesis network.

Each input must either decode to a uint8 image of exactly the height, width
and channels its header states, or raise `aec.CodecError` without the
worker's memory growing by more than REFUSAL_GROWTH; anything else escaping
is a crash (`ae_research.fuzzing` counts hangs and dead workers). The pixel
limit (default LIMIT_FACTOR times the largest seed image) is passed to the
decoder, so a file whose header states a larger image is refused before
anything is allocated. The networks run whole (tiling off: the images are
small), compiled without XLA's backend optimizations (FAST_COMPILE), each new
size once for all the workers (a compilation cache they share).
"""

import collections
import dataclasses
import os
import random
import traceback
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import aec, compression, fuzzing, tiling

MODELS = ('factorized', 'hyperprior', 'mean_scale')
# Seed image sizes (height, width); the last two pad to the same size, so
# making the seed files compiles one network size less.
SHAPES = ((16, 16), (45, 29), (48, 32))
CHANNEL_NAMES = {1: 'gray', 2: 'gray+alpha', 3: 'RGB', 4: 'RGBA'}
PARAMS_SEED = 0  # The models' initialization: fixed, whatever the fuzz seed.
# The latent's scale: spread over many symbols, with some values beyond the
# coding tables (escaped), as a trained model's are.
LATENT_SCALE = {'factorized': 300.0, 'hyperprior': 12.0, 'mean_scale': 12.0}
# XLA without its backend optimizations compiles each new image size in
# about half the time, and the tiny networks run as fast.
FAST_COMPILE = {'xla_backend_optimization_level': 0,
                'xla_llvm_disable_expensive_passes': True}
LIMIT_FACTOR = 64  # The default pixel limit: this times the largest seed.
TOO_LARGE = 'image too large'  # How the decoder's pixel-limit message starts.
REFUSAL_GROWTH = 64 * 2**20  # Bytes a worker may grow by while refusing a file.
INTERESTING = (0, 1, 2, 127, 128, 255, 256, 16383, 16384, aec.MAX_SIDE - 1,
               aec.MAX_SIDE, aec.MAX_SIDE + 1, 2**31 - 1, 2**31, 2**32,
               2**63 - 1, 2**63, 2**64 - 1, 2**64, 2**70)
# Fields a mutation leaves alone (it edits the bytes of a payload or alpha
# plane through the byte edits).
_NOT_EDITED = ('magic', 'checksum', 'payload of', 'alpha plane')


# -- the seed files ----------------------------------------------------------


def tiny_model(name: str) -> Any:
  """A MODELS entry as configs/compress.py makes it, shrunk to two levels of 4
  features and a latent of 4: fast to decode."""
  if name == 'factorized':
    return compression.FactorizedPrior(features=(4, 4), latent_features=4)
  return compression.ScaleHyperprior(features=(4, 4), latent_features=4,
                                     hyper_features=4,
                                     mean_scale=name == 'mean_scale')


def codec_of(name: str, params: Any) -> aec.Codec:
  """The codec of a tiny model with these parameters, networks run whole."""
  return aec.Codec(tiny_model(name), {'params': params},
                   plan=tiling.Tiling(mode='never'))


def make_codecs() -> dict[str, aec.Codec]:
  """A codec per MODELS entry, freshly initialized with PARAMS_SEED, the
  latent scaled by LATENT_SCALE."""
  codecs = {}
  for name in MODELS:
    model = tiny_model(name)
    # The rbg generator and FAST_COMPILE: seconds to compile, not tens.
    rngs = {'params': jax.random.key(PARAMS_SEED, impl='rbg'),
            'noise': jax.random.key(PARAMS_SEED + 1, impl='rbg')}
    x = jnp.zeros((1, 32, 32, 3))
    init = jax.jit(model.init).lower(rngs, x).compile(FAST_COMPILE)
    scale = LATENT_SCALE[name]
    params = jax.device_get(jax.tree_util.tree_map_with_path(
        lambda path, p, s=scale: p * s if 'to_latent' in jax.tree_util.keystr(path)
        else p, init(rngs, x)['params']))
    codecs[name] = codec_of(name, params)
  return codecs


@dataclasses.dataclass(frozen=True)
class Seed:
  """A valid file, and what it is."""
  name: str
  model: str
  version: int
  shape: tuple[int, int, int]
  data: bytes
  fields: tuple  # Codec.parse(data)['fields'].


def _image(h: int, w: int, c: int, rng: np.random.Generator) -> np.ndarray:
  """A smooth random image with some noise, as photos are."""
  small = rng.random((h // 8 + 2, w // 8 + 2, c))
  smooth = np.repeat(np.repeat(small, 8, 0), 8, 1)[:h, :w]
  noisy = smooth + 0.05 * rng.standard_normal((h, w, c))
  return np.clip(noisy * 255, 0, 255).astype(np.uint8)


def make_seeds(codecs: dict[str, aec.Codec]) -> list[Seed]:
  """Valid files of every container version: versions 2 to 5 (gray, RGB,
  either with alpha) and 1 (no alpha) of the factorized prior, versions 3
  to 5 of the hyperpriors, each at every SHAPES size."""
  rng = np.random.default_rng(0)
  seeds = []
  for model_name, codec in codecs.items():
    for version in aec.READS if not codec.hyper else aec.READS[2:]:
      for channels in ((1, 3) if version == 1 else (1, 2, 3, 4)):
        for h, w in SHAPES:
          data = codec.encode(_image(h, w, channels, rng), version=max(version, 2))
          if version == 1:  # A version 2 file without alpha, as version 1 was.
            data = aec.seal(data[:3] + b'\x01' + data[4:-4])
          name = f'{model_name} v{version} {CHANNEL_NAMES[channels]} {h}x{w}'
          seeds.append(Seed(name, model_name, data[3], (h, w, channels), data,
                            tuple(codec.parse(data)['fields'])))
  return seeds


# -- the mutations ------------------------------------------------------------


@dataclasses.dataclass
class Mutation:
  """One fuzz input: the file, the model that decodes it, how it was made."""
  model: str
  data: bytes
  group: str  # The kind of mutation.
  what: str


def _read_varint(data: bytes, pos: int) -> int:
  """The varint at `pos` of a field the decoder has read."""
  n, shift = 0, 0
  while True:
    n |= (data[pos] & 0x7F) << shift
    if not data[pos] & 0x80:
      return n
    pos, shift = pos + 1, shift + 7


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
  if kind == 'bytes' and stop - start == 1:  # Version, channels, latents.
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
    old = _read_varint(body, start)
    new = _new_value(rng, old)
    encoded = bytearray(aec.varint(new))
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
    out = bytearray(data)  # Anywhere, the checksum left as it was.
    _byte_ops(rng, out, 0, what)
    return Mutation(a.model, bytes(out), 'bytes', '; '.join(what))
  if r < 0.42:
    group = 'bytes, resealed'
    _byte_ops(rng, body, 12 if rng.random() < 0.85 else 0, what)
  elif r < 0.74:
    group = 'header fields, resealed'
    editable = [f for f in a.fields if not f[0].startswith(_NOT_EDITED)]
    chosen = rng.sample(editable, 1 if rng.random() < 0.75 else 2)
    # The later field first: the earlier one keeps its position.
    for field in sorted(chosen, key=lambda f: -f[1]):
      _edit_field(rng, field, body, what)
    if rng.random() < 0.2:
      _byte_ops(rng, body, 12, what)
    if rng.random() < 0.05:  # The checksum left as it was.
      return Mutation(a.model, bytes(body) + data[-4:], 'header fields',
                      '; '.join(what))
  elif r < 0.82:
    group = 'truncations'
    if rng.random() < 0.5:
      n = rng.randrange(len(data))
      return Mutation(a.model, data[:n], group, f'{a.name}; first {n} bytes')
    n = rng.randrange(len(body))
    what.append(f'body cut to {n} bytes, resealed')
    body = body[:n]
  elif r < 0.85:
    group = 'appended bytes, resealed'
    extra = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    body += extra
    what.append(f'{len(extra)} bytes appended')
  elif r < 0.92:
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
      return Mutation(a.model, spliced, 'splices', '; '.join(what))
    group = 'splices, resealed'
    body = bytearray(spliced[:-4])
  else:
    group = 'runs deleted or repeated, resealed'
    i = rng.randrange(len(body))
    n = rng.randint(2, 64)
    if rng.random() < 0.5:
      del body[i:i + n]
      what.append(f'{n} bytes deleted at {i}')
    else:
      body[i:i] = body[i:i + n]
      what.append(f'{n} bytes at {i} repeated')
  return Mutation(a.model, aec.seal(bytes(body)), group, '; '.join(what))


# -- the contract --------------------------------------------------------------


def check(codecs: dict[str, aec.Codec], mutation: Mutation,
          max_pixels: int) -> fuzzing.Result:
  """Decodes one input: decoded at the size its header states, refused
  with a CodecError, or a crash (another exception) or wrong (another size)."""
  codec = codecs[mutation.model]
  try:
    image = codec.decode(mutation.data, max_pixels=max_pixels)
  except aec.CodecError as e:
    return fuzzing.Result('refused', str(e), max_growth=REFUSAL_GROWTH)
  except Exception:  # pylint: disable=broad-except
    return fuzzing.Result('crash', traceback.format_exc())
  header = codec.parse(mutation.data, max_pixels)
  h, w, c = header['height'], header['width'], header['channels']
  if (not isinstance(image, np.ndarray) or image.dtype != np.uint8
      or image.shape != (h, w, c)):
    got = (f'{image.dtype} {image.shape}' if isinstance(image, np.ndarray)
           else type(image).__name__)
    return fuzzing.Result('wrong', f'header states {h}x{w}x{c}, decoded {got}')
  return fuzzing.Result('decoded', facts={'pixels': h * w})


class Target:
  """The fuzzing harness's target: input i is mutate(seeds, seed, i), checked
  by `check`. Pickled to the workers as its models' parameters."""

  def __init__(self, codecs: dict[str, aec.Codec], seeds: list[Seed], seed: int,
               max_pixels: Optional[int] = None):
    self.codecs, self.seeds, self.seed = codecs, seeds, seed
    self.max_pixels = (LIMIT_FACTOR * max(s.shape[0] * s.shape[1] for s in seeds)
                       if max_pixels is None else max_pixels)

  def __getstate__(self) -> dict:
    return {'seeds': self.seeds, 'seed': self.seed, 'max_pixels': self.max_pixels,
            'params': {n: c.params for n, c in self.codecs.items()},
            'ids': {n: c.id for n, c in self.codecs.items()}}

  def __setstate__(self, state: dict) -> None:
    self.__dict__.update(state, codecs=None)

  def start(self, folder: str) -> None:
    """Makes the codecs again, in a worker."""
    del folder
    if self.codecs is None:
      self.codecs = {n: codec_of(n, p) for n, p in self.params.items()}
      for name, codec in self.codecs.items():
        if codec.id != self.ids[name]:
          raise RuntimeError(f'worker: the {name} model is not the parent\'s')
      # Each model, version and seed size decoded once, before the first input: the
      # XLA computations they compile (or load from the shared cache) are a
      # cache of the worker, not memory an input made it allocate.
      done = set()
      for seed in self.seeds:
        if (seed.model, seed.version, seed.shape[:2]) not in done:
          done.add((seed.model, seed.version, seed.shape[:2]))
          self.codecs[seed.model].decode(seed.data)

  def make(self, index: int) -> Mutation:
    return mutate(self.seeds, self.seed, index)

  def check(self, mutation: Mutation) -> fuzzing.Result:
    return check(self.codecs, mutation, self.max_pixels)

  def again(self, index: int) -> str:
    return (f'python benchmarks/fuzz_aec.py --seed={self.seed} '
            f'--max_pixels={self.max_pixels} --reproduce={index}')


def environment(tmp: str) -> dict[str, str]:
  """The workers' environment: one thread each, FAST_COMPILE, the compiled
  sizes shared through a cache in `tmp`."""
  flags = ' '.join(f'--{k}={str(v).lower()}' for k, v in FAST_COMPILE.items())
  return dict(JAX_PLATFORMS='cpu', OMP_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1',
              XLA_FLAGS='--xla_cpu_multi_thread_eigen=false '
                        f'intra_op_parallelism_threads=1 {flags}',
              JAX_COMPILATION_CACHE_DIR=os.path.join(tmp, 'jax_cache'),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='-1')


def make_target(seed: int = 0, max_pixels: Optional[int] = None) -> Target:
  codecs = make_codecs()
  return Target(codecs, make_seeds(codecs), seed, max_pixels)


def fuzz(inputs: int, seed: int = 0, workers: int = 2, time_limit: float = 10.0,
         max_pixels: Optional[int] = None, chunk: int = 200,
         progress_every: float = 30.0, log: Callable[[str], None] = print,
         sabotage: Optional[dict[int, str]] = None,
         setup: Optional[tuple[dict, list]] = None) -> fuzzing.Report:
  """Inputs 0 to `inputs` - 1 of `seed` through `fuzzing.fuzz`; `setup`:
  (codecs, seeds) made already (make_codecs, make_seeds), else made while
  the workers start. max_pixels: the decoder's pixel limit (None:
  LIMIT_FACTOR times the largest seed image). See fuzzing.fuzz for the rest."""
  if setup:
    target = Target(*setup, seed, max_pixels)
  else:
    target = lambda: make_target(seed, max_pixels)
  return fuzzing.fuzz(target, inputs, workers=workers, time_limit=time_limit,
                      chunk=chunk, progress_every=progress_every, log=log,
                      sabotage=sabotage, environment=environment)


def summary(report: fuzzing.Report, show: int = 3) -> str:
  """The report as printed: the seed files, decoded and refused (by the
  pixel limit apart), then the harness's table by kind of mutation."""
  target = report.target
  versions = collections.defaultdict(set)
  for s in target.seeds:
    versions[s.model, s.version].add(CHANNEL_NAMES[s.shape[2]])
  sizes = [len(s.data) for s in target.seeds]
  largest = report.facts.get('pixels', fuzzing.Fact(high=0))
  by_limit = sum(n for k, n in report.reasons.items() if k.startswith(TOO_LARGE))
  lines = [
      f'seed files:    {len(target.seeds)}, {min(sizes)} to {max(sizes)} bytes: ' +
      '; '.join(f'{m} v{v} ({", ".join(sorted(c))})'
                for (m, v), c in sorted(versions.items())),
      f'inputs:        {report.inputs:,} (fuzz seed {target.seed})',
      f'decoded:       {report.count("decoded"):,} (largest stated image decoded: '
      f'{largest.high:,} pixels, input {largest.high_index})',
      f'refused:       {report.count("refused"):,} (CodecError), {by_limit:,} of them '
      f'by the pixel limit of {target.max_pixels:,}',
      fuzzing.summary(report, show, name='mutation'),
  ]
  return '\n'.join(lines)
