"""The codec: exact round trips, real file sizes, and clear errors for every
malformed file (fuzzed with hypothesis)."""

import struct
import zlib

import constriction
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae_research import aec, tiling
from ae_research import compression
from configs import compress as compress_config


def _codec(variant='smoke', seed=0, **compress):
  config = compress_config.get_config(variant)
  config.model.features = (8, 8, 8)
  for k, v in compress.items():
    config.compress[k] = v
  model = compression.from_config(config)
  variables = model.init({'params': jax.random.key(seed), 'noise': jax.random.key(1)},
                         jnp.zeros((1, 16, 16, 3)))
  # Spread the latent over many symbols, as a trained model's is.
  params = jax.tree_util.tree_map_with_path(
      lambda path, p: p * 4.0 if 'to_latent' in jax.tree_util.keystr(path) else p,
      variables['params'])
  return aec.Codec(config, params)


@pytest.fixture(scope='module')
def codec():
  return _codec()


def _image(h, w, c=3, seed=0):
  rng = np.random.default_rng(seed)
  small = rng.random((max(h // 8, 1), max(w // 8, 1), c))
  smooth = np.asarray(jax.image.resize(jnp.asarray(small), (h, w, c), 'linear'))
  return np.clip((smooth + 0.05 * rng.standard_normal((h, w, c))) * 255, 0,
                 255).astype(np.uint8)


@pytest.mark.parametrize('shape', [(40, 56, 3), (37, 53, 3), (5, 3, 3), (30, 20, 1)])
def test_decode_is_the_models_reconstruction(codec, shape):
  image = _image(*shape)
  data = codec.encode(image)
  assert data == codec.encode(image)  # Deterministic encoder.
  decoded = codec.decode(data)
  assert decoded.dtype == np.uint8 and decoded.shape == image.shape
  np.testing.assert_array_equal(codec.decode(data), decoded)
  # Computed apart: the model's inference output, cropped and rounded.
  padded = codec._padded(image)
  out = np.asarray(codec.model.apply(codec.variables, jnp.asarray(padded[None]))['output'])[0]
  want = np.round(out[:shape[0], :shape[1]] * 255).astype(np.uint8)
  if shape[-1] == 1:
    want = np.round(want.astype(np.float32) @ np.array([0.299, 0.587, 0.114],
                                                       np.float32))[..., None]
  np.testing.assert_array_equal(decoded, want)


def test_file_size_is_close_to_the_estimated_rate(codec):
  image = _image(96, 128)
  data = codec.encode(image)
  estimated = codec.estimated_bits(image)
  header = 8 * 32  # Magic, id, sizes, CRC.
  assert estimated > 1000  # The test means something.
  assert 0.97 * estimated < 8 * len(data) < 1.03 * estimated + header


def test_values_outside_the_tables_are_escaped():
  codec = _codec()
  image = _image(48, 64)
  reference = codec.decode(codec.encode(image))
  # Shrink every table to the symbol 0: every other value now escapes.
  codec.offsets = np.zeros_like(codec.offsets)
  codec.sizes = [1] * len(codec.sizes)
  codec.entropy_models = [constriction.stream.model.Categorical(
      np.array([0.5, 0.5]), perfect=False)] * len(codec.sizes)
  data = codec.encode(image)
  header = codec.parse(data)
  assert len(header['escapes']) > 10
  np.testing.assert_array_equal(codec.decode(data), reference)


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


def test_version_1_files_still_decode(codec):
  data = codec.encode(_image(30, 40))
  old = _with_crc(data[:3] + b'\x01' + data[4:-4])
  np.testing.assert_array_equal(codec.decode(old), codec.decode(data))
  # Version 1 had no alpha.
  rgba = codec.encode(_image(30, 40, 4))
  with pytest.raises(aec.CodecError, match='channels 1, 3'):
    codec.decode(_with_crc(rgba[:3] + b'\x01' + rgba[4:-4]))


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
  q = whole.latent(image)
  np.testing.assert_allclose(tiled.reconstruct(q), whole.reconstruct(q), atol=1e-4)
  assert tiled.last_decision.tiled
  # Files differ only where a latent lies within round-off of a rounding edge.
  assert np.mean(tiled.latent(image) == q) > 0.999
  decoded = tiled.decode(tiled.encode(image)).astype(int)
  assert np.abs(decoded - whole.decode(whole.encode(image)).astype(int)).max() <= 1


@pytest.fixture(scope='module')
def valid(codec):
  return codec.encode(_image(40, 56))


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


_FUZZ = hypothesis.settings(max_examples=300, deadline=None, derandomize=True,
                            suppress_health_check=list(hypothesis.HealthCheck))


@_FUZZ
@hypothesis.given(st.binary(max_size=200))
def test_fuzz_random_bytes(codec, data):
  for d in (data, b'AEC\x01' + data, b'AEC\x01' + codec.id + data):
    with pytest.raises(aec.CodecError):
      codec.decode(d)


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


@_FUZZ
@hypothesis.given(st.data())
def test_fuzz_mutations_behind_a_valid_checksum(codec, valid, data):
  """Past the checksum, the parser and the entropy decoder still never
  crash: a mutated body either is refused or decodes to an image of the
  size its header states."""
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
