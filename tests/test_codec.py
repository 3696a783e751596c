"""The codec: exact round trips, real file sizes, and clear errors for every
malformed file (fuzzed with hypothesis)."""

import functools
import json
import os
import pickle
import struct
import subprocess
import sys
import zlib

import constriction
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae_research import aec, tiling
from ae_research import workdir as workdir_lib
from ae_research import compression
from configs import compress as compress_config

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(variant='smoke', **compress):
  config = compress_config.get_config(variant)
  config.model.features = (8, 8, 8)
  config.compress.hyper_features = 8
  for k, v in compress.items():
    config.compress[k] = v
  return config


@functools.lru_cache(maxsize=None)
def _params(seed, items, variant='smoke'):
  model = compression.from_config(_config(variant, **dict(items)))
  # Jitted: one compilation, not one per operation.
  variables = jax.jit(model.init)({'params': jax.random.key(seed), 'noise': jax.random.key(1)},
                                  jnp.zeros((1, 32, 32, 3)))
  # Spread the latent over many symbols, as a trained model's is.
  return jax.device_get(jax.tree_util.tree_map_with_path(
      lambda path, p: p * 4.0 if 'to_latent' in jax.tree_util.keystr(path) else p,
      variables['params']))


def _codec(seed=0, **compress):
  """A fresh codec (its own tables and plan); the parameters and compiled
  functions of a model are made once."""
  params = _params(seed, tuple(sorted(compress.items())))
  return aec.Codec.from_config(_config('smoke', **compress), params)


@pytest.fixture(scope='module')
def codec():
  return _codec()


@pytest.fixture(scope='module')
def hyper_codec():
  return _codec(model='mean_scale')


def _any_codec(name, codec, hyper_codec):
  if name == 'factorized':
    return codec
  if name == 'mean_scale':
    return hyper_codec
  return _codec(model=name)  # Its parameters are made once.


@pytest.fixture(params=['factorized', 'mean_scale'])
def any_codec(request, codec, hyper_codec):
  return _any_codec(request.param, codec, hyper_codec)


def _expected_output(codec, image):
  """The model's reconstruction of the codec's latent, computed apart."""
  if not codec.hyper:
    padded = codec._padded(image)
    return np.asarray(codec.model.apply(codec.variables, jnp.asarray(padded[None]))['output'])[0]
  symbols = codec.latent(image)
  y_hat = (symbols['y'] + symbols['means']).astype(np.float32)
  out = codec.model.apply(codec.variables, jnp.asarray(y_hat[None]), method='synthesis')
  return np.clip(np.asarray(out)[0], 0.0, 1.0)


def _image(h, w, c=3, seed=0):
  rng = np.random.default_rng(seed)
  small = rng.random((max(h // 8, 1), max(w // 8, 1), c))
  smooth = np.asarray(jax.image.resize(jnp.asarray(small), (h, w, c), 'linear'))
  return np.clip((smooth + 0.05 * rng.standard_normal((h, w, c))) * 255, 0,
                 255).astype(np.uint8)


@pytest.mark.parametrize('name, shape', [
    ('factorized', (40, 56, 3)), ('factorized', (37, 53, 3)), ('factorized', (5, 3, 3)),
    ('factorized', (30, 20, 1)), ('mean_scale', (37, 53, 3)),
    ('mean_scale', (5, 3, 3)), ('mean_scale', (30, 20, 1))])
def test_decode_is_the_models_reconstruction(name, shape, codec, hyper_codec):
  codec = _any_codec(name, codec, hyper_codec)
  image = _image(*shape)
  data = codec.encode(image)
  assert data == codec.encode(image)  # Deterministic encoder.
  decoded = codec.decode(data)
  assert decoded.dtype == np.uint8 and decoded.shape == image.shape
  np.testing.assert_array_equal(codec.decode(data), decoded)
  # Computed apart: the model's inference output, cropped and rounded.
  out = _expected_output(codec, image)
  want = np.round(out[:shape[0], :shape[1]] * 255).astype(np.uint8)
  if shape[-1] == 1:
    want = np.round(want.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                                       np.float32))[..., None]
  np.testing.assert_array_equal(decoded, want)


def test_file_size_is_close_to_the_estimated_rate(any_codec):
  codec = any_codec
  image = _image(96, 128)
  data = codec.encode(image)
  estimated = codec.estimated_bits(image)
  header = 8 * 32  # Magic, id, sizes, CRC.
  assert estimated > 1000  # The test means something.
  assert 8 * len(data) < 1.03 * estimated + header
  # Version 4 codes every value as the model prices it; version 5 lists the
  # rare nonzero values of the narrowest table, which can only cost less
  # than the model's price for such outliers (an untrained model has many).
  assert 0.97 * estimated < 8 * len(codec.encode(image, version=4))


def test_the_narrowest_tables_nonzero_values_are_listed_not_coded(hyper_codec):
  """Version 5: y's values of table 0 (scale 0.11) are not entropy coded;
  the file lists the nonzero ones (positions among them, values)."""
  codec = hyper_codec
  image = _image(48, 64)
  data = codec.encode(image)
  header = codec.parse(data)
  positions, values = header['sections'][1][2]
  symbols = codec.latent(image)
  narrow = symbols['y'][symbols['table'] == 0]
  assert len(narrow) > 100 and len(positions) > 0  # The test means something.
  np.testing.assert_array_equal(positions, np.flatnonzero(narrow))
  np.testing.assert_array_equal(values, narrow[narrow != 0])
  # A listed position past the narrowest table's values, behind a valid checksum.
  _, start, stop, _ = [f for f in header['fields'] if f[0] == 'listed positions of y'][-1]
  with pytest.raises(aec.CodecError, match='listed value at position'):
    codec.decode(aec.seal(data[:start] + aec.varint(len(narrow)) + data[stop:-4]))


def test_values_outside_the_tables_are_escaped():
  codec = _codec()
  image = _image(48, 64)
  reference = codec.decode(codec.encode(image))
  # Shrink every table to the symbol 0: every other value now escapes.
  tables = codec.tables_y
  tables.offsets = np.zeros_like(tables.offsets)
  tables.sizes = np.ones_like(tables.sizes)
  tables.models = [constriction.stream.model.Categorical(
      np.array([0.5, 0.5]), perfect=False)] * len(tables.sizes)
  data = codec.encode(image)
  header = codec.parse(data)
  assert len(header['escapes']) > 10
  np.testing.assert_array_equal(codec.decode(data), reference)


@pytest.mark.slow
def test_bottleneck_model_codes_fixed_bits():
  codec = _codec(model='bottleneck', bits=3)
  image = _image(32, 48)
  data = codec.encode(image)
  m = codec.multiple
  symbols = -(-32 // m) * -(-48 // m) * codec.latent_features
  # 3 bits a symbol, plus the header and the range coder's last word.
  assert 3 * symbols <= 8 * len(data) <= 3 * symbols + 8 * 32 + 32
  np.testing.assert_array_equal(codec.decode(data), codec.decode(data))


def test_bad_images_are_refused(codec):
  for bad in (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8, 5), np.uint8),
              np.zeros((8, 8), np.uint8), np.zeros((0, 8, 3), np.uint8)):
    with pytest.raises(aec.CodecError, match='uint8 images|sides'):
      codec.encode(bad)


@pytest.mark.parametrize('color', [1, 3])
def test_alpha_is_stored_losslessly_beside_the_coded_color(codec, color):
  image = _image(37, 45, color + 1, seed=3)
  data = codec.encode(image)
  decoded = codec.decode(data)
  assert decoded.shape == image.shape
  np.testing.assert_array_equal(decoded[..., -1], image[..., -1])
  # The color is coded exactly as it is without alpha.
  np.testing.assert_array_equal(decoded[..., :-1], codec.decode(codec.encode(image[..., :-1])))


def test_versions_1_and_2_files_still_decode(codec):
  image = _image(30, 40)
  data = codec.encode(image, version=2)
  assert data[3] == 2 and data != codec.encode(image)
  # The same latent as version 3, coded with the tables of version 2.
  np.testing.assert_array_equal(codec.decode(data), codec.decode(codec.encode(image)))
  old = _with_crc(data[:3] + b'\x01' + data[4:-4])
  np.testing.assert_array_equal(codec.decode(old), codec.decode(data))
  # Version 1 had no alpha.
  rgba = codec.encode(_image(30, 40, 4), version=2)
  with pytest.raises(aec.CodecError, match='channels 1, 3'):
    codec.decode(_with_crc(rgba[:3] + b'\x01' + rgba[4:-4]))


@pytest.mark.slow
def test_tiled_coding_gives_the_whole_image_result():
  whole = _codec()
  tiled = _codec()
  tiled.plan = tiling.Tiling(mode='always', tile_size=8, blend=0)
  image = _image(150, 230, seed=4)
  x = whole._padded(image)
  continuous = np.asarray(whole._latent(whole.variables, x[None]))[0]
  np.testing.assert_allclose(tiled._run(tiled._latent, x, tiled.multiple, 1),
                             continuous, atol=1e-4)
  assert tiled.last_decision.tiled and tiled.last_decision.exact
  q = whole.latent(image)['y']
  np.testing.assert_allclose(tiled.reconstruct(q), whole.reconstruct(q), atol=1e-4)
  assert tiled.last_decision.tiled
  # Files differ only where a latent lies within round-off of a rounding edge.
  assert np.mean(tiled.latent(image)['y'] == q) > 0.999
  decoded = tiled.decode(tiled.encode(image)).astype(int)
  assert np.abs(decoded - whole.decode(whole.encode(image)).astype(int)).max() <= 1


@pytest.fixture(scope='module')
def valid(codec):
  return codec.encode(_image(40, 56))


@pytest.fixture(scope='module')
def hyper_valid(hyper_codec):
  return hyper_codec.encode(_image(40, 56))


def _with_crc(body: bytes) -> bytes:
  return body + struct.pack('<I', zlib.crc32(body))


def test_named_errors(codec, valid):
  cases = {
      b'': 'not an ae_research',
      b'PNG\x89' + valid[4:]: 'not an ae_research',
      valid[:3] + b'\x07' + valid[4:]: 'version 7',
      valid[:-1]: 'checksum',
      valid + b'\x00': 'checksum',
      valid[:10]: 'truncated',
      _with_crc(valid[:-4] + b'\x01'): 'after the last field',
  }
  for data, message in cases.items():
    with pytest.raises(aec.CodecError, match=message):
      codec.decode(data)
  other = _codec(seed=1)
  with pytest.raises(aec.CodecError, match='made by model'):
    other.decode(valid)


def test_every_truncation_is_an_error(codec, valid):
  for n in range(len(valid)):
    with pytest.raises(aec.CodecError):
      codec.decode(valid[:n])


_FUZZ = hypothesis.settings(max_examples=200, deadline=None, derandomize=True,
                            suppress_health_check=list(hypothesis.HealthCheck))


@_FUZZ
@hypothesis.given(st.binary(max_size=200))
def test_fuzz_random_bytes(codec, data):
  for d in (data, b'AEC\x01' + data, b'AEC\x01' + codec.id + data):
    with pytest.raises(aec.CodecError):
      codec.decode(d)


@pytest.mark.slow
@_FUZZ
@hypothesis.given(st.data())
def test_fuzz_mutated_files(codec, valid, data):
  mutated = bytearray(valid)
  for _ in range(data.draw(st.integers(1, 4))):
    kind = data.draw(st.sampled_from(['flip', 'set', 'insert', 'delete']))
    i = data.draw(st.integers(0, len(mutated) - 1))
    if kind == 'flip':
      mutated[i] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == 'set':
      mutated[i] = data.draw(st.integers(0, 255))
    elif kind == 'insert':
      mutated.insert(i, data.draw(st.integers(0, 255)))
    elif len(mutated) > 1:
      del mutated[i]
  if bytes(mutated) == valid:
    return
  with pytest.raises(aec.CodecError):
    codec.decode(bytes(mutated))


@pytest.mark.slow
@_FUZZ
@hypothesis.given(st.data())
def test_fuzz_mutations_behind_a_valid_checksum(codec, valid, data):
  """Past the checksum, the parser and the entropy decoder still never
  crash: a mutated body either is refused or decodes to an image of the
  size its header states."""
  _mutate_behind_checksum(codec, valid, data)


@pytest.mark.slow
@_FUZZ
@hypothesis.given(st.data())
def test_fuzz_hyperprior_files_behind_a_valid_checksum(hyper_codec, hyper_valid, data):
  """The same for version 3 files with a hyper latent (two coded latents)."""
  _mutate_behind_checksum(hyper_codec, hyper_valid, data)


def _mutate_behind_checksum(codec, valid, data):
  body = bytearray(valid[:-4])
  for _ in range(data.draw(st.integers(1, 3))):
    i = data.draw(st.integers(12, len(body) - 1))  # Magic, version, id kept.
    body[i] = data.draw(st.integers(0, 255))
  try:
    header = codec.parse(_with_crc(bytes(body)))
  except aec.CodecError:
    return
  if header['height'] * header['width'] > 256 * 256:
    return  # Well formed, but too big to decode quickly here.
  try:
    image = codec.decode(_with_crc(bytes(body)))
  except aec.CodecError:
    return
  assert image.shape == (header['height'], header['width'], header['channels'])


_CHILD = """
import hashlib, os, pickle, sys
import numpy as np
sys.path.insert(0, 'tests')
import test_codec
from ae_research import aec, tiling
kind, params_path, out, paths = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with open(params_path, 'rb') as f:
  params = pickle.load(f)
if kind == 'variable':  # One model for every rate, at a quality between levels.
  codec = aec.Codec.from_config(test_codec._config('variable,smoke'), params)
  quality = 61.3
else:
  codec = aec.Codec.from_config(test_codec._config(model='mean_scale'), params)
  quality = None
if out != '-':
  with open(out, 'wb') as f:
    f.write(codec.encode(test_codec._image(45, 60, seed=7), quality=quality))
for path in paths:
  with open(path, 'rb') as f:
    data = f.read()
  for plan in (tiling.Tiling(), tiling.Tiling(mode='always', tile_size=16, blend=0)):
    codec.plan = plan
    _, y_hat = codec.decode_latent(data)
    image = codec.decode(data)
    print(os.path.basename(path), hashlib.sha256(y_hat.tobytes()).hexdigest(),
          image.tobytes().hex())
"""

_CONFIGURATIONS = {
    'one thread': dict(XLA_FLAGS='--xla_cpu_multi_thread_eigen=false '
                                 'intra_op_parallelism_threads=1',
                       OPENBLAS_NUM_THREADS='1', OMP_NUM_THREADS='1'),
    'thread pool, 4 devices': dict(XLA_FLAGS='--xla_force_host_platform_device_count=4',
                                   OPENBLAS_NUM_THREADS='2', OMP_NUM_THREADS='2'),
    # Whatever device this machine gives jax (an accelerator where there is
    # one: benchmarks/device_check.sh runs this test on a GPU).
    'default device': dict(JAX_PLATFORMS=os.environ.get('JAX_PLATFORMS', '')),
}


def _child(configuration, *args):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', **_CONFIGURATIONS[configuration]}
  out = subprocess.run([sys.executable, '-c', _CHILD, *args], env=env, cwd=_ROOT,
                       capture_output=True, text=True)
  assert out.returncode == 0, out.stderr[-3000:]
  return [line.split() for line in out.stdout.splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.parametrize('kind', ['mean_scale', 'variable'])
def test_files_decode_to_the_same_latent_under_other_configurations(tmp_path, hyper_codec,
                                                                    kind):
  """Encoded under one XLA/BLAS configuration, decoded under another, whole
  and in tiles: the same y_hat bit for bit, and the same image up to the
  synthesis network's rounding (a fixed-rate and a variable-rate model)."""
  source = _params(0, (), 'variable,smoke') if kind == 'variable' else hyper_codec.params
  params = str(tmp_path / 'params.pickle')
  with open(params, 'wb') as f:
    pickle.dump(jax.tree.map(np.asarray, source), f)
  one, pool = (str(tmp_path / f'{i}.aec') for i in range(2))
  _child('one thread', kind, params, one)
  rows = _child('thread pool, 4 devices', kind, params, pool, one, pool)
  rows += _child('one thread', kind, params, '-', one, pool)
  rows += _child('default device', kind, params, '-', one, pool)
  assert len(rows) == 12  # 2 files x 3 configurations x whole and tiles.
  for name in ('0.aec', '1.aec'):
    mine = [r for r in rows if r[0] == name]
    assert len({r[1] for r in mine}) == 1  # y_hat, bit for bit.
    images = [np.frombuffer(bytes.fromhex(r[2]), np.uint8).astype(int) for r in mine]
    for image in images[1:]:
      assert np.abs(image - images[0]).max() <= 1


def test_table_boundaries_decode_exactly(hyper_codec):
  """A hyper synthesis whose scales land exactly on the coding scales'
  boundaries (and means on halves): the decoder finds the tables and means
  the encoder used, and the file decodes to the encoder's latent."""
  codec = hyper_codec
  params = jax.tree.map(np.asarray, codec.params)
  last = dict(params['hyper_synthesis_convs_2'])
  k = codec.latent_features
  table = codec.scale_table
  rng = np.random.default_rng(0)
  on_boundary = rng.choice(table[:-1], k).astype(np.float32) / 1024.0
  halves = (rng.integers(-40, 40, k) + 0.5).astype(np.float32)
  last['kernel'] = np.zeros_like(last['kernel'])
  last['bias'] = np.concatenate([on_boundary, halves])
  params['hyper_synthesis_convs_2'] = last
  boundary = aec.Codec(codec.model, {'params': params})
  image = _image(64, 64, seed=9)
  symbols = boundary.latent(image)
  np.testing.assert_array_equal(
      boundary.scale_table[symbols['table']],
      np.broadcast_to(np.round(on_boundary * 1024).astype(np.int64), symbols['table'].shape))
  np.testing.assert_array_equal(symbols['means'], np.broadcast_to(halves, symbols['means'].shape))
  _, y_hat = boundary.decode_latent(boundary.encode(image))
  np.testing.assert_array_equal(y_hat, (symbols['y'] + symbols['means']).astype(np.float32))


def test_compress_and_decompress_need_only_a_model_and_its_variables(hyper_codec):
  model = compression.ScaleHyperprior(**{  # Built apart from any config.
      k: getattr(hyper_codec.model, k) for k in (
          'features', 'latent_features', 'hyper_features', 'mean_scale')})
  variables = {'params': hyper_codec.params}
  image = _image(20, 30)
  data = aec.compress(model, variables, image)
  np.testing.assert_array_equal(aec.decompress(model, variables, data),
                                aec.Codec(model, variables).decode(data))
  # The same image as the configured codec's (whose id differs).
  np.testing.assert_array_equal(aec.decompress(model, variables, data),
                                hyper_codec.decode(hyper_codec.encode(image)))
  other = {'params': jax.tree.map(lambda p: p * 1.01, hyper_codec.params)}
  with pytest.raises(aec.CodecError, match='made by model'):
    aec.decompress(model, other, data)


def test_a_run_from_before_the_hyperprior_fields_still_opens(tmp_path):
  """Its stored config.compress has no hyper_features: the default, and the
  same model id (its files still decode)."""
  config = compress_config.get_config('smoke')
  workdir = str(tmp_path / 'run')
  workdir_lib.check_workdir(config, workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path) as f:
    stored = json.load(f)
  del stored['compress']['hyper_features']
  with open(path, 'w') as f:
    json.dump(stored, f)
  workdir_lib.check_workdir(config, workdir)  # Resumes: no mismatch.
  workdir_lib.check_workdir(config, workdir, at_eval=True)
  loaded = workdir_lib.load_config(workdir)
  params = {'w': np.ones(3, np.float32)}
  assert aec.model_id(loaded, params) == aec.model_id(config, params)
  config.compress.hyper_features = 16  # Not the factorized model's: same id.
  assert aec.model_id(config, params) == aec.model_id(loaded, params)
  config.compress.lmbda = 0.5
  with pytest.raises(workdir_lib.WorkdirMismatch, match='config.compress'):
    workdir_lib.check_workdir(config, workdir)
