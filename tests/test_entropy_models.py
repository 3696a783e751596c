"""Entropy models: the layers' likelihoods, the coding tables, the exact
arithmetic they are computed with, and the integer hyper synthesis."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import special

from ae_research import compression, entropy_models
from ae_research.entropy_models import Exact


@pytest.mark.parametrize('name, reference, x', [
    ('exp', np.exp, np.linspace(-700, 700, 20001)),
    ('log', np.log, np.exp(np.linspace(-700, 700, 20001))),
    ('tanh', np.tanh, np.linspace(-40, 40, 20001)),
    ('sigmoid', special.expit, np.linspace(-40, 40, 20001)),
    ('softplus', lambda v: np.logaddexp(0.0, v), np.linspace(-40, 40, 20001)),
])
def test_exact_functions_are_accurate(name, reference, x):
  got, want = getattr(Exact, name)(x), reference(x)
  np.testing.assert_allclose(got, want, rtol=4e-15, atol=4e-15)


def test_exact_erfc_is_within_its_stated_relative_error():
  x = np.linspace(-5, 25, 30001)
  np.testing.assert_allclose(Exact.erfc(x), special.erfc(x), rtol=1.2e-7)


@pytest.mark.parametrize('name', ['exp', 'log', 'tanh', 'sigmoid', 'softplus', 'erfc'])
def test_exact_functions_do_not_depend_on_the_array_layout(name):
  # numpy picks SIMD loops by alignment, stride and length; the bits must not
  # change with them.
  rng = np.random.default_rng(0)
  x = rng.uniform(0.01, 30.0, 4099) * (1 if name == 'log' else rng.choice([-1, 1], 4099))
  f = getattr(Exact, name)
  whole = f(x)
  pieces = np.concatenate([f(x[:1]), f(x[1:7]), f(x[7:])])
  strided = f(np.repeat(x, 3)[::3])
  reversed_ = f(x[::-1])[::-1]
  one_by_one = np.array([f(np.array([v]))[0] for v in x[:257]])
  for other in (pieces, strided, reversed_):
    np.testing.assert_array_equal(other.view(np.int64), whole.view(np.int64))
  np.testing.assert_array_equal(one_by_one.view(np.int64), whole[:257].view(np.int64))


def test_gaussian_conditional_is_a_distribution_over_the_integers():
  values = jnp.arange(-300, 301, dtype=jnp.float32)[:, None]
  scales = jnp.array([[0.05, 0.11, 0.7, 3.0, 40.0]])
  means = jnp.array([[0.0, 0.3, -1.6, 2.5, -7.2]])
  gc = entropy_models.GaussianConditional()
  for m in (None, means):
    p = gc.apply({}, values + (0.0 if m is None else m), scales, m,
                 method='likelihood')
    np.testing.assert_allclose(np.sum(p, axis=0), 1.0, atol=1e-4)
  # At test, values are rounded around the means.
  y = jnp.array([[0.2, 0.9, -1.1, 2.0, 5.0]])
  y_hat, _ = gc.apply({}, y, scales, means)
  np.testing.assert_allclose(y_hat, jnp.round(y - means) + means)
  noisy, _ = gc.apply({}, y, scales, means, train=True, rngs={'noise': jax.random.key(0)})
  assert float(jnp.max(jnp.abs(noisy - y))) <= 0.5 and not np.allclose(noisy, y)


def test_gaussian_tables_match_the_layer():
  table = entropy_models.scale_table_fixed()
  assert np.all(np.diff(table) > 0) and len(table) == entropy_models.NUM_SCALES
  halves, pmfs = entropy_models.gaussian_tables(table)
  gc = entropy_models.GaussianConditional()
  for s in (0, 20, 40, 63):
    scale = table[s] / 2.0 ** entropy_models.SCALE_FRACTION_BITS
    q = np.arange(-halves[s], halves[s] + 1, dtype=np.float32)
    p = gc.apply({}, jnp.asarray(q), jnp.full(q.shape, scale), method='likelihood')
    np.testing.assert_allclose(pmfs[s][:-1], p, atol=1e-6)
    assert abs(sum(pmfs[s]) - 1.0) < 1e-6
    assert pmfs[s][-1] < 1e-5  # The escape: the tails beyond 5 scales.


def test_scale_indexes_at_and_around_every_boundary():
  table = entropy_models.scale_table_fixed()
  at = entropy_models.scale_indexes(table, table)
  np.testing.assert_array_equal(at, np.arange(len(table)))  # Exactly a scale: its table.
  above = entropy_models.scale_indexes(table[:-1] + 1, table)
  np.testing.assert_array_equal(above, np.arange(1, len(table)))
  below = entropy_models.scale_indexes(table - 1, table)
  np.testing.assert_array_equal(below, np.maximum(np.arange(len(table)), 0))
  extremes = entropy_models.scale_indexes(np.array([-5, 0, 10 ** 9]), table)
  np.testing.assert_array_equal(extremes, [0, 0, len(table) - 1])
  # The table a scale codes with never has a smaller scale than it.
  s = np.random.default_rng(0).integers(0, table[-1], 10000)
  i = entropy_models.scale_indexes(s, table)
  assert np.all(table[i] >= s) and np.all((i == 0) | (table[i - 1] < s))


def _hyper(mean_scale, hyper_features=6, latent_features=5, seed=0):
  model = compression.ScaleHyperprior(features=(8,), latent_features=latent_features,
                                      hyper_features=hyper_features,
                                      mean_scale=mean_scale)
  v = model.init({'params': jax.random.key(seed), 'noise': jax.random.key(1)},
                 jnp.zeros((1, 8, 8, 3)))
  return model, v['params']


@pytest.mark.slow
@pytest.mark.parametrize('mean_scale', [False, True])
def test_integer_hyper_synthesis_follows_the_float_network(mean_scale):
  model, params = _hyper(mean_scale)
  hs = compression.IntegerHyperSynthesis(model, params)
  z = np.random.default_rng(1).integers(-4, 5, (3, 5, 6))
  scales, means = hs(z)
  assert scales.dtype == np.int64 and scales.shape == (12, 20, 5)
  out = np.asarray(model.apply({'params': params}, jnp.asarray(z[None], jnp.float32),
                               method='hyper_synthesis'))[0]
  one = 2.0 ** hs.FRACTION_BITS
  np.testing.assert_allclose(scales / one, out[..., :5], atol=4 / one)
  if mean_scale:
    np.testing.assert_allclose(means / one, out[..., 5:], atol=4 / one)
  else:
    assert means is None and scales.min() >= 0


def _int64_reference(hs, z):
  """The same layers in numpy int64 (exact integer arithmetic, no BLAS)."""
  limit = hs.ACTIVATION_LIMIT
  x = np.clip(z.astype(np.int64), -limit, limit)
  for layer in hs.layers:
    kernel = layer['kernel'].astype(np.int64)
    kh, kw = kernel.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x, ((top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), (0, 1))
    acc = np.einsum('hwcij,ijco->hwo', windows, kernel) + layer['bias'].astype(np.int64)
    shift = layer['shift']
    x = acc >> shift if shift >= 0 else acc << -shift  # Floor division.
    if layer['upsample']:
      h, w, c = x.shape
      x = x.reshape(h, w, 2, 2, c // 4).transpose(0, 2, 1, 3, 4).reshape(2 * h, 2 * w, c // 4)
    x = np.clip(x, 0 if layer['relu'] else -limit, limit)
  return x


@pytest.mark.slow
@pytest.mark.parametrize('mean_scale', [False, True])
def test_integer_hyper_synthesis_is_exact_integer_arithmetic(mean_scale):
  model, params = _hyper(mean_scale)
  hs = compression.IntegerHyperSynthesis(model, params)
  z = np.random.default_rng(5).integers(-40, 41, (4, 3, 6))
  got = np.concatenate([a for a in hs(z) if a is not None], -1)
  np.testing.assert_array_equal(got, _int64_reference(hs, z))


@pytest.mark.slow
def test_integer_hyper_synthesis_does_not_depend_on_the_blocking():
  model, params = _hyper(True)
  z = np.random.default_rng(2).integers(-6, 7, (7, 9, 6))
  want = compression.IntegerHyperSynthesis(model, params)(z)
  small = compression.IntegerHyperSynthesis(model, params)
  small.CHUNK = 1  # One row of im2col at a time.
  for a, b in zip(small(z), want):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('synthesis, copies, message', [
    (compression.IntegerHyperSynthesis, 20000, 'too large for exact integer arithmetic'),
    (compression.Int8HyperSynthesis, 1000, 'too large for exact int32 sums')])
def test_integer_hyper_syntheses_refuse_kernels_too_wide_to_be_exact(synthesis, copies,
                                                                     message):
  """Fan-ins of 9 x 6 x copies: past float64's 2**53 (the float64 fixed
  point) or int32 (the 8-bit one)."""
  model, params = _hyper(False)
  wide = jax.tree.map(lambda p: p, params)
  kernel = np.asarray(wide['hyper_synthesis_convs_2']['kernel'])
  wide['hyper_synthesis_convs_2'] = dict(
      wide['hyper_synthesis_convs_2'], kernel=np.tile(kernel, (1, 1, copies, 1)))
  with pytest.raises(ValueError, match=message):
    synthesis(model, wide)


def _int8_reference(hs, z):
  """Int8HyperSynthesis's arithmetic in numpy int64 (no XLA): int8 weights
  and activations, exact sums, per-image activation shifts."""
  x, fx, zero = np.clip(z.astype(np.int64), -127, 127), 0, 0
  lo = hs.MIN_EXPONENT
  for i, (kernel, table, fw) in enumerate(zip(hs.kernels, hs.bias_tables, hs.weight_exponents)):
    kernel, table, fw = (np.asarray(a, np.int64) for a in (kernel, table, fw))
    kh, kw = kernel.shape[:2]
    padded = np.pad(x, (((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)),
                    constant_values=zero)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), (0, 1))
    acc = np.einsum('hwcij,ijco->hwo', windows, kernel) + table[fx - lo]
    if i == len(hs.kernels) - 1:
      shift = hs.FRACTION_BITS - fw - fx
      out = np.where(shift >= 0, acc << np.maximum(shift, 0), acc >> np.maximum(-shift, 0))
      out = np.clip(out, -hs.OUTPUT_LIMIT, hs.OUTPUT_LIMIT)
      return out if hs.mean_scale else np.maximum(out, 0)
    acc = np.maximum(acc, 0)
    bits = np.array([int(v).bit_length() for v in acc.max(axis=(0, 1))])
    fo = int(np.clip(np.min(fw + fx + 8 - bits), lo, lo + len(hs.bias_tables[i + 1]) - 1))
    shift = fo - fw - fx
    x = np.where(shift >= 0, acc << np.maximum(shift, 0), acc >> np.maximum(-shift, 0))
    x = np.minimum(x, 255)
    h, w, c = x.shape
    x = x.reshape(h, w, 2, 2, c // 4).transpose(0, 2, 1, 3, 4).reshape(2 * h, 2 * w, c // 4)
    x, fx, zero = x - 128, fo, -128


@pytest.mark.parametrize('mean_scale', [False, True])
@pytest.mark.parametrize('shape', [(4, 3), (1, 1), (7, 9)])
def test_int8_hyper_synthesis_is_exact_integer_arithmetic(mean_scale, shape):
  """Against numpy int64 at several sizes, a few pixels included (where
  XLA's CPU int8 convolution went wrong), z past the int8 range too."""
  model, params = _hyper(mean_scale)
  hs = compression.Int8HyperSynthesis(model, params)
  z = np.random.default_rng(5).integers(-200, 201, (*shape, 6))
  got = np.concatenate([a for a in hs(z) if a is not None], -1)
  assert got.dtype == np.int64 and got.shape == (4 * shape[0], 4 * shape[1], 10 if mean_scale else 5)
  np.testing.assert_array_equal(got, _int8_reference(hs, z))


def test_int8_hyper_synthesis_does_not_depend_on_the_blocking():
  model, params = _hyper(True)
  z = np.random.default_rng(2).integers(-6, 7, (7, 9, 6))
  want = compression.Int8HyperSynthesis(model, params)(z)
  small = compression.Int8HyperSynthesis(model, params)
  small.CHUNK = 1  # One row of im2col at a time, through lax.map.
  for a, b in zip(small(z), want):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize('mean_scale', [False, True])
def test_int8_hyper_synthesis_follows_the_float_network(mean_scale):
  """8-bit weights and activations: within a few percent of the output's
  range of the float network, and as close as the float64 fixed point's
  outputs are to it, to within the 8-bit steps."""
  model, params = _hyper(mean_scale)
  z = np.random.default_rng(1).integers(-4, 5, (3, 5, 6))
  out = np.asarray(model.apply({'params': params}, jnp.asarray(z[None], jnp.float32),
                               method='hyper_synthesis'))[0]
  hs = compression.Int8HyperSynthesis(model, params)
  got = np.concatenate([a for a in hs(z) if a is not None], -1) / 2.0 ** hs.FRACTION_BITS
  err = np.abs(got - out)
  assert err.max() <= 0.03 * np.abs(out).max() + 2.0 ** -hs.FRACTION_BITS
  assert err.mean() <= 0.005 * np.abs(out).max()
