"""The field's reference models for restoration, as pure linen modules.

Importable and used like `models.Autoencoder` (`init`/`apply`, a batch
BxHxWxC in, `train=` for batch norm):

  model = zoo.DnCNN()                                  # denoising
  model = zoo.FFDNet()                                 # noisy RGB + sigma map
  model = zoo.EDSR(scale=3)                            # low resolution in
  variables = model.init(jax.random.key(0), x_BxHxWxC)
  y = model.apply(variables, x_BxHxWxC)

Every model says how its input must be sized and what it gives back:
`downsampling` (height and width must be multiples of it; the whole-image
evaluation and `apply` pad to it) and `upscale` (the output is this many
times larger: the super-resolution models compute at low resolution and
upsample once, at the end, with a sub-pixel convolution).

- `DnCNN` (Zhang et al., TIP 2017): `depth` 3x3 convolutions of `width`
  channels with batch norm, predicting the noise that is subtracted.
- `FFDNet` (Zhang, Zuo, Zhang, TIP 2018): pixel unshuffle to half
  resolution, the noise level as an extra input channel (the last channel
  of the input holds sigma / 255 everywhere), so one model serves a range
  of noise levels; pixel shuffle back.
- `UNet` (Ronneberger et al. 2015): an encoder-decoder whose decoder levels
  concatenate the encoder's features of the same resolution.
- `ESPCN` (Shi et al. 2016), `FSRCNN` (Dong et al. 2016, with a sub-pixel
  layer in place of its transposed convolution) and `EDSR` (Lim et al.
  2017; the baseline is 16 residual blocks of 64 channels): low resolution
  in, `scale` times larger out. With `bicubic_skip` they add their output
  to a bicubic upsampling of the input (learning only the missing detail).

Each is declared in `ae_research/archs.py` (its config fields, defaults,
checks, smoke sizes and capabilities), which names its class here; the
classes read their defaults from there, and this module checks at import
that every declaration and its class agree. `from_config(config.model,
out_features, ...)` builds the model that `config.model.arch` names: the
one way to build an image-to-image model from a config (the compression
task's codecs, a family of their own, are `compression.from_config`).
"""

import dataclasses
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ae_research import archs, color, models

Autoencoder = models.Autoencoder  # config.model.arch 'autoencoder'.


def _residual_base(x_BxHxWxC: jax.Array, out_features: int) -> jax.Array:
  """The part of the input an output of `out_features` channels adds to:
  the first `out_features` channels (a noise map after them is not an image),
  or a 1-channel input broadcast to every output channel."""
  c = x_BxHxWxC.shape[-1]
  if c == 1:
    return jnp.broadcast_to(x_BxHxWxC, x_BxHxWxC.shape[:3] + (out_features,))
  if c < out_features:
    raise ValueError(f'a residual output of {out_features} channels adds the '
                     f'input to it: the input needs 1 or at least '
                     f'{out_features} channels; got {c}')
  return x_BxHxWxC[..., :out_features]


class PlainStack(nn.Module):
  """`depth` 3x3 convolutions of `width` channels (DnCNN's and FFDNet's
  body): ReLU after the first, normalization and ReLU after the middle
  ones; the last one (`last`) gives `out_features` channels. He
  initialization: with flax's default (LeCun) a 12-layer stack without
  normalization passes on 1/60 of its input's scale, and trains slowly."""
  depth: int
  width: int
  out_features: int
  norm: str = 'none'
  norm_axis_name: Optional[str] = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    if self.depth < 2:
      raise ValueError(f'depth={self.depth}: needs at least 2 layers')
    he = nn.initializers.kaiming_normal()
    x = nn.relu(nn.Conv(self.width, (3, 3), kernel_init=he, name='first')(x))
    x = models.ConvBlock(self.width, self.depth - 2, self.norm, 'relu',
                         self.norm_axis_name, kernel_init=he)(x, train)
    return nn.Conv(self.out_features, (3, 3), name='last')(x)


_DNCNN = archs.get('dncnn').defaults


class DnCNN(nn.Module):
  """A plain stack of 3x3 convolutions at full resolution; with `residual`
  it predicts the noise and returns input minus noise."""
  depth: int = _DNCNN['depth']
  width: int = _DNCNN['width']
  norm: str = _DNCNN['norm']
  residual: bool = _DNCNN['residual']
  out_features: int = 3
  norm_axis_name: Optional[str] = None

  downsampling = 1
  upscale = 1

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    models.check_batch(x_BxHxWxC, 'DnCNN')
    y = PlainStack(self.depth, self.width, self.out_features, self.norm,
                   self.norm_axis_name, name='body')(x_BxHxWxC, train)
    if self.residual:  # y is the noise.
      return _residual_base(x_BxHxWxC, self.out_features) - y
    return y


_FFDNET = archs.get('ffdnet').defaults


class FFDNet(nn.Module):
  """Half resolution after pixel unshuffle, with a noise-level map.

  The input's last channel is the noise map (sigma / 255 at every pixel);
  the others are the noisy image. Sides of any size (padded to even).
  """
  depth: int = _FFDNET['depth']
  width: int = _FFDNET['width']
  norm: str = _FFDNET['norm']
  residual: bool = _FFDNET['residual']
  out_features: int = 3
  norm_axis_name: Optional[str] = None

  downsampling = 2
  upscale = 1

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    models.check_batch(x_BxHxWxC, 'FFDNet')
    if x_BxHxWxC.shape[-1] < 2:
      raise ValueError('FFDNet takes the noisy image and, as its last '
                       'channel, the noise map (sigma / 255); got '
                       f'{x_BxHxWxC.shape[-1]} channel(s)')
    _, h, w, _ = x_BxHxWxC.shape
    x_pad = models.pad_to_multiple(x_BxHxWxC, 2)
    image, sigma = x_pad[..., :-1], x_pad[..., -1:]
    x = jnp.concatenate([models.space_to_depth(image), sigma[:, ::2, ::2]], -1)
    y = PlainStack(self.depth, self.width, 4 * self.out_features, self.norm,
                   self.norm_axis_name, name='body')(x, train)
    y = models.depth_to_space(y)
    if self.residual:
      y = y + _residual_base(image, self.out_features)
    return y[:, :h, :w]


_UNET = archs.get('unet').defaults


class UNet(nn.Module):
  """Per entry f of `features`: `blocks_per_level` convolutions of f
  channels, then (but for the last) a downsampling; the decoder upsamples,
  concatenates the encoder's features of that level and convolves.

  Any input size (padded to multiples of `downsampling`). With `residual`
  the output is added to the input (1 channel: to every output channel).
  """
  features: Sequence[int] = _UNET['features']
  blocks_per_level: int = _UNET['blocks_per_level']
  downsample: str = _UNET['downsample']
  upsample: str = _UNET['upsample']
  norm: str = _UNET['norm']
  activation: str = _UNET['activation']
  output_activation: str = _UNET['output_activation']
  residual: bool = _UNET['residual']
  out_features: int = 3
  norm_axis_name: Optional[str] = None

  upscale = 1

  @property
  def downsampling(self) -> int:
    return 2 ** (len(self.features) - 1)

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    models.check_batch(x_BxHxWxC, 'UNet')
    _, h, w, _ = x_BxHxWxC.shape
    x_pad = models.pad_to_multiple(x_BxHxWxC, self.downsampling)
    block = lambda f: models.ConvBlock(f, self.blocks_per_level, self.norm,
                                       self.activation, self.norm_axis_name)
    act = models.activation(self.activation)
    x = act(nn.Conv(self.features[0], (3, 3))(x_pad))
    skips = []
    for i, f in enumerate(self.features):
      if i:
        x = act(models.Downsample(f, self.downsample)(x))
      x = block(f)(x, train)
      skips.append(x)
    for f, skip in reversed(list(zip(self.features[:-1], skips[:-1]))):
      x = act(models.Upsample(f, self.upsample)(x))
      x = block(f)(jnp.concatenate([x, skip], -1), train)
    y = nn.Conv(self.out_features, (3, 3))(x)
    if self.residual:
      y = y + _residual_base(x_pad, self.out_features)
    if self.output_activation == 'sigmoid':
      y = nn.sigmoid(y)
    return y[:, :h, :w]


class _Around(nn.Module):
  """A model around an `inner` one, taking the sizes it takes."""
  inner: nn.Module

  @property
  def downsampling(self) -> int:
    return self.inner.downsampling

  @property
  def upscale(self) -> int:
    return self.inner.upscale


class Inpainter(_Around):
  """An image-to-image model that changes only the pixels it should, for
  damage that destroys some pixels and leaves the rest as they were (a
  drawn crosshair, removed blocks).

  'told': the input's last channel is the mask of destroyed pixels (1
  there), and `inner` (RGB out) fills them; every other pixel is the
  input's: out = x + mask * (inner(x) - x).
  'gated' (blind): `inner` gives RGB and a gate logit (4 channels), and the
  model learns where to change: out = x + sigmoid(gate) * (fill - x).
  """
  mode: str  # 'told' or 'gated'.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    image = x_BxHxWxC[..., :3]
    y = self.inner(x_BxHxWxC, train)
    if self.mode == 'told':
      gate = x_BxHxWxC[..., 3:4]
      fill = y
    elif self.mode == 'gated':
      gate, fill = nn.sigmoid(y[..., 3:4]), y[..., :3]
    else:
      raise ValueError(f"Inpainter mode={self.mode!r}; 'told' or 'gated'")
    return image + gate * (fill - image)


def chroma_bin_centers(bins: int, chroma_max: float) -> jnp.ndarray:
  """The (Cb, Cr) centres of a bins x bins grid over [-chroma_max,
  chroma_max]^2, Cb-major: [bins * bins, 2]."""
  axis = jnp.linspace(-chroma_max, chroma_max, bins)
  cb, cr = jnp.meshgrid(axis, axis, indexing='ij')
  return jnp.stack([cb.ravel(), cr.ravel()], -1)


class ChromaClassifier(_Around):
  """Colorization as classification over the chroma plane (R. Zhang, P.
  Isola, A. Efros, "Colorful Image Colorization", ECCV 2016): a regression
  to the mean colour averages the plausible colours of a pixel into gray,
  a distribution over them does not.

  `inner` maps the luma to `hidden` features; a 1x1 layer gives the logits
  of bins x bins (Cb, Cr) bins (`chroma_bin_centers`), and the output is the
  annealed mean of that distribution (softmax of logits / `temperature`;
  the paper's 0.38 lies between the mean, 1, and the mode, 0) added to the
  input luma, as RGB (`color.from_luma_chroma`). With `train` the logits
  follow the RGB channels (3 + bins**2; the task's loss reads both).
  """
  bins: int
  chroma_max: float
  temperature: float

  @nn.compact
  def __call__(self, x_BxHxWx1: jax.Array, train: bool = False) -> jax.Array:
    features = nn.relu(self.inner(x_BxHxWx1, train))
    logits = nn.Conv(self.bins ** 2, (1, 1), name='logits')(features)
    p = jax.nn.softmax(logits.astype(jnp.float32) / self.temperature, -1)
    cbcr = p @ chroma_bin_centers(self.bins, self.chroma_max)
    rgb = color.from_luma_chroma(x_BxHxWx1[..., :1].astype(jnp.float32), cbcr)
    rgb = rgb.astype(logits.dtype)
    return jnp.concatenate([rgb, logits], -1) if train else rgb


def bicubic_upsample(x_BxHxWxC: jax.Array, scale: int) -> jax.Array:
  """Keys bicubic (a = -0.5) upsampling by `scale`, inside the graph."""
  b, h, w, c = x_BxHxWxC.shape
  return jax.image.resize(x_BxHxWxC, (b, h * scale, w * scale, c), 'cubic')


def _check_scale(scale: int, who: str) -> None:
  if scale not in (2, 3, 4):
    raise ValueError(f'{who} scale={scale}; choose 2, 3 or 4')


class _SuperResolution(nn.Module):
  """What the low-resolution models share: the sub-pixel output layer and
  the optional bicubic skip."""

  downsampling = 1

  @property
  def upscale(self) -> int:
    return self.scale

  def finish(self, x_BxHxWxC: jax.Array, features: jax.Array) -> jax.Array:
    """A 3x3 convolution to scale² x out channels, pixel shuffle, and the
    bicubic upsampling of the input added with `bicubic_skip`."""
    y = nn.Conv(self.scale ** 2 * self.out_features, (3, 3))(features)
    y = models.depth_to_space(y, self.scale)
    if self.bicubic_skip:
      y = y + _residual_base(bicubic_upsample(x_BxHxWxC, self.scale),
                             self.out_features)
    return y


_ESPCN = archs.get('espcn').defaults


class ESPCN(_SuperResolution):
  """5x5 then 3x3 convolutions at low resolution (`widths`), tanh, then the
  sub-pixel layer."""
  scale: int = 3
  widths: Sequence[int] = _ESPCN['widths']
  activation: str = _ESPCN['activation']
  bicubic_skip: bool = _ESPCN['bicubic_skip']
  out_features: int = 3
  norm_axis_name: Optional[str] = None  # Unused: no normalization.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    del train
    models.check_batch(x_BxHxWxC, 'ESPCN')
    _check_scale(self.scale, 'ESPCN')
    act = models.activation(self.activation)
    x = x_BxHxWxC
    for i, f in enumerate(self.widths):
      x = act(nn.Conv(f, (5, 5) if i == 0 else (3, 3))(x))
    return self.finish(x_BxHxWxC, x)


_FSRCNN = archs.get('fsrcnn').defaults


class FSRCNN(_SuperResolution):
  """Feature extraction (5x5, `width`), shrinking (1x1, `shrink`),
  `mapping_layers` 3x3 convolutions, expanding (1x1, `width`), PReLU
  after each; then the sub-pixel layer."""
  scale: int = 3
  width: int = _FSRCNN['width']
  shrink: int = _FSRCNN['shrink']
  mapping_layers: int = _FSRCNN['mapping_layers']
  bicubic_skip: bool = _FSRCNN['bicubic_skip']
  out_features: int = 3
  norm_axis_name: Optional[str] = None  # Unused: no normalization.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    del train
    models.check_batch(x_BxHxWxC, 'FSRCNN')
    _check_scale(self.scale, 'FSRCNN')
    layers = ([(self.width, 5), (self.shrink, 1)] +
              [(self.shrink, 3)] * self.mapping_layers + [(self.width, 1)])
    x = x_BxHxWxC
    for f, k in layers:
      x = nn.PReLU(negative_slope_init=0.25)(nn.Conv(f, (k, k))(x))
    return self.finish(x_BxHxWxC, x)


_EDSR = archs.get('edsr').defaults


class EDSR(_SuperResolution):
  """A 3x3 head, `num_blocks` residual blocks (conv, ReLU, conv, scaled by
  `res_scale`) and a 3x3 convolution with a long skip over them, all at low
  resolution; then EDSR's upsampler: a convolution to scale² x `width`
  channels and pixel shuffle (x4 in two x2 steps), and a 3x3 convolution to
  the output channels."""
  scale: int = 3
  num_blocks: int = _EDSR['num_blocks']
  width: int = _EDSR['width']
  res_scale: float = _EDSR['res_scale']
  bicubic_skip: bool = _EDSR['bicubic_skip']
  out_features: int = 3
  norm_axis_name: Optional[str] = None  # Unused: no normalization.

  @nn.compact
  def __call__(self, x_BxHxWxC: jax.Array, train: bool = False) -> jax.Array:
    del train
    models.check_batch(x_BxHxWxC, 'EDSR')
    _check_scale(self.scale, 'EDSR')
    # EDSR subtracts the training set's mean color; 0.5 is the middle of [0, 1].
    head = nn.Conv(self.width, (3, 3))(x_BxHxWxC - 0.5)
    x = head
    for _ in range(self.num_blocks):
      r = nn.Conv(self.width, (3, 3))(nn.relu(nn.Conv(self.width, (3, 3))(x)))
      x = x + self.res_scale * r
    x = nn.Conv(self.width, (3, 3))(x) + head
    for step in ((2, 2) if self.scale == 4 else (self.scale,)):
      x = models.depth_to_space(nn.Conv(step ** 2 * self.width, (3, 3))(x), step)
    y = nn.Conv(self.out_features, (3, 3))(x)
    if self.bicubic_skip:
      return y + _residual_base(bicubic_upsample(x_BxHxWxC, self.scale),
                                self.out_features)
    return y + 0.5


def model_class(arch: archs.Arch) -> type[nn.Module]:
  """The class of this module that `arch` names, checked against its
  declaration: every declared field is a field of the class with the
  declared default, and the class has what the loop uses. Raises
  archs.ArchError naming the architecture and what is missing where."""
  where = (f'architecture {arch.name!r} (ae_research/archs.py) names '
           f'module={arch.module!r}')
  cls = globals().get(arch.module)
  if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
    raise archs.ArchError(f'{where}, but ae_research/zoo.py has no linen '
                          f'module of that name: define class '
                          f'{arch.module}(nn.Module) there')
  fields = {f.name: f for f in dataclasses.fields(cls)}
  needed = list(arch.fields) + ['out_features', 'norm_axis_name'] + (
      ['scale'] if arch.low_resolution else [])
  missing = [name for name in needed if name not in fields]
  if missing:
    raise archs.ArchError(f'{where}; zoo.{arch.module} lacks the field(s) '
                          f'{missing}: add them to the class')
  for name, declared in arch.fields.items():
    default = fields[name].default
    if default is not dataclasses.MISSING and default != declared.default:
      raise archs.ArchError(
          f'{where}; zoo.{arch.module}.{name} defaults to {default!r} but the '
          f'declaration says {declared.default!r}: read it from there '
          f"(archs.get({arch.name!r}).defaults[{name!r}])")
  for attribute in ('downsampling', 'upscale'):
    if not hasattr(cls, attribute):
      raise archs.ArchError(f'{where}; zoo.{arch.module} has no '
                            f'{attribute!r}: give it as a class attribute '
                            'or a property (see this module\'s docstring)')
  return cls


def check_registry() -> None:
  """Raises archs.ArchError if a declared architecture and its class
  disagree."""
  for arch in archs.REGISTRY.values():
    model_class(arch)


check_registry()

# The names of the architectures with each capability (archs.Arch has the
# flags; these are for membership tests).
SUPER_RESOLUTION_ARCHS = tuple(
    name for name, arch in archs.REGISTRY.items() if arch.low_resolution)
NOISE_MAP_ARCHS = tuple(
    name for name, arch in archs.REGISTRY.items() if arch.noise_map)


def from_config(model_config: Any, out_features: int,
                norm_axis_name: Optional[str] = None,
                scale: int = 1) -> nn.Module:
  """The model `config.model` describes: `config.model.arch` names it (see
  archs.py), and its fields configure it. `scale` is the super-resolution
  factor of the models that take the low-resolution image; the others
  ignore it."""
  arch = archs.get(model_config.get('arch', 'autoencoder'))
  kwargs = {k: model_config[k] for k in arch.fields}
  for k, v in kwargs.items():
    if isinstance(v, list):
      kwargs[k] = tuple(v)
  if arch.low_resolution:
    kwargs['scale'] = scale
  return model_class(arch)(out_features=out_features,
                           norm_axis_name=norm_axis_name, **kwargs)
