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
hyperprior models is `IntegerHyperSynthesis`: the hyper synthesis network
in fixed-point integers, so the tables every element of `y` is coded with
are computed identically on any machine (its docstring says why).
"""

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
