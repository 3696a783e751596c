"""Entropy models: the layers that turn a latent into likelihoods (a rate),
and the coding tables a range coder codes its integers with.

Two linen layers another researcher can put on their own latent:

- `EntropyBottleneck(channels)`: a learned density per channel (Balle et
  al. 2018, appendix 6.1). `y_hat, likelihoods = eb(y, train)`.
- `GaussianConditional()`: a Gaussian per element whose scale (and mean) is
  given, convolved with a unit box (Balle 2018, Minnen 2018).
  `y_hat, likelihoods = gc(y, scales, means, train)`.

Both add uniform noise in training (the same density as rounding, but
smooth) and round at test, optionally around an offset (the mean, or a
given quantization offset). Likelihoods are float32 and bounded below by
`LIKELIHOOD_BOUND`; `bits(likelihoods)` sums -log2 of any dict of them.

Coding tables, and why a file decodes the same everywhere
-----------------------------------------------------------
A range decoder must use exactly the probabilities the encoder used: one
bit of difference in one table breaks every symbol after it. The tables
here are computed on the host, from the parameters (float32, stored
bit-exactly in the checkpoint) and from constants, by `Exact`, a small
numpy library that uses only operations IEEE 754 rounds correctly and
deterministically (+, -, *, / on float64 arrays, one ufunc at a time so
nothing is fused), exact ones (floor, frexp, ldexp, comparisons,
`math.fsum`'s correctly rounded sum) and sums over small axes written out
in a fixed order. exp, log, tanh, softplus, sigmoid and erfc are built from
those (range reduction and polynomials), instead of calling the platform's
libm or numpy's SIMD loops, whose last bits differ between CPUs and library
versions. So the same parameters give the same float64 tables, bit for bit,
on any machine with IEEE 754 doubles whatever its accelerator, thread count
or XLA flags: no accelerator and no threaded reduction is involved. The
tables then go to constriction's `Categorical` (its deterministic
quantization to integer frequencies; the constriction version is pinned).

The Gaussian tables depend on constants only: `SCALE_TABLE` holds 64 scales
from 0.11 to 256 as fixed-point integers (`SCALE_FRACTION_BITS`), each with
the pmf of a zero-mean Gaussian of that scale on the integers from -R to R
(R = ceil(`TAIL_SIGMAS` * scale)), plus one escape for values outside.
Which table an element uses, and its mean, must also be computed
identically by encoder and decoder: the hyperprior models compute them
with an integer network (`compression.IntegerHyperSynthesis`), and
`scale_indexes` compares integers.
"""

import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

LIKELIHOOD_BOUND = 1e-9
# Coding tables of an EntropyBottleneck cover each channel's symbols up to
# this tail mass; rarer values are escaped (coded apart, exactly).
TAIL_MASS = 1e-6
MAX_HALF_RANGE = 255
# Gaussian tables: scales (fixed point), the table's half range in scales.
SCALE_BOUND = 0.11
SCALE_FRACTION_BITS = 10
NUM_SCALES = 64
TAIL_SIGMAS = 5
# The least probability a coding table gives a value it covers.
MIN_PROBABILITY = 1e-12


def bits(likelihoods: dict[str, jax.Array]) -> jax.Array:
  """Bits per example [B]: -log2 of every likelihood, summed over each
  latent's non-batch axes and over the latents."""
  total = 0.0
  for name in sorted(likelihoods):
    p = likelihoods[name]
    total = total + -jnp.sum(jnp.log2(p.astype(jnp.float32)),
                             axis=tuple(range(1, p.ndim)))
  return total


def _softplus_inverse(x: float) -> float:
  return math.log(math.expm1(x))


def _noise_or_round(module: nn.Module, y: jax.Array, train: bool,
                    offset: Optional[jax.Array]) -> jax.Array:
  if train:
    return y + jax.random.uniform(module.make_rng('noise'), y.shape,
                                  minval=-0.5, maxval=0.5)
  if offset is None:
    return jnp.round(y)
  return jnp.round(y - offset) + offset


class EntropyBottleneck(nn.Module):
  """A learned density per latent channel (Balle et al. 2018, appendix 6.1).

  Each channel's cumulative distribution is a small monotone network of the
  scalar latent (softplus-positive matrices, tanh-bounded residual factors);
  the probability of an integer bin is the difference of the CDF at its two
  edges.

    y_hat, likelihoods = eb.apply(variables, y, train=True, rngs={'noise': key})
    y_hat, likelihoods = eb.apply(variables, y)            # rounded
  """
  channels: int
  filters: Sequence[int] = (3, 3, 3)
  init_scale: float = 10.0

  def setup(self):
    dims = (1,) + tuple(self.filters) + (1,)
    scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
    c = self.channels
    matrices, biases, factors = [], [], []
    for i in range(len(dims) - 1):
      value = _softplus_inverse(1.0 / scale / dims[i + 1])
      shape = (c, dims[i + 1], dims[i])
      matrices.append(self.param(f'matrix_{i}', lambda _, s, v=value: jnp.full(s, v),
                                 shape))
      biases.append(self.param(
          f'bias_{i}', lambda k, s: jax.random.uniform(k, s, minval=-0.5, maxval=0.5),
          (c, dims[i + 1], 1)))
      if i < len(dims) - 2:
        factors.append(self.param(f'factor_{i}', nn.initializers.zeros,
                                  (c, dims[i + 1], 1)))
    self.matrices, self.biases, self.factors = matrices, biases, factors

  def cdf_logits(self, x_CxN: jax.Array) -> jax.Array:
    """The logit of channel c's CDF at the N values x[c]: [C, N]."""
    x = x_CxN[:, None, :]
    for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
      x = jnp.einsum('coi,cin->con', nn.softplus(m), x) + b
      if i < len(self.factors):
        x = x + jnp.tanh(self.factors[i]) * jnp.tanh(x)
    return x[:, 0, :]

  def likelihood(self, y_hat_BxhxwxC: jax.Array) -> jax.Array:
    """P(the unit bin around y_hat) under each channel's density, bounded
    below; float32 whatever y_hat's dtype."""
    shape = y_hat_BxhxwxC.shape
    # The batch axis leads the merged N, so a batch-sharded y's sharding
    # carries over (jax infers it, even under an Explicit mesh).
    y = y_hat_BxhxwxC.astype(jnp.float32).reshape(-1, shape[-1]).T  # [C, N]
    lower = self.cdf_logits(y - 0.5)
    upper = self.cdf_logits(y + 0.5)
    # In a tail the difference is taken on the side where the two sigmoids
    # are not both near 1.
    sign = -jnp.sign(lower + upper)
    p = jnp.abs(nn.sigmoid(sign * upper) - nn.sigmoid(sign * lower))
    return jnp.maximum(p, LIKELIHOOD_BOUND).T.reshape(shape)

  def __call__(self, y: jax.Array, train: bool = False,
               offset: Optional[jax.Array] = None) -> tuple[jax.Array, jax.Array]:
    """(y_hat, likelihoods): y plus uniform noise in training, else y
    rounded (around `offset`, broadcast against y, if given)."""
    y_hat = _noise_or_round(self, y.astype(jnp.float32), train, offset)
    return y_hat, self.likelihood(y_hat)


def standard_normal_cdf(x: jax.Array) -> jax.Array:
  return 0.5 * jax.scipy.special.erfc(-x * (2.0 ** -0.5))


class GaussianConditional(nn.Module):
  """Each element is a Gaussian of the given scale (and mean) convolved with
  the unit box; scales are bounded below by `scale_bound`. No parameters.

    y_hat, likelihoods = GaussianConditional().apply({}, y, scales, means)
  """
  scale_bound: float = SCALE_BOUND

  def likelihood(self, y_hat: jax.Array, scales: jax.Array,
                 means: Optional[jax.Array] = None) -> jax.Array:
    v = y_hat if means is None else y_hat - means
    v = jnp.abs(v.astype(jnp.float32))
    s = jnp.maximum(scales.astype(jnp.float32), self.scale_bound)
    # Both edges on the lower tail, where the CDF is accurate.
    p = standard_normal_cdf((0.5 - v) / s) - standard_normal_cdf((-0.5 - v) / s)
    return jnp.maximum(p, LIKELIHOOD_BOUND)

  def __call__(self, y: jax.Array, scales: jax.Array,
               means: Optional[jax.Array] = None,
               train: bool = False) -> tuple[jax.Array, jax.Array]:
    """(y_hat, likelihoods): y plus uniform noise in training, else rounded
    around the means."""
    y = y.astype(jnp.float32)
    offset = None if means is None else means.astype(jnp.float32)
    y_hat = _noise_or_round(self, y, train, offset)
    return y_hat, self.likelihood(y_hat, scales, means)


# ---------------------------------------------------------------------------
# Exact: the same float64 bits on any IEEE 754 machine.


class Exact:
  """Elementwise float64 functions from correctly rounded operations only
  (see the module docstring). Accurate to a few units in the last place;
  what matters for coding is that they are reproducible."""

  _LN2_HI = 6.93147180369123816490e-01  # ln 2 split so k * _LN2_HI is exact.
  _LN2_LO = 1.90821492927058770002e-10
  _INV_LN2 = 1.44269504088896338700e+00
  _SQRT_HALF = 0.70710678118654752440

  @staticmethod
  def exp(x) -> np.ndarray:
    """e**x, x clipped to [-700, 700] (results stay normal numbers)."""
    x = np.clip(np.asarray(x, np.float64), -700.0, 700.0)
    k = np.floor(x * Exact._INV_LN2 + 0.5)
    r = (x - k * Exact._LN2_HI) - k * Exact._LN2_LO  # |r| <= 0.35
    p = np.ones_like(r)
    for n in range(17, 0, -1):  # Horner form of the Taylor series.
      p = 1.0 + (r * p) / float(n)
    return np.ldexp(p, k.astype(np.int64))

  @staticmethod
  def log(x) -> np.ndarray:
    """The natural logarithm of positive finite x."""
    m, e = np.frexp(np.asarray(x, np.float64))  # x = m * 2**e, m in [0.5, 1)
    low = m < Exact._SQRT_HALF
    m = np.where(low, 2.0 * m, m)  # [sqrt(1/2), sqrt(2))
    e = np.where(low, e - 1, e).astype(np.float64)
    s = (m - 1.0) / (m + 1.0)  # |s| <= 0.172
    s2 = s * s
    q = np.full_like(s, 1.0 / 33.0)
    for j in range(15, -1, -1):  # atanh(s) / s = sum s2**j / (2j + 1)
      q = 1.0 / float(2 * j + 1) + s2 * q
    return e * Exact._LN2_HI + (e * Exact._LN2_LO + (2.0 * s) * q)

  @staticmethod
  def softplus(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.maximum(x, 0.0) + Exact.log(1.0 + Exact.exp(-np.abs(x)))

  @staticmethod
  def sigmoid(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = Exact.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))

  @staticmethod
  def tanh(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = Exact.exp(-2.0 * np.abs(x))
    return np.sign(x) * ((1.0 - e) / (1.0 + e))

  @staticmethod
  def erfc(x) -> np.ndarray:
    """The complementary error function, to 1.2e-7 relative everywhere
    (Numerical Recipes' Chebyshev fit)."""
    x = np.asarray(x, np.float64)
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = 0.17087277
    for c in (-0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
              0.09678418, 0.37409196, 1.00002368, -1.26551223):
      poly = c + t * poly
    ans = t * Exact.exp(-z * z + poly)
    return np.where(x >= 0, ans, 2.0 - ans)

  @staticmethod
  def matvec(m_CxOxI: np.ndarray, x_CxIxN: np.ndarray) -> np.ndarray:
    """sum_i m[c, o, i] * x[c, i, n], the terms added in order of i."""
    out = m_CxOxI[:, :, 0, None] * x_CxIxN[:, None, 0, :]
    for i in range(1, m_CxOxI.shape[2]):
      out = out + m_CxOxI[:, :, i, None] * x_CxIxN[:, None, i, :]
    return out


# ---------------------------------------------------------------------------
# EntropyBottleneck tables.


def _cdf_logits(p: dict, x_CxN: np.ndarray, exact: bool) -> np.ndarray:
  """EntropyBottleneck.cdf_logits on the host in float64."""
  softplus = Exact.softplus if exact else (lambda v: np.logaddexp(0.0, v))
  tanh = Exact.tanh if exact else np.tanh
  x = x_CxN[:, None, :]
  i = 0
  while f'matrix_{i}' in p:
    m = softplus(np.asarray(p[f'matrix_{i}'], np.float64))
    b = np.asarray(p[f'bias_{i}'], np.float64)
    x = (Exact.matvec(m, x) if exact else np.einsum('coi,cin->con', m, x)) + b
    if f'factor_{i}' in p:
      x = x + tanh(np.asarray(p[f'factor_{i}'], np.float64)) * tanh(x)
    i += 1
  return x[:, 0, :]


def bottleneck_tables(params: Any, exact: bool = True
                      ) -> tuple[np.ndarray, list[np.ndarray]]:
  """(offsets [C], pmfs) of an EntropyBottleneck's parameters.

  Channel c codes symbol s as index s - offsets[c] when that lies in
  [0, len(pmfs[c]) - 1), with probability pmfs[c][index]; the last index is
  the escape, for values outside the table (coded apart), whose probability
  is the mass outside it. `exact` (the default): computed with `Exact`, the
  same on every machine; False: numpy's own functions, the tables of file
  format versions 1 and 2.
  """
  p = {k: np.asarray(v) for k, v in params.items()}
  channels = p['matrix_0'].shape[0]
  grid = np.arange(-MAX_HALF_RANGE, MAX_HALF_RANGE + 1, dtype=np.float64)
  edges = np.concatenate([grid - 0.5, grid[-1:] + 0.5])
  logits = _cdf_logits(p, np.broadcast_to(edges, (channels, len(edges))), exact)
  cdf = Exact.sigmoid(logits) if exact else 0.5 * (1.0 + np.tanh(0.5 * logits))
  offsets, pmfs = np.zeros(channels, np.int64), []
  for c in range(channels):
    # The bins whose mass is not all in one of the two tails.
    inside = np.nonzero((cdf[c, 1:] > TAIL_MASS / 2) &
                        (cdf[c, :-1] < 1 - TAIL_MASS / 2))[0]
    lo, hi = (inside[0], inside[-1]) if len(inside) else (MAX_HALF_RANGE,) * 2
    offsets[c] = int(grid[lo])
    mass = np.maximum(np.diff(cdf[c, lo:hi + 2]), 0.0)
    if exact:
      mass = np.maximum(mass, MIN_PROBABILITY)
      escape = max(1.0 - math.fsum(mass.tolist()), MIN_PROBABILITY)
    else:
      escape = max(1.0 - mass.sum(), 0.0)
    pmfs.append(np.concatenate([mass, [escape]]))
  return offsets, pmfs


# ---------------------------------------------------------------------------
# Gaussian tables.


def scale_table_fixed() -> np.ndarray:
  """The coding scales as integers (scale * 2**SCALE_FRACTION_BITS), log
  spaced from SCALE_BOUND to 256, increasing."""
  lo, hi = Exact.log(SCALE_BOUND), Exact.log(256.0)
  steps = np.arange(NUM_SCALES, dtype=np.float64) / float(NUM_SCALES - 1)
  scales = Exact.exp(lo + (hi - lo) * steps)
  return np.round(np.ldexp(scales, SCALE_FRACTION_BITS)).astype(np.int64)


def scale_indexes(scales_fixed: np.ndarray, table: np.ndarray) -> np.ndarray:
  """The table each element codes with: the smallest coding scale at least
  its scale (both integers, scale * 2**SCALE_FRACTION_BITS), the last for
  larger ones. Integer comparisons: the same everywhere."""
  scales_fixed = np.asarray(scales_fixed, np.int64)
  thresholds = np.asarray(table[:-1], np.int64)  # Ascending.
  # How many thresholds lie below each scale: one binary search apiece.
  return np.searchsorted(thresholds, scales_fixed, side='left').astype(np.int64)


def scale_index_lookup(table: np.ndarray) -> np.ndarray:
  """`scale_indexes` of every integer scale from 0 to one past the last
  threshold (uint8): a scale clipped to that range indexes it to its
  table, in one gather."""
  thresholds = np.asarray(table[:-1], np.int64)
  return scale_indexes(np.arange(int(thresholds[-1]) + 2), table).astype(np.uint8)


def gaussian_tables(table: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
  """(half_ranges [S], pmfs) for the coding scales `table`: table s codes
  symbol q (an integer, the value minus its mean, rounded) as index
  q + half_ranges[s] when |q| <= half_ranges[s], with probability
  pmfs[s][index]; the last index is the escape."""
  one = 1 << SCALE_FRACTION_BITS
  halves = (TAIL_SIGMAS * np.asarray(table, np.int64) + one - 1) // one
  pmfs = []
  for fixed, half in zip(table, halves):
    sigma = np.ldexp(float(fixed), -SCALE_FRACTION_BITS)
    k = np.arange(0, half + 1, dtype=np.float64)
    # P(|q| = k) per sign, from the upper tail: erfc((k -+ 0.5) / (s sqrt 2)) / 2.
    upper = 0.5 * Exact.erfc((k + 0.5) / (sigma * math.sqrt(2.0)))
    lower = 0.5 * Exact.erfc((k - 0.5) / (sigma * math.sqrt(2.0)))
    side = np.maximum(lower - upper, MIN_PROBABILITY)
    side[0] = max(1.0 - 2.0 * upper[0], MIN_PROBABILITY)  # q = 0, both halves.
    pmf = np.concatenate([side[:0:-1], side])
    escape = max(2.0 * upper[-1], MIN_PROBABILITY)
    pmfs.append(np.concatenate([pmf, [escape]]))
  return halves, pmfs
