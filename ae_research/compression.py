"""Compression models: an image to integer latents and back, with a rate.

Linen modules whose `__call__(x, train)` returns {'output': reconstruction,
'likelihoods': {latent name: likelihoods}}; the loss turns likelihoods into
bits (`entropy_models.bits`), no model sums them itself:

- `FactorizedPrior` (Balle et al. 2017/2018): strided 5x5 convolutions with
  GDN, a latent `y` coded with a learned per-channel density
  (`entropy_models.EntropyBottleneck`).
- `ScaleHyperprior` (Balle et al. 2018): the same transforms, and a hyper
  latent `z` (two more stride-2 levels) coded with a per-channel density,
  from which a network predicts the scale of a Gaussian for every element
  of `y` (`entropy_models.GaussianConditional`). With `mean_scale=True`
  (Minnen et al. 2018, without the context model), the mean too.
- Variable rate (`rate_levels` > 0, the hyperprior models): one model for
  every rate, the rate chosen when coding by a quality from 0 to 100 (Cui
  et al., "Asymmetric Gained Deep Image Compression With Continuous Rate
  Adaptation", CVPR 2021): y is multiplied channel by channel by a gain
  vector before it is quantized and by an inverse gain vector after, both
  interpolated exponentially between `rate_levels` learned vectors
  (`RateGains`); training draws each example's quality, and so its lambda
  (log-uniform over `lmbda_range`), at random. The hyper synthesis predicts
  the entropy parameters of the gained latent directly, so what the decoder
  derives from the quality touches only the synthesis, never the tables.
- `QuantizedAutoencoder`: the plain bottleneck autoencoder; the latent is
  squashed to [0, 1] and quantized to `bits` bits (straight-through
  rounding); every element's likelihood is 2**-bits.

Training adds uniform noise in place of rounding, so lambda in
`lambda * 255^2 * MSE + bpp` picks the quality. The codec
(`ae_research.aec`) codes the rounded latents; what it needs from the
hyperprior models is the hyper synthesis network in integers, so the tables
every element of `y` is coded with are computed identically on any machine
(the docstrings say why): `Int8HyperSynthesis` (8-bit, through XLA; format
version 5) and `IntegerHyperSynthesis` (float64 fixed point on the host;
versions 3 and 4).
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ae_research import entropy_models, models

MODELS = ('factorized', 'bottleneck', 'hyperprior', 'mean_scale')
# The models that can be variable-rate (`rate_levels`).
VARIABLE_RATE_MODELS = ('hyperprior', 'mean_scale')
# Qualities run from 0 (lmbda_range's low end) to MAX_QUALITY (its high end).
MAX_QUALITY = 100.0
FACTORIZED_UPSAMPLE_KINDS = ('pixel_shuffle', 'transpose')


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




def lmbda_at(quality: Any, lmbda_range: Sequence[float]) -> Any:
  """The lambda a quality (0 to MAX_QUALITY) stands for: log-uniform over
  `lmbda_range`, numpy or jax alike."""
  lo, hi = lmbda_range
  return lo * (hi / lo) ** (quality / MAX_QUALITY)


def interpolate_levels(log_values_LxK: Any, quality_B: Any, xp: Any = jnp) -> Any:
  """exp of the per-level rows linearly interpolated at each quality's
  position among the L levels (the levels sit evenly over 0 to
  MAX_QUALITY): [B, K]; `xp` numpy for the host."""
  levels = log_values_LxK.shape[0]
  u = xp.clip(quality_B / MAX_QUALITY, 0.0, 1.0) * (levels - 1)
  low = xp.clip(xp.floor(u), 0, levels - 2).astype(xp.int32)
  t = (u - low)[:, None]
  return xp.exp((1 - t) * log_values_LxK[low] + t * log_values_LxK[low + 1])


class RateGains(nn.Module):
  """Cui et al. 2021's gain and inverse gain units: `levels` learned
  per-channel gain vectors, kept as logs, the first for lmbda_range's low
  end and the last for its high end. Initialised to sqrt(lambda /
  geometric-mean lambda) and its inverse (quantization steps of 1 / gain:
  the step that minimizes lambda * distortion + rate at high rate scales as
  lambda^-1/2).

    gain_BxK, inverse_gain_BxK = RateGains(8, 192, (0.0018, 0.1))(quality_B)
  """
  levels: int
  features: int
  lmbda_range: tuple[float, float]

  def _init(self, sign: float):
    lo, hi = self.lmbda_range
    rows = sign * 0.5 * np.log(np.geomspace(lo, hi, self.levels) / np.sqrt(lo * hi))
    return lambda _, shape: jnp.broadcast_to(
        jnp.asarray(rows, jnp.float32)[:, None], shape)

  @nn.compact
  def __call__(self, quality_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    shape = (self.levels, self.features)
    log_gain = self.param('log_gain', self._init(1.0), shape)
    log_inverse_gain = self.param('log_inverse_gain', self._init(-1.0), shape)
    quality_B = quality_B.astype(jnp.float32)
    return (interpolate_levels(log_gain, quality_B),
            interpolate_levels(log_inverse_gain, quality_B))


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

  def _setup_transforms(self):
    if self.upsample not in FACTORIZED_UPSAMPLE_KINDS:
      raise ValueError(f'{type(self).__name__} upsample={self.upsample!r}; '
                       f'choose one of {FACTORIZED_UPSAMPLE_KINDS}')
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

  def setup(self):
    self._setup_transforms()
    self.densities = entropy_models.EntropyBottleneck(self.latent_features)

  @property
  def downsampling(self) -> int:
    """How much the latent is smaller than the image in height and width."""
    return models.downsampling(self.features)

  def analysis(self, x_BxHxWx3: jax.Array) -> jax.Array:
    """Image batch (sides multiples of `downsampling`) to latent."""
    models.check_divisible(x_BxHxWx3, type(self).__name__, self.features)
    x = x_BxHxWx3 - 0.5  # Centred pixels: faster early training.
    for conv, gdn in zip(self.analysis_convs, self.analysis_gdns):
      x = gdn(conv(x))
    return self.to_latent(x)

  def synthesis(self, y_Bxhxwxk: jax.Array) -> jax.Array:
    models.check_batch(y_Bxhxwxk, f'{type(self).__name__}.synthesis')
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

  def __call__(self, x_BxHxWx3: jax.Array, train: bool = False) -> dict[str, Any]:
    # The latent, its noise and its likelihoods in float32 whatever the
    # compute dtype (the synthesis computes in the input's).
    y = self.analysis(x_BxHxWx3).astype(jnp.float32)
    y_hat, likelihoods = self.densities(y, train)
    x_hat = self.synthesis(y_hat.astype(x_BxHxWx3.dtype))
    if not train:
      x_hat = jnp.clip(x_hat, 0.0, 1.0)
    return {'output': x_hat, 'likelihoods': {'y': likelihoods}}


class ScaleHyperprior(FactorizedPrior):
  """Balle et al. 2018's scale hyperprior, or with `mean_scale` Minnen et
  al. 2018's mean-scale hyperprior (without its autoregressive context).

  The image transforms are FactorizedPrior's. The hyper analysis (3x3
  convolution, then two stride-2 5x5 convolutions to `hyper_features`, ReLU
  between) maps y (|y| for scales only) to z, coded with a per-channel
  density. The hyper synthesis (per level a 5x5 convolution to 4 x
  `hyper_features` and a pixel shuffle, ReLU, then a 3x3 convolution) maps
  z_hat to a scale per element of y (ReLU'd) or to scales and means
  (`latent_features` of each, scales first).
  """
  hyper_features: int = 128
  mean_scale: bool = False
  # Variable rate: the number of learned gain vectors (0: one rate), and the
  # lambdas of qualities 0 and MAX_QUALITY.
  rate_levels: int = 0
  lmbda_range: tuple[float, float] = (0.0018, 0.1)
  # The quality of an evaluation without one (train=False, no quality).
  default_quality: float = 50.0

  def setup(self):
    self._setup_transforms()
    if self.rate_levels:
      if self.rate_levels < 2:
        raise ValueError(f'ScaleHyperprior rate_levels={self.rate_levels}; 0 '
                         '(one rate) or at least 2')
      self.gains = RateGains(self.rate_levels, self.latent_features,
                             tuple(self.lmbda_range))
    n = self.hyper_features
    self.hyper_analysis_convs = [nn.Conv(n, (3, 3)),
                                 nn.Conv(n, (5, 5), strides=(2, 2)),
                                 nn.Conv(n, (5, 5), strides=(2, 2))]
    outputs = self.latent_features * (2 if self.mean_scale else 1)
    self.hyper_synthesis_convs = [nn.Conv(4 * n, (5, 5)), nn.Conv(4 * n, (5, 5)),
                                  nn.Conv(outputs, (3, 3))]
    self.densities = entropy_models.EntropyBottleneck(n)
    self.gaussian = entropy_models.GaussianConditional()

  @property
  def downsampling(self) -> int:
    """How much z is smaller than the image: y's factor, times 4."""
    return 4 * models.downsampling(self.features)

  @property
  def latent_downsampling(self) -> int:
    """How much y is smaller than the image."""
    return models.downsampling(self.features)

  def hyper_analysis(self, y_Bxhxwxk: jax.Array) -> jax.Array:
    x = y_Bxhxwxk.astype(jnp.float32)
    if not self.mean_scale:
      x = jnp.abs(x)
    for i, conv in enumerate(self.hyper_analysis_convs):
      x = conv(x)
      if i < len(self.hyper_analysis_convs) - 1:
        x = nn.relu(x)
    return x

  def hyper_synthesis(self, z_hat: jax.Array) -> jax.Array:
    """The entropy parameters of y: scales [B,h,w,k], or scales and means
    concatenated [B,h,w,2k] (`mean_scale`)."""
    x = z_hat.astype(jnp.float32)
    for conv in self.hyper_synthesis_convs[:-1]:
      x = nn.relu(models.depth_to_space(conv(x)))
    x = self.hyper_synthesis_convs[-1](x)
    return x if self.mean_scale else nn.relu(x)

  def entropy_parameters(self, z_hat: jax.Array) -> tuple[jax.Array, Any]:
    """(scales, means or None) of y, from the hyper latent."""
    out = self.hyper_synthesis(z_hat)
    if self.mean_scale:
      return jnp.split(out, 2, axis=-1)
    return out, None

  def hyper_latent(self, y_Bxhxwxk: jax.Array) -> jax.Array:
    """The continuous hyper latent z whose rounding is coded."""
    return self.hyper_analysis(y_Bxhxwxk)

  def rate_gains(self, quality_B: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(gain, inverse gain) [B, latent_features] of each quality."""
    return self.gains(quality_B)

  def __call__(self, x_BxHxWx3: jax.Array, train: bool = False,
               quality: Optional[jax.Array] = None) -> dict[str, Any]:
    """{'output', 'likelihoods'}; a variable-rate model adds 'quality' [B]:
    `quality` (a scalar or [B], 0 to MAX_QUALITY), or in training drawn
    uniformly per example, else `default_quality`."""
    models.check_divisible(x_BxHxWx3, type(self).__name__, self.features,
                           self.downsampling)
    y = self.analysis(x_BxHxWx3).astype(jnp.float32)
    out = {}
    if self.rate_levels:
      b = x_BxHxWx3.shape[0]
      if quality is not None:
        quality = jnp.broadcast_to(jnp.asarray(quality, jnp.float32), (b,))
      elif train:
        quality = jax.random.uniform(self.make_rng('noise'), (b,),
                                     maxval=MAX_QUALITY)
      else:
        quality = jnp.full((b,), self.default_quality, jnp.float32)
      gain, inverse_gain = self.rate_gains(quality)
      y = y * gain[:, None, None, :]
      out['quality'] = quality
    z_hat, z_likelihoods = self.densities(self.hyper_analysis(y), train)
    scales, means = self.entropy_parameters(z_hat)
    y_hat, y_likelihoods = self.gaussian(y, scales, means, train)
    if self.rate_levels:
      y_hat = y_hat * inverse_gain[:, None, None, :]
    x_hat = self.synthesis(y_hat.astype(x_BxHxWx3.dtype))
    if not train:
      x_hat = jnp.clip(x_hat, 0.0, 1.0)
    return {'output': x_hat,
            'likelihoods': {'y': y_likelihoods, 'z': z_likelihoods}, **out}


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
    # Every element of the latent costs `bits` bits.
    likelihoods = jnp.full(z.shape, 2.0 ** -self.bits, jnp.float32)
    return {'output': x_hat, 'likelihoods': {'y': likelihoods}}


def from_config(config: Any) -> nn.Module:
  c = config.compress
  features = tuple(config.model.features)
  if c.model == 'factorized':
    return FactorizedPrior(features=features,
                           latent_features=config.model.latent_features,
                           upsample=config.model.upsample)
  if c.model in ('hyperprior', 'mean_scale'):
    return ScaleHyperprior(features=features,
                           latent_features=config.model.latent_features,
                           upsample=config.model.upsample,
                           hyper_features=c.hyper_features,
                           mean_scale=c.model == 'mean_scale',
                           rate_levels=c.rate_levels,
                           lmbda_range=tuple(c.lmbda_range),
                           default_quality=float(c.quality))
  if c.model == 'bottleneck':
    return QuantizedAutoencoder(
        features=features, latent_features=config.model.latent_features,
        bits=c.bits, blocks_per_level=config.model.blocks_per_level,
        downsample=config.model.downsample, upsample=config.model.upsample,
        activation=config.model.activation)
  raise ValueError(f'config.compress.model={c.model!r}; choose one of {MODELS}')


# ---------------------------------------------------------------------------
# The hyper synthesis in integers, for the codec.


class IntegerHyperSynthesis:
  """`ScaleHyperprior.hyper_synthesis` in fixed point, on the host: z_hat
  (integers) to the integer scales (and means) every element of y is coded
  with, the same on every machine.

    hs = IntegerHyperSynthesis(model, params)
    scales_fixed, means_fixed = hs(z_hat_hxwxC)   # int64, / 2**FRACTION_BITS

  Each layer's kernel is rounded to integers at 2**fw (fw chosen so that
  |kernel| < 2**WEIGHT_BITS), its bias at the scale of the products, and
  its output floored back to FRACTION_BITS fractional bits and clipped to
  +-ACTIVATION_LIMIT (after the ReLU, where there is one). The arithmetic
  is float64 on integer values: every product is below 2**(WEIGHT_BITS +
  log2 ACTIVATION_LIMIT) and every partial sum below fan-in times that,
  which the constructor checks is under 2**53. Every intermediate value is
  then an integer float64 represents exactly, so each addition is exact and
  the result does not depend on the order of the additions: BLAS's
  blocking, threads, SIMD width, FMA, or rows coded in chunks give the same
  integers. Flooring by a power of two and clipping are exact. The
  parameters come bit-exactly from the checkpoint, so encoder and decoder
  compute the same tables wherever they run.
  """
  FRACTION_BITS = entropy_models.SCALE_FRACTION_BITS
  WEIGHT_BITS = 15
  ACTIVATION_LIMIT = 2 ** 22
  EXACT_LIMIT = 2.0 ** 53
  CHUNK = 1 << 22  # Values of one im2col block.

  def __init__(self, model: ScaleHyperprior, params: Any):
    self.mean_scale = model.mean_scale
    self.latent_features = model.latent_features
    self.layers = []
    shift_in = 0  # z_hat: integers.
    convs = [params[f'hyper_synthesis_convs_{i}'] for i in range(3)]
    for i, conv in enumerate(convs):
      kernel = np.asarray(conv['kernel'], np.float64)
      bias = np.asarray(conv['bias'], np.float64)
      top = float(np.max(np.abs(kernel)))
      fw = self.WEIGHT_BITS - (np.frexp(top)[1] if top > 0 else 0)
      fw = int(min(fw, 40))
      w = np.round(np.ldexp(kernel, fw))
      b = np.round(np.ldexp(bias, fw + shift_in))
      fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
      bound = fan_in * float(np.max(np.abs(w))) * self.ACTIVATION_LIMIT + float(
          np.max(np.abs(b)))
      if bound >= self.EXACT_LIMIT:
        raise ValueError(f'hyper synthesis layer {i}: a {kernel.shape} kernel '
                         'is too large for exact integer arithmetic in float64')
      self.layers.append(dict(kernel=w, bias=b,
                              shift=fw + shift_in - self.FRACTION_BITS,
                              upsample=i < 2, relu=i < 2 or not self.mean_scale))
      shift_in = self.FRACTION_BITS

  def _conv(self, x_HxWxC: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'SAME' convolution of integer-valued float64 arrays, exactly."""
    kh, kw, c, o = kernel.shape
    h, w = x_HxWxC.shape[:2]
    top, left = (kh - 1) // 2, (kw - 1) // 2
    padded = np.pad(x_HxWxC, ((top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    flat = kernel.reshape(kh * kw * c, o)
    rows = max(1, self.CHUNK // max(1, w * kh * kw * c))
    out = np.empty((h, w, o), np.float64)
    for r in range(0, h, rows):
      block = padded[r:r + min(rows, h - r) + kh - 1]
      windows = np.lib.stride_tricks.sliding_window_view(block, (kh, kw), (0, 1))
      # [rows, w, c, kh, kw] -> [rows * w, kh * kw * c], the kernel's order.
      cols = windows.transpose(0, 1, 3, 4, 2).reshape(-1, kh * kw * c)
      out[r:r + len(block) - kh + 1] = (cols @ flat).reshape(-1, w, o)
    return out

  @staticmethod
  def _depth_to_space(x_HxWxC: np.ndarray) -> np.ndarray:
    """models.depth_to_space of one image."""
    h, w, c = x_HxWxC.shape
    x = x_HxWxC.reshape(h, w, 2, 2, c // 4).transpose(0, 2, 1, 3, 4)
    return x.reshape(2 * h, 2 * w, c // 4)

  def __call__(self, z_hat_hxwxC: np.ndarray) -> tuple[np.ndarray, Any]:
    """(scales, means or None) as int64 arrays of y's shape, in units of
    2**-FRACTION_BITS."""
    limit = float(self.ACTIVATION_LIMIT)
    x = np.clip(np.asarray(z_hat_hxwxC, np.float64), -limit, limit)
    for layer in self.layers:
      acc = self._conv(x, layer['kernel']) + layer['bias']
      x = np.floor(np.ldexp(acc, -layer['shift']))
      if layer['upsample']:
        x = self._depth_to_space(x)
      x = np.clip(x, 0.0 if layer['relu'] else -limit, limit)
    x = x.astype(np.int64)
    if self.mean_scale:
      return x[..., :self.latent_features], x[..., self.latent_features:]
    return x, None


def _weight_exponents(top_O: np.ndarray, limit: int) -> np.ndarray:
  """Per output channel the largest f with round(top * 2**f) <= limit
  (exact float64 on the host; 0 for a channel of zeros)."""
  f = np.zeros(top_O.shape, np.int64)
  nonzero = top_O > 0
  e = np.frexp(top_O[nonzero])[1]  # top = m * 2**e, m in [0.5, 1).
  guess = int(np.log2(limit + 1)) - e  # m * 2**(bits) in [limit/2, limit].
  over = np.round(np.ldexp(top_O[nonzero], guess)) > limit
  f[nonzero] = np.minimum(guess - over, 40)
  return f


def _integer_conv(x_1xHxWxC, kernel_HWIO, chunk: int):
  """'VALID' convolution of int8 by int8, summed in int32: im2col and one
  integer dot per block of rows whose im2col has at most `chunk` values.
  (Not lax.conv_general_dilated: XLA's CPU int8 convolution returned wrong
  sums for inputs of a few pixels in jax 0.10.)"""
  kh, kw, c, o = kernel_HWIO.shape
  _, h, w, _ = x_1xHxWxC.shape
  h, w = h - kh + 1, w - kw + 1
  flat = kernel_HWIO.reshape(kh * kw * c, o)

  def block(x):  # [1, rows + kh - 1, w + kw - 1, c] -> [1, rows, w, o]
    rows = x.shape[1] - kh + 1
    cols = jnp.concatenate([x[:, i:i + rows, j:j + w] for i in range(kh)
                            for j in range(kw)], axis=-1)
    return jax.lax.dot_general(cols, flat, (((3,), (0,)), ((), ())),
                               preferred_element_type=jnp.int32)

  rows = max(1, chunk // (w * kh * kw * c))
  if rows >= h:
    return block(x_1xHxWxC)
  n = -(-h // rows)
  x = jnp.pad(x_1xHxWxC, ((0, 0), (0, n * rows - h), (0, 0), (0, 0)))
  out = jax.lax.map(lambda i: block(jax.lax.dynamic_slice_in_dim(
      x, i * rows, rows + kh - 1, axis=1)), jnp.arange(n))
  return out.transpose(1, 0, 2, 3, 4).reshape(1, n * rows, w, o)[:, :h]


@functools.partial(jax.jit, static_argnames='mean_scale')
def _int8_hyper_synthesis(z_1xhxwxC, kernels, bias_tables, weight_exponents,
                          mean_scale: bool):
  """Int8HyperSynthesis's layers as one XLA computation, in integers."""
  x = jnp.clip(z_1xhxwxC, -127, 127).astype(jnp.int8)
  fx = jnp.int32(0)  # x holds the activation times 2**fx.
  zero = 0  # What x holds for a zero activation ('SAME' padding).
  last = len(kernels) - 1
  for i, (kernel, biases, fw) in enumerate(zip(kernels, bias_tables, weight_exponents)):
    kh, kw = kernel.shape[:2]
    x = jnp.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)),
                constant_values=zero)
    acc = _integer_conv(x, kernel, Int8HyperSynthesis.CHUNK)
    fw = fw.reshape(1, 1, 1, -1)  # Per channel, as the rest.
    acc = acc + biases[fx - Int8HyperSynthesis.MIN_EXPONENT].reshape(1, 1, 1, -1)
    # acc: sum(x w) + b, times 2**(fw + fx) per channel.
    if i == last:
      shift = Int8HyperSynthesis.FRACTION_BITS - fw - fx
      out = _shift(acc, shift, Int8HyperSynthesis.OUTPUT_LIMIT)
      out = jnp.clip(out, -Int8HyperSynthesis.OUTPUT_LIMIT, Int8HyperSynthesis.OUTPUT_LIMIT)
      return out if mean_scale else jnp.maximum(out, 0)
    acc = jnp.maximum(acc, 0)  # ReLU, then the finest scale 2**fo that
    # keeps every channel's largest value under 2**ACTIVATION_BITS.
    top = jnp.max(acc, axis=(0, 1, 2), keepdims=True)
    bits = 32 - jax.lax.clz(top)  # top < 2**bits.
    fo = jnp.min(fw + fx + Int8HyperSynthesis.ACTIVATION_BITS - bits)
    # No finer than the next layer's bias table goes (its biases fit int32).
    lo = Int8HyperSynthesis.MIN_EXPONENT
    fo = jnp.clip(fo, lo, lo + bias_tables[i + 1].shape[0] - 1)
    x = _shift(acc, fo - fw - fx, Int8HyperSynthesis.ACTIVATION_MAX)
    x = jnp.minimum(x, Int8HyperSynthesis.ACTIVATION_MAX)
    # Unsigned 8 bits to int8: x - 128 (the next bias table adds 128 sum(w)).
    x = models.depth_to_space(x - 128).astype(jnp.int8)
    fx, zero = fo, -128


def int8_entropy_parameters(z_Bxhxwxc: jax.Array, arrays: Any, index_lookup: jax.Array,
                            mean_scale: bool) -> tuple[jax.Array, Any]:
  """`Int8HyperSynthesis` (its `arrays`) on integer z, traceable into a
  larger computation: (table index, means or None) of y; the index of a
  scale is `index_lookup` at the scale clipped to its length
  (`entropy_models.scale_index_lookup`), the means float32 (integers /
  2**FRACTION_BITS, under 2**22 of them: exact)."""
  z = jnp.clip(z_Bxhxwxc, -127, 127).astype(jnp.int32)
  out = _int8_hyper_synthesis(z, *arrays, mean_scale=mean_scale)
  scales, means = jnp.split(out, 2, axis=-1) if mean_scale else (out, None)
  index = index_lookup[jnp.clip(scales, 0, index_lookup.shape[0] - 1)]
  if means is not None:
    means = means.astype(jnp.float32) * np.float32(2.0 ** -Int8HyperSynthesis.FRACTION_BITS)
  return index, means


_jitted_int8_entropy_parameters = jax.jit(int8_entropy_parameters,
                                          static_argnames='mean_scale')


def _shift(acc, shift_O, limit: int):
  """floor(acc * 2**shift) per channel, exactly: an arithmetic right shift,
  or a left shift of acc clipped first so nothing passes +-limit by more
  than 2**shift (the caller clips)."""
  left = jnp.clip(shift_O, 0, 24)  # Past 2**24 > limit any value saturates.
  right = jnp.clip(-shift_O, 0, 31)
  bound = jnp.right_shift(jnp.int32(limit), left) + 1
  return jnp.where(shift_O >= 0, jnp.left_shift(jnp.clip(acc, -bound, bound), left),
                   jnp.right_shift(acc, right))  # Signed: arithmetic.


class Int8HyperSynthesis:
  """`ScaleHyperprior.hyper_synthesis` in 8-bit integers, through XLA: z_hat
  (integers) to the integer scales (and means) every element of y is coded
  with, the same on every machine and device (format version 5 onwards;
  `IntegerHyperSynthesis` computes those of versions 3 and 4).

    hs = Int8HyperSynthesis(model, params)
    scales_fixed, means_fixed = hs(z_hat_hxwxC)   # int64, / 2**FRACTION_BITS

  Each layer's kernel is rounded to int8 (-127 to 127) at a power-of-two
  scale per output channel; its input is int8 (z_hat clipped to +-127;
  the hidden activations unsigned 8 bits, 0 to 255, stored as x - 128 with
  128 sum(w) folded into the bias); the convolution multiplies int8 by int8
  and sums in int32 (`preferred_element_type`), and its bias is the
  float bias rounded at the products' scale (from a table computed on the
  host in float64, one row per input scale). After each hidden layer's
  ReLU, the activations are floored to the finest power-of-two scale at
  which every value fits in 8 bits: a shift chosen from the image's own
  largest value per channel (integer max and count of leading zeros), so
  encoder and decoder, having the same integers, choose the same. The last
  layer's sums are floored to FRACTION_BITS fractional bits.

  Why it is the same everywhere: every step is integer arithmetic (int8
  products, int32 sums, comparisons, shifts), which XLA defines exactly on
  every backend; no sum can overflow (the constructor checks fan-in x 128 x
  127 plus the largest bias against 2**31), so the order in which a
  backend adds (blocking, threads, SIMD, tiles) cannot matter. It is also
  exact if a backend computes the convolution in float32 for any part of
  fan-in up to 1024, whose partial sums stay under 2**24.

  The 8-bit arithmetic costs almost nothing in rate (docs/codec.md gives
  version 5's file sizes against version 4's).
  """
  FRACTION_BITS = entropy_models.SCALE_FRACTION_BITS
  WEIGHT_MAX = 127
  ACTIVATION_BITS = 8
  ACTIVATION_MAX = (1 << ACTIVATION_BITS) - 1
  OUTPUT_LIMIT = 1 << 22
  # The activation scales 2**fx a layer may choose (the bias tables' rows,
  # up to the finest at which every bias still fits BIAS_LIMIT).
  MIN_EXPONENT, MAX_EXPONENT = -24, 24
  BIAS_LIMIT = 1 << 30
  SUM_LIMIT = 1 << 31
  CHUNK = 1 << 24  # Values of one im2col block.

  def __init__(self, model: ScaleHyperprior, params: Any):
    self.mean_scale = model.mean_scale
    self.latent_features = model.latent_features
    kernels, tables, exponents = [], [], []
    for i in range(3):
      conv = params[f'hyper_synthesis_convs_{i}']
      kernel = np.asarray(conv['kernel'], np.float64)
      bias = np.asarray(conv['bias'], np.float64)
      fw = _weight_exponents(np.max(np.abs(kernel), axis=(0, 1, 2)), self.WEIGHT_MAX)
      w = np.round(np.ldexp(kernel, fw))
      rows = np.arange(self.MIN_EXPONENT, self.MAX_EXPONENT + 1)[:, None]
      b = np.round(np.ldexp(bias, fw + rows))
      fits = np.all(np.abs(b) <= self.BIAS_LIMIT, axis=1)  # Falls with the row.
      b = b[:int(np.argmin(fits)) if not fits.all() else len(fits)]
      fan_in = kernel.shape[0] * kernel.shape[1] * kernel.shape[2]
      # |acc| <= fan-in 128 x 127 (the products) + the bias + 128 sum(w).
      if 2 * fan_in * 128 * self.WEIGHT_MAX + self.BIAS_LIMIT >= self.SUM_LIMIT:
        raise ValueError(f'hyper synthesis layer {i}: a {kernel.shape} kernel '
                         'is too large for exact int32 sums')
      if len(b) <= -self.MIN_EXPONENT:
        raise ValueError(f'hyper synthesis layer {i}: a bias of '
                         f'{np.max(np.abs(bias)):g} is too large for int32 sums '
                         'at the scale of its integer inputs')
      if i > 0:  # Inputs stored as x - 128.
        b = b + 128 * w.sum(axis=(0, 1, 2))
      kernels.append(jnp.asarray(w, jnp.int8))
      tables.append(jnp.asarray(b, jnp.int32))
      exponents.append(jnp.asarray(fw, jnp.int32))
    self.kernels, self.bias_tables, self.weight_exponents = kernels, tables, exponents

  @property
  def arrays(self) -> tuple[list, list, list]:
    """The integer layers, for `int8_entropy_parameters`."""
    return self.kernels, self.bias_tables, self.weight_exponents

  def _z(self, z_hat_hxwxC: np.ndarray) -> jax.Array:
    return jnp.asarray(np.clip(np.asarray(z_hat_hxwxC), -127, 127)[None], jnp.int32)

  def entropy_parameters(self, z_hat_hxwxC: np.ndarray, index_lookup: jax.Array
                         ) -> tuple[np.ndarray, Any]:
    """(table index, means float32 or None) of y's shape
    (`int8_entropy_parameters`)."""
    index, means = _jitted_int8_entropy_parameters(
        self._z(z_hat_hxwxC), self.arrays, index_lookup, mean_scale=self.mean_scale)
    return np.asarray(index)[0], None if means is None else np.asarray(means)[0]

  def __call__(self, z_hat_hxwxC: np.ndarray) -> tuple[np.ndarray, Any]:
    """(scales, means or None) as int64 arrays of y's shape, in units of
    2**-FRACTION_BITS."""
    out = np.asarray(_int8_hyper_synthesis(self._z(z_hat_hxwxC), self.kernels,
                                           self.bias_tables, self.weight_exponents,
                                           self.mean_scale))
    x = out[0].astype(np.int64)
    if self.mean_scale:
      return x[..., :self.latent_features], x[..., self.latent_features:]
    return x, None
