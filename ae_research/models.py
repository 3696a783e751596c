"""Convolutional encoder, decoder and autoencoder as pure linen modules.

`init`/`apply` are the whole interface:

  model = Autoencoder(features=(32, 64), latent_features=64, out_features=3)
  variables = model.init(jax.random.key(0), x_BxHxWxC)
  y_BxHxWx3 = model.apply(variables, x_BxHxWxC)

Each resolution level halves (encoder) or doubles (decoder) height and width,
so inputs need sides divisible by 2**len(features).
"""

import functools
import math
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

DOWNSAMPLE_KINDS = ('stride', 'avgpool', 'space_to_depth')
UPSAMPLE_KINDS = ('pixel_shuffle', 'nearest', 'transpose')
NORM_KINDS = ('none', 'batch', 'group', 'layer')
ACTIVATIONS = {'relu': nn.relu, 'gelu': nn.gelu, 'silu': nn.silu,
               'leaky_relu': nn.leaky_relu}
OUTPUT_ACTIVATIONS = ('none', 'sigmoid')


def space_to_depth(x_BxHxWxC: jax.Array, block: int = 2) -> jax.Array:
  b, h, w, c = x_BxHxWxC.shape
  x = x_BxHxWxC.reshape(b, h // block, block, w // block, block, c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h // block, w // block, block * block * c)


def depth_to_space(x_BxHxWxC: jax.Array, block: int = 2) -> jax.Array:
  b, h, w, c = x_BxHxWxC.shape
  out_c = c // (block * block)
  x = x_BxHxWxC.reshape(b, h, w, block, block, out_c)
  x = x.transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h * block, w * block, out_c)


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

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    act = ACTIVATIONS[self.activation]
    for _ in range(self.depth):
      # A bias before a normalization is cancelled by it (and its gradient,
      # all round-off, would only add noise to Adam's updates).
      x = nn.Conv(self.features, (3, 3), use_bias=self.norm == 'none')(x)
      x = act(Norm(self.norm, axis_name=self.norm_axis_name)(x, train))
    return x


class Encoder(nn.Module):
  """Image to latent: a stem, then per entry f of `features` a downsampling
  to f channels and `blocks_per_level` convolutions."""
  features: Sequence[int] = (32, 64)
  latent_features: int = 64
  blocks_per_level: int = 1
  downsample: str = 'stride'
  norm: str = 'none'
  activation: str = 'relu'
  norm_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    act = ACTIVATIONS[self.activation]
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
  features: Sequence[int] = (32, 64)
  out_features: int = 3
  blocks_per_level: int = 1
  upsample: str = 'pixel_shuffle'
  norm: str = 'none'
  activation: str = 'relu'
  output_activation: str = 'none'
  norm_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, z_Bxhxwxk: jax.Array, train: bool = False) -> jax.Array:
    act = ACTIVATIONS[self.activation]
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
  """Encoder followed by decoder; `encode`/`decode` are usable alone."""
  features: Sequence[int] = (32, 64)
  latent_features: int = 64
  out_features: int = 3
  blocks_per_level: int = 1
  downsample: str = 'stride'
  upsample: str = 'pixel_shuffle'
  norm: str = 'none'
  activation: str = 'relu'
  output_activation: str = 'none'
  residual: bool = False  # Predict the change to the input, not the image.
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

  def encode(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    return self.encoder(x_BxHxWxC, train)

  def decode(self, z_Bxhxwxk: jax.Array, train: bool = False) -> jax.Array:
    return self.decoder(z_Bxhxwxk, train)

  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    y = self.decode(self.encode(x_BxHxWxC, train), train)
    if self.residual:  # A 1-channel input is added to every output channel.
      y = y + jnp.broadcast_to(x_BxHxWxC, y.shape)
    return y


# A tiny variant for tests and smoke runs.
TinyAutoencoder = functools.partial(Autoencoder, features=(8, 16),
                                    latent_features=16)


def count_params(params: Any) -> int:
  return sum(x.size for x in jax.tree.leaves(params))


MODEL_FIELDS = ('features', 'latent_features', 'blocks_per_level', 'downsample',
                'upsample', 'norm', 'activation', 'output_activation',
                'residual')


def from_config(model_config: Any, out_features: int,
                norm_axis_name: Optional[str] = None) -> Autoencoder:
  """Builds the Autoencoder that `config.model` describes."""
  kwargs = {k: model_config[k] for k in MODEL_FIELDS}
  kwargs['features'] = tuple(kwargs['features'])
  return Autoencoder(out_features=out_features, norm_axis_name=norm_axis_name,
                     **kwargs)
