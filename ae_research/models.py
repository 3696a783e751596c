"""Convolutional encoder, decoder and autoencoder as pure linen modules.

`init`/`apply` are the whole interface:

  model = Autoencoder(features=(32, 64), latent_features=64, out_features=3)
  variables = model.init(jax.random.key(0), x_BxHxWxC)
  y_BxHxWx3 = model.apply(variables, x_BxHxWxC)

Each resolution level halves (encoder) or doubles (decoder) height and width,
so a model shrinks images by `downsampling(features)` = 2**len(features).
`Autoencoder` takes images of any size (it pads them to a multiple and crops
its output back); `Encoder` (and `encode`) refuse sides that are not
multiples. Field defaults are config.model's for 'autoencoder' (archs.py).
"""

import functools
import math
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae_research import archs

# The kinds' names live in archs.py, which the config checks read.
DOWNSAMPLE_KINDS = archs.DOWNSAMPLE_KINDS
UPSAMPLE_KINDS = archs.UPSAMPLE_KINDS
NORM_KINDS = archs.NORM_KINDS
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu, 'silu': nn.silu,
               'leaky_relu': nn.leaky_relu, 'tanh': jnp.tanh}
OUTPUT_ACTIVATIONS = archs.OUTPUT_ACTIVATIONS

_D = archs.get('autoencoder').defaults


def downsampling(features: Sequence[int]) -> int:
  """How much a model with these levels shrinks height and width."""
  return 2 ** len(features)


def check_batch(x: jax.Array, who: str) -> None:
  """Raises ValueError unless `x` is a batch of images, BxHxWxC."""
  if x.ndim == 3:
    raise ValueError(
        f'{who} takes a batch of images BxHxWxC; got one image of shape '
        f'{tuple(x.shape)}: add a batch axis (x[None])')
  if x.ndim != 4:
    raise ValueError(f'{who} takes a batch of images BxHxWxC (4-D); got '
                     f'shape {tuple(x.shape)}')


def check_divisible(x_BxHxWxC: jax.Array, who: str,
                    features: Sequence[int], multiple: int = 0) -> None:
  """Raises ValueError unless `x` is a batch whose height and width are
  multiples of `multiple` (by default `downsampling(features)`)."""
  check_batch(x_BxHxWxC, who)
  m = multiple or downsampling(features)
  h, w = x_BxHxWxC.shape[1:3]
  if h % m or w % m:
    levels = f'{len(features)} level' + ('' if len(features) == 1 else 's')
    crop = (f' (or crop to {h - h % m}x{w - w % m})' if min(h, w) >= m
            else '')
    raise ValueError(
        f'{who} with {levels} needs height and width divisible by {m}; got '
        f'{h}x{w}: pad to {h + -h % m}x{w + -w % m}{crop}')


def _check_choice(field: str, value: str, choices: Sequence[str]) -> None:
  if value not in choices:
    raise ValueError(f'{field}={value!r}; choose one of {tuple(choices)}')


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  _check_choice('activation', name, tuple(ACTIVATIONS))
  return ACTIVATIONS[name]


def pad_to_multiple(x_BxHxWxC: jax.Array, multiple: int) -> jax.Array:
  """Reflect-pads bottom and right to multiples of `multiple` (edge-pads an
  image too small to reflect), as `tiling.pad_to` does on the host."""
  h, w = x_BxHxWxC.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  if not (ph or pw):
    return x_BxHxWxC
  mode = 'reflect' if min(h, w) > max(ph, pw) else 'edge'
  return jnp.pad(x_BxHxWxC, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


def _reshape(x: jax.Array, shape: Sequence[int]) -> jax.Array:
  """reshape keeping the batch axis (axis 0, same size in `shape`) and its
  sharding: under an Explicit mesh jax must be told the output's sharding."""
  sharding = jax.typeof(x).sharding
  batch = sharding.spec[0] if len(sharding.spec) else None
  if batch is None:
    return jnp.reshape(x, shape)
  return jax.lax.reshape(x, tuple(shape), out_sharding=sharding.update(
      spec=jax.sharding.PartitionSpec(batch, *([None] * (len(shape) - 1)))))


def space_to_depth(x_BxHxWxC: jax.Array, block: int = 2) -> jax.Array:
  """Each block x block patch to channels: [B, H/block, W/block, block²C]."""
  b, h, w, c = x_BxHxWxC.shape
  x = _reshape(x_BxHxWxC, (b, h // block, block, w // block, block, c))
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return _reshape(x, (b, h // block, w // block, block * block * c))


def depth_to_space(x_BxHxWxC: jax.Array, block: int = 2) -> jax.Array:
  """The inverse of `space_to_depth`: [B, H*block, W*block, C/block²]."""
  b, h, w, c = x_BxHxWxC.shape
  out_c = c // (block * block)
  x = _reshape(x_BxHxWxC, (b, h, w, block, block, out_c))
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return _reshape(x, (b, h * block, w * block, out_c))


class Norm(nn.Module):
  """The normalization named by `kind`; 'none' is the identity."""
  kind: str = 'none'
  groups: int = 8
  axis_name: Optional[str] = None  # batch statistics are averaged over it.

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.kind == 'none':
      return x
    if self.kind == 'batch':
      return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                          axis_name=self.axis_name)(x)
    if self.kind == 'group':
      return nn.GroupNorm(num_groups=math.gcd(self.groups, x.shape[-1]))(x)
    if self.kind == 'layer':
      return nn.LayerNorm()(x)
    raise ValueError(f'norm={self.kind!r}; choose one of {NORM_KINDS}')


class Downsample(nn.Module):
  """Halves height and width and maps to `features` channels."""
  features: int
  kind: str = 'stride'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kind == 'stride':
      return nn.Conv(self.features, (3, 3), strides=(2, 2))(x)
    if self.kind == 'avgpool':
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      return nn.Conv(self.features, (3, 3))(x)
    if self.kind == 'space_to_depth':
      return nn.Conv(self.features, (3, 3))(space_to_depth(x))
    raise ValueError(
        f'downsample={self.kind!r}; choose one of {DOWNSAMPLE_KINDS}')


class Upsample(nn.Module):
  """Doubles height and width and maps to `features` channels."""
  features: int
  kind: str = 'pixel_shuffle'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.kind == 'pixel_shuffle':
      return depth_to_space(nn.Conv(4 * self.features, (3, 3))(x))
    if self.kind == 'nearest':
      b, h, w, c = x.shape
      x = jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest')
      return nn.Conv(self.features, (3, 3))(x)
    if self.kind == 'transpose':
      return nn.ConvTranspose(self.features, (4, 4), strides=(2, 2))(x)
    raise ValueError(f'upsample={self.kind!r}; choose one of {UPSAMPLE_KINDS}')


class ConvBlock(nn.Module):
  """`depth` times: 3x3 convolution, normalization, activation."""
  features: int
  depth: int = 1
  norm: str = 'none'
  activation: str = 'relu'
  norm_axis_name: Optional[str] = None
  kernel_init: Callable = nn.linear.default_kernel_init

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    act = activation(self.activation)
    for _ in range(self.depth):
      # A bias before a normalization is cancelled by it (and its gradient,
      # all round-off, would only add noise to Adam's updates).
      x = nn.Conv(self.features, (3, 3), use_bias=self.norm == 'none',
                  kernel_init=self.kernel_init)(x)
      x = act(Norm(self.norm, axis_name=self.norm_axis_name)(x, train))
    return x


class Encoder(nn.Module):
  """Image to latent: a stem, then per entry f of `features` a downsampling
  to f channels and `blocks_per_level` convolutions.

  Height and width must be multiples of `downsampling`.
  """
  features: Sequence[int] = _D['features']
  latent_features: int = _D['latent_features']
  blocks_per_level: int = _D['blocks_per_level']
  downsample: str = _D['downsample']
  norm: str = _D['norm']
  activation: str = _D['activation']
  norm_axis_name: Optional[str] = None

  @property
  def downsampling(self) -> int:
    """How much the encoder shrinks height and width."""
    return downsampling(self.features)

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    check_divisible(x_BxHxWxC, 'Encoder', self.features)
    _check_choice('downsample', self.downsample, DOWNSAMPLE_KINDS)
    _check_choice('norm', self.norm, NORM_KINDS)
    act = activation(self.activation)
    x = act(nn.Conv(self.features[0], (3, 3))(x_BxHxWxC))
    for f in self.features:
      x = act(Downsample(f, self.downsample)(x))
      x = ConvBlock(f, self.blocks_per_level, self.norm, self.activation,
                    self.norm_axis_name)(x, train)
    return nn.Conv(self.latent_features, (1, 1))(x)


class Decoder(nn.Module):
  """Latent to image, mirroring Encoder: per level from the deepest,
  `blocks_per_level` convolutions, then an upsampling to the channels of the
  level above."""
  features: Sequence[int] = _D['features']
  out_features: int = 3
  blocks_per_level: int = _D['blocks_per_level']
  upsample: str = _D['upsample']
  norm: str = _D['norm']
  activation: str = _D['activation']
  output_activation: str = _D['output_activation']
  norm_axis_name: Optional[str] = None

  @property
  def downsampling(self) -> int:
    """How much the decoder enlarges height and width."""
    return downsampling(self.features)

  @nn.compact
  def __call__(self, z_Bxhxwxk: jax.Array, train: bool = False) -> jax.Array:
    check_batch(z_Bxhxwxk, 'Decoder')
    _check_choice('upsample', self.upsample, UPSAMPLE_KINDS)
    _check_choice('norm', self.norm, NORM_KINDS)
    _check_choice('output_activation', self.output_activation,
                  OUTPUT_ACTIVATIONS)
    act = activation(self.activation)
    x = act(nn.Conv(self.features[-1], (1, 1))(z_Bxhxwxk))
    above = (self.features[0],) + tuple(self.features[:-1])
    for f, f_above in reversed(list(zip(self.features, above))):
      x = ConvBlock(f, self.blocks_per_level, self.norm, self.activation,
                    self.norm_axis_name)(x, train)
      x = act(Upsample(f_above, self.upsample)(x))
    y = nn.Conv(self.out_features, (3, 3))(x)
    if self.output_activation == 'sigmoid':
      y = nn.sigmoid(y)
    return y


class Autoencoder(nn.Module):
  """Encoder followed by decoder; `encode`/`decode` are usable alone.

  Called whole it takes images of any height and width: they are
  reflect-padded at the bottom and right to multiples of `downsampling`, and
  the output cropped back to the input's size. (With norm='batch' and
  train=True the padding takes part in the batch statistics.) `encode` alone
  needs multiples.
  """
  features: Sequence[int] = _D['features']
  latent_features: int = _D['latent_features']
  out_features: int = 3
  blocks_per_level: int = _D['blocks_per_level']
  downsample: str = _D['downsample']
  upsample: str = _D['upsample']
  norm: str = _D['norm']
  activation: str = _D['activation']
  output_activation: str = _D['output_activation']
  residual: bool = _D['residual']  # Predict the change to the input.
  norm_axis_name: Optional[str] = None

  def setup(self):
    common = dict(features=self.features, blocks_per_level=self.blocks_per_level,
                  norm=self.norm, activation=self.activation,
                  norm_axis_name=self.norm_axis_name)
    self.encoder = Encoder(latent_features=self.latent_features,
                           downsample=self.downsample, **common)
    self.decoder = Decoder(out_features=self.out_features,
                           upsample=self.upsample,
                           output_activation=self.output_activation, **common)

  upscale = 1  # The output has the input's size (see zoo.py).

  @property
  def downsampling(self) -> int:
    """How much the latent is smaller than the image in height and width."""
    return downsampling(self.features)

  def encode(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    """Image batch (sides multiples of `downsampling`) to latent."""
    return self.encoder(x_BxHxWxC, train)

  def decode(self, z_Bxhxwxk: jax.Array, train: bool = False) -> jax.Array:
    """Latent to image batch, `downsampling` times larger."""
    return self.decoder(z_Bxhxwxk, train)

  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    """Image batch of any size to output of the same height and width."""
    check_batch(x_BxHxWxC, 'Autoencoder')
    _, h, w, c = x_BxHxWxC.shape
    if self.residual and c not in (1, self.out_features):
      raise ValueError(
          f'residual=True adds the input to the output: the input needs 1 '
          f'or out_features={self.out_features} channels; got {c}')
    x_BxPxQxC = pad_to_multiple(x_BxHxWxC, self.downsampling)
    y_BxPxQxO = self.decode(self.encode(x_BxPxQxC, train), train)
    if self.residual:  # A 1-channel input is added to every output channel.
      y_BxPxQxO = y_BxPxQxO + jnp.broadcast_to(x_BxPxQxC, y_BxPxQxO.shape)
    return y_BxPxQxO[:, :h, :w]


# A tiny variant for tests and smoke runs.
TinyAutoencoder = functools.partial(Autoencoder, features=(8, 16),
                                    latent_features=16)


def count_params(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))
