"""Compression models: an image to integer latents and back, with a rate.

Two models, both linen modules whose `__call__(x, train)` returns
{'output': reconstruction, 'bits': estimated bits per image [B]}:

- `FactorizedPrior` (Balle et al. 2017/2018): strided 5x5 convolutions with
  GDN, a latent coded with a learned per-channel density (`EntropyBottleneck`).
  Training adds uniform noise in place of rounding; the rate is the latent's
  -log2 likelihood, so lambda in `lambda * 255^2 * MSE + bpp` picks the
  quality.
- `QuantizedAutoencoder`: the plain bottleneck autoencoder; the latent is
  squashed to [0, 1] and quantized to `bits` bits (straight-through rounding),
  so the rate is the latent's size times `bits`.

Both expose the integer interface the codec (`ae_research.aec`) codes:

  symbols = model.apply(variables, x, method='quantize')      # int32 [B,h,w,M]
  x_hat = model.apply(variables, symbols, method='dequantize')  # [B,H,W,3]

and `coding_tables(params)` (numpy, host): per latent channel, the integer
range of its symbols and their probabilities.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ae_research import models

MODELS = ('factorized', 'bottleneck')
FACTORIZED_UPSAMPLE_KINDS = ('pixel_shuffle', 'transpose')
LIKELIHOOD_BOUND = 1e-9
# Coding tables cover each channel's symbols up to this tail mass; rarer
# values are escaped (coded apart, exactly).
TAIL_MASS = 1e-6
MAX_HALF_RANGE = 255


class GDN(nn.Module):
  """Generalized divisive normalization (Balle et al. 2016), or its inverse.

  y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2); beta and gamma stay
  non-negative by being stored as square roots. Computed in float32 (a
  bfloat16 input comes back bfloat16).
  """
  inverse: bool = False

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c, dtype, x = x.shape[-1], x.dtype, x.astype(jnp.float32)
    beta_sqrt = self.param('beta_sqrt', nn.initializers.ones, (c,))
    gamma_sqrt = self.param(
        'gamma_sqrt', lambda _, s: jnp.sqrt(0.1 * jnp.eye(s[0]) + 1e-6), (c, c))
    beta = (jnp.square(beta_sqrt) + 1e-6).reshape(1, 1, 1, c)
    gamma = jnp.square(gamma_sqrt)
    norm = jnp.sqrt(jnp.einsum('bhwj,ji->bhwi', jnp.square(x), gamma) + beta)
    return (x * norm if self.inverse else x / norm).astype(dtype)


def _softplus_inverse(x: float) -> float:
  return math.log(math.expm1(x))


class EntropyBottleneck(nn.Module):
  """A learned density per latent channel (Balle et al. 2018, appendix 6.1).

  Each channel's cumulative distribution is a small monotone network of the
  scalar latent (softplus-positive matrices, tanh-bounded residual factors);
  the probability of an integer bin is the difference of the CDF at its two
  edges.
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

  def __call__(self, y_BxhxwxC: jax.Array) -> jax.Array:
    """P(the unit bin around y) under each channel's density, bounded below;
    float32 whatever y's dtype."""
    shape = y_BxhxwxC.shape
    # The batch axis leads the merged N, so a batch-sharded y's sharding
    # carries over (jax infers it, even under an Explicit mesh).
    y = y_BxhxwxC.astype(jnp.float32).reshape(-1, shape[-1]).T  # [C, N]
    lower = self.cdf_logits(y - 0.5)
    upper = self.cdf_logits(y + 0.5)
    # In a tail the difference is taken on the side where the two sigmoids
    # are not both near 1.
    sign = -jnp.sign(lower + upper)
    p = jnp.abs(nn.sigmoid(sign * upper) - nn.sigmoid(sign * lower))
    return jnp.maximum(p, LIKELIHOOD_BOUND).T.reshape(shape)


def _bits(likelihood_BxhxwxC: jax.Array) -> jax.Array:
  return -jnp.sum(jnp.log2(likelihood_BxhxwxC), axis=(1, 2, 3))


class FactorizedPrior(nn.Module):
  """Balle et al.'s factorized-prior codec.

  Analysis: per entry f of `features` a strided 5x5 convolution to f channels
  and GDN, then a 3x3 convolution to `latent_features`. Synthesis mirrors it
  with inverse GDN and upsampling (`upsample`: pixel_shuffle or transpose).
  """
  features: Sequence[int] = (64, 64, 64, 64)
  latent_features: int = 96
  out_features: int = 3
  upsample: str = 'pixel_shuffle'

  def setup(self):
    if self.upsample not in FACTORIZED_UPSAMPLE_KINDS:
      raise ValueError(f'FactorizedPrior upsample={self.upsample!r}; choose '
                       f'one of {FACTORIZED_UPSAMPLE_KINDS}')
    self.analysis_convs = [nn.Conv(f, (5, 5), strides=(2, 2))
                           for f in self.features]
    self.analysis_gdns = [GDN() for _ in self.features]
    self.to_latent = nn.Conv(self.latent_features, (3, 3))
    above = tuple(self.features[:-1])
    self.from_latent = nn.Conv(self.features[-1], (3, 3))
    self.synthesis_gdns = [GDN(inverse=True) for _ in self.features]
    outs = list(above[::-1]) + [self.out_features]
    if self.upsample == 'transpose':
      self.synthesis_convs = [nn.ConvTranspose(f, (5, 5), strides=(2, 2))
                              for f in outs]
    else:
      self.synthesis_convs = [nn.Conv(4 * f, (3, 3)) for f in outs]
    self.densities = EntropyBottleneck(self.latent_features)

  @property
  def downsampling(self) -> int:
    """How much the latent is smaller than the image in height and width."""
    return models.downsampling(self.features)

  def analysis(self, x_BxHxWx3: jax.Array) -> jax.Array:
    """Image batch (sides multiples of `downsampling`) to latent."""
    models.check_divisible(x_BxHxWx3, 'FactorizedPrior', self.features)
    x = x_BxHxWx3 - 0.5  # Centred pixels: faster early training.
    for conv, gdn in zip(self.analysis_convs, self.analysis_gdns):
      x = gdn(conv(x))
    return self.to_latent(x)

  def synthesis(self, y_Bxhxwxk: jax.Array) -> jax.Array:
    models.check_batch(y_Bxhxwxk, 'FactorizedPrior.synthesis')
    x = self.from_latent(y_Bxhxwxk)
    for conv, gdn in zip(self.synthesis_convs, self.synthesis_gdns):
      x = conv(gdn(x))
      if self.upsample != 'transpose':
        x = models.depth_to_space(x)
    return x + 0.5

  def latent(self, x_BxHxWx3: jax.Array) -> jax.Array:
    """The continuous latent whose rounding is coded."""
    return self.analysis(x_BxHxWx3)

  def quantize(self, x_BxHxWx3: jax.Array) -> jax.Array:
    return jnp.round(self.analysis(x_BxHxWx3)).astype(jnp.int32)

  def dequantize(self, symbols_Bxhxwxk: jax.Array) -> jax.Array:
    return jnp.clip(self.synthesis(symbols_Bxhxwxk.astype(jnp.float32)), 0.0, 1.0)

  def __call__(self, x_BxHxWx3: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    # The latent, its noise and its likelihoods in float32 whatever the
    # compute dtype (the synthesis computes in the input's).
    y = self.analysis(x_BxHxWx3).astype(jnp.float32)
    if train:  # Uniform noise stands in for rounding (same density, smooth).
      y_hat = y + jax.random.uniform(self.make_rng('noise'), y.shape,
                                     minval=-0.5, maxval=0.5)
    else:
      y_hat = jnp.round(y)
    x_hat = self.synthesis(y_hat.astype(x_BxHxWx3.dtype))
    if not train:
      x_hat = jnp.clip(x_hat, 0.0, 1.0)
    return {'output': x_hat, 'bits': _bits(self.densities(y_hat))}


class QuantizedAutoencoder(nn.Module):
  """The bottleneck autoencoder: `models.Encoder`/`Decoder` around a latent
  squashed to [0, 1] and rounded to `bits` bits."""
  features: Sequence[int] = (32, 64)
  latent_features: int = 16
  out_features: int = 3
  bits: int = 4
  blocks_per_level: int = 1
  downsample: str = 'avgpool'
  upsample: str = 'pixel_shuffle'
  activation: str = 'relu'

  def setup(self):
    common = dict(features=tuple(self.features),
                  blocks_per_level=self.blocks_per_level,
                  activation=self.activation)
    self.encoder = models.Encoder(latent_features=self.latent_features,
                                  downsample=self.downsample, **common)
    self.decoder = models.Decoder(out_features=self.out_features,
                                  upsample=self.upsample, **common)

  @property
  def levels(self) -> int:
    return 2 ** self.bits - 1

  @property
  def downsampling(self) -> int:
    """How much the latent is smaller than the image in height and width."""
    return models.downsampling(self.features)

  def latent(self, x_BxHxWx3: jax.Array) -> jax.Array:
    """The continuous latent in [0, levels] whose rounding is coded."""
    models.check_divisible(x_BxHxWx3, 'QuantizedAutoencoder', self.features)
    return nn.sigmoid(self.encoder(x_BxHxWx3)) * self.levels

  def synthesis(self, y_Bxhxwxk: jax.Array) -> jax.Array:
    return self.decoder(y_Bxhxwxk / self.levels)

  def quantize(self, x_BxHxWx3: jax.Array) -> jax.Array:
    return jnp.round(self.latent(x_BxHxWx3)).astype(jnp.int32)

  def dequantize(self, symbols_Bxhxwxk: jax.Array) -> jax.Array:
    return jnp.clip(self.synthesis(symbols_Bxhxwxk.astype(jnp.float32)), 0.0, 1.0)

  def __call__(self, x_BxHxWx3: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    z = self.latent(x_BxHxWx3)
    z_hat = z + jax.lax.stop_gradient(jnp.round(z) - z)  # Straight through.
    x_hat = self.synthesis(z_hat)
    if not train:
      x_hat = jnp.clip(x_hat, 0.0, 1.0)
    bits = jnp.full((x_BxHxWx3.shape[0],), z.size // z.shape[0] * self.bits,
                    jnp.float32)
    return {'output': x_hat, 'bits': bits}


def from_config(config: Any) -> nn.Module:
  c = config.compress
  features = tuple(config.model.features)
  if c.model == 'factorized':
    return FactorizedPrior(features=features,
                           latent_features=config.model.latent_features,
                           upsample=config.model.upsample)
  if c.model == 'bottleneck':
    return QuantizedAutoencoder(
        features=features, latent_features=config.model.latent_features,
        bits=c.bits, blocks_per_level=config.model.blocks_per_level,
        downsample=config.model.downsample, upsample=config.model.upsample,
        activation=config.model.activation)
  raise ValueError(f'config.compress.model={c.model!r}; choose one of {MODELS}')


# ---------------------------------------------------------------------------
# Coding tables: the probabilities the entropy coder uses, on the host.


def _np_softplus(x):
  return np.logaddexp(0.0, x)


def _np_sigmoid(x):
  return 0.5 * (1.0 + np.tanh(0.5 * x))


def _np_cdf_logits(p: dict, x_CxN: np.ndarray) -> np.ndarray:
  """EntropyBottleneck.cdf_logits in float64 numpy, per channel."""
  x = x_CxN[:, None, :]
  i = 0
  while f'matrix_{i}' in p:
    m = _np_softplus(np.asarray(p[f'matrix_{i}'], np.float64))
    b = np.asarray(p[f'bias_{i}'], np.float64)
    x = np.einsum('coi,cin->con', m, x) + b
    if f'factor_{i}' in p:
      x = x + np.tanh(np.asarray(p[f'factor_{i}'], np.float64)) * np.tanh(x)
    i += 1
  return x[:, 0, :]


def coding_tables(model: nn.Module, params: Any) -> tuple[np.ndarray, list[np.ndarray]]:
  """(offsets [C], pmfs): how the codec codes each latent channel.

  Channel c codes symbol s as index s - offsets[c] when that lies in
  [0, len(pmfs[c]) - 1), with probability pmfs[c][index]; the last index is
  the escape, for values outside the table (coded apart), whose probability
  is the mass outside it. Computed in float64 numpy on the host, so encoder
  and decoder derive identical tables from identical parameters whatever
  accelerator ran the model.
  """
  if isinstance(model, QuantizedAutoencoder):  # Uniform; nothing escapes.
    k = model.levels + 1
    pmf = np.concatenate([np.full(k, 1.0 / k), [0.0]])
    return np.zeros(model.latent_features, np.int64), [pmf] * model.latent_features
  p = {k: np.asarray(v) for k, v in params['densities'].items()}
  channels = p['matrix_0'].shape[0]
  grid = np.arange(-MAX_HALF_RANGE, MAX_HALF_RANGE + 1, dtype=np.float64)
  edges = np.concatenate([grid - 0.5, grid[-1:] + 0.5])
  cdf = _np_sigmoid(_np_cdf_logits(p, np.broadcast_to(edges, (channels, len(edges)))))
  offsets, pmfs = np.zeros(channels, np.int64), []
  for c in range(channels):
    # The bins whose mass is not all in one of the two tails.
    inside = np.nonzero((cdf[c, 1:] > TAIL_MASS / 2) &
                        (cdf[c, :-1] < 1 - TAIL_MASS / 2))[0]
    lo, hi = (inside[0], inside[-1]) if len(inside) else (MAX_HALF_RANGE,) * 2
    offsets[c] = int(grid[lo])
    mass = np.maximum(np.diff(cdf[c, lo:hi + 2]), 0.0)
    pmfs.append(np.concatenate([mass, [max(1.0 - mass.sum(), 0.0)]]))
  return offsets, pmfs
