"""PyTorch twins of the flax models, for benchmarks/train_speed.py.

  net = torch_twins.twin(config.model, in_features, out_features, scale)
  net = torch_twins.twin_factorized(features, latent_features, upsample)

`twin` builds, in PyTorch, the architecture that
`zoo.from_config(config.model, out_features, scale=scale)` builds in flax,
for each `config.model.arch` in `TWINS` (an architecture without a twin
raises `NoTwin`, and the benchmark skips its row); `twin_factorized` that of
`compression.FactorizedPrior`. Same layers in the same order, same widths,
kernel sizes, strides and padding, hence the same parameter count and the
same computation per step; not the same numbers (initialization differs, and
so does the channel order of pixel (un)shuffle, which permutes channels
without changing the cost). Tensors are NCHW.
"""

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ae_research import archs

ACTIVATIONS = {
    'relu': nn.ReLU,
    'gelu': lambda: nn.GELU(approximate='tanh'),  # flax's nn.gelu default.
    'silu': nn.SiLU,
    'leaky_relu': lambda: nn.LeakyReLU(0.01),
    'tanh': nn.Tanh,
}


def conv(cin: int, cout: int, k: int = 3, stride: int = 1,
         bias: bool = True) -> nn.Module:
  """flax nn.Conv with 'SAME' padding: k // 2 on each side at stride 1; at
  stride 2 on even sides XLA pads (k - 2) // 2 before and the rest after."""
  if stride == 1:
    return nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)
  before = (k - stride) // 2
  after = k - stride - before
  return nn.Sequential(nn.ZeroPad2d((before, after, before, after)),
                       nn.Conv2d(cin, cout, k, stride, bias=bias))


class ChannelLayerNorm(nn.LayerNorm):
  """flax nn.LayerNorm on NCHW: normalizes over the channels only."""

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_norm(kind: str, c: int) -> nn.Module:
  """models.Norm: flax's epsilons and batch-norm momentum."""
  if kind == 'none':
    return nn.Identity()
  if kind == 'batch':
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)
  if kind == 'group':
    return nn.GroupNorm(math.gcd(8, c), c, eps=1e-6)
  if kind == 'layer':
    return ChannelLayerNorm(c, eps=1e-6)
  raise ValueError(f'norm={kind!r}')


def conv_block(cin: int, features: int, depth: int, norm_kind: str,
               activation: str) -> list[nn.Module]:
  """models.ConvBlock: `depth` times conv (no bias before a norm), norm,
  activation; the first convolution takes `cin` channels."""
  layers = []
  for i in range(depth):
    layers += [conv(cin if i == 0 else features, features,
                    bias=norm_kind == 'none'),
               make_norm(norm_kind, features), ACTIVATIONS[activation]()]
  return layers


def make_down(kind: str, cin: int, cout: int) -> nn.Module:
  """models.Downsample."""
  if kind == 'stride':
    return conv(cin, cout, 3, 2)
  if kind == 'avgpool':
    return nn.Sequential(nn.AvgPool2d(2), conv(cin, cout))
  if kind == 'space_to_depth':
    return nn.Sequential(nn.PixelUnshuffle(2), conv(4 * cin, cout))
  raise ValueError(f'downsample={kind!r}')


def make_up(kind: str, cin: int, cout: int) -> nn.Module:
  """models.Upsample."""
  if kind == 'pixel_shuffle':
    return nn.Sequential(conv(cin, 4 * cout), nn.PixelShuffle(2))
  if kind == 'nearest':
    return nn.Sequential(nn.Upsample(scale_factor=2, mode='nearest'),
                         conv(cin, cout))
  if kind == 'transpose':
    return nn.ConvTranspose2d(cin, cout, 4, 2, padding=1)
  raise ValueError(f'upsample={kind!r}')


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
  """models.pad_to_multiple: reflect (edge when too small) at bottom and right."""
  h, w = x.shape[-2:]
  ph, pw = -h % multiple, -w % multiple
  if not (ph or pw):
    return x
  mode = 'reflect' if min(h, w) > max(ph, pw) else 'replicate'
  return F.pad(x, (0, pw, 0, ph), mode=mode)


def residual_base(x: torch.Tensor, out_features: int) -> torch.Tensor:
  """zoo._residual_base: a 1-channel input broadcast, else its first
  `out_features` channels."""
  if x.shape[1] == 1:
    return x.expand(-1, out_features, -1, -1)
  return x[:, :out_features]


class Autoencoder(nn.Module):
  """models.Autoencoder."""

  def __init__(self, in_features: int, out_features: int,
               features: Sequence[int], latent_features: int,
               blocks_per_level: int, downsample: str, upsample: str,
               norm: str, activation: str, output_activation: str,
               residual: bool):
    super().__init__()
    f = tuple(features)
    act = ACTIVATIONS[activation]
    layers = [conv(in_features, f[0]), act()]
    cin = f[0]
    for c in f:
      layers += [make_down(downsample, cin, c), act()]
      layers += conv_block(c, c, blocks_per_level, norm, activation)
      cin = c
    layers.append(conv(cin, latent_features, 1))
    self.encoder = nn.Sequential(*layers)
    layers = [conv(latent_features, f[-1], 1), act()]
    above = (f[0],) + f[:-1]
    for c, c_above in reversed(list(zip(f, above))):
      layers += conv_block(c, c, blocks_per_level, norm, activation)
      layers += [make_up(upsample, c, c_above), act()]
    layers.append(conv(f[0], out_features))
    if output_activation == 'sigmoid':
      layers.append(nn.Sigmoid())
    self.decoder = nn.Sequential(*layers)
    self.residual = residual
    self.multiple = 2 ** len(f)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    x = pad_to_multiple(x, self.multiple)
    y = self.decoder(self.encoder(x))
    if self.residual:
      y = y + x.expand_as(y)
    return y[..., :h, :w]


class UNet(nn.Module):
  """zoo.UNet."""

  def __init__(self, in_features: int, out_features: int,
               features: Sequence[int], blocks_per_level: int,
               downsample: str, upsample: str, norm: str, activation: str,
               output_activation: str, residual: bool):
    super().__init__()
    f = tuple(features)
    act = ACTIVATIONS[activation]
    block = lambda cin, c: conv_block(cin, c, blocks_per_level, norm, activation)
    self.stem = nn.Sequential(conv(in_features, f[0]), act())
    self.levels = nn.ModuleList(
        nn.Sequential(*([make_down(downsample, f[i - 1], c), act()]
                        if i else []), *block(c, c))
        for i, c in enumerate(f))
    pairs = list(reversed(list(zip(f[:-1], f[1:]))))
    self.ups = nn.ModuleList(
        nn.Sequential(make_up(upsample, below, c), act())
        for c, below in pairs)
    self.merges = nn.ModuleList(nn.Sequential(*block(2 * c, c))
                                for c, _ in pairs)
    self.head = conv(f[0], out_features)
    self.out_features = out_features
    self.residual = residual
    self.sigmoid = output_activation == 'sigmoid'
    self.multiple = 2 ** (len(f) - 1)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    x_pad = pad_to_multiple(x, self.multiple)
    x = self.stem(x_pad)
    skips = []
    for level in self.levels:
      x = level(x)
      skips.append(x)
    for up, merge, skip in zip(self.ups, self.merges, reversed(skips[:-1])):
      x = merge(torch.cat([up(x), skip], 1))
    y = self.head(x)
    if self.residual:
      y = y + residual_base(x_pad, self.out_features)
    if self.sigmoid:
      y = torch.sigmoid(y)
    return y[..., :h, :w]


def plain_stack(cin: int, depth: int, width: int, out_features: int,
                norm_kind: str) -> nn.Sequential:
  """zoo.PlainStack: conv and ReLU, `depth` - 2 conv blocks, a last conv."""
  return nn.Sequential(conv(cin, width), nn.ReLU(),
                       *conv_block(width, width, depth - 2, norm_kind, 'relu'),
                       conv(width, out_features))


class DnCNN(nn.Module):
  """zoo.DnCNN."""

  def __init__(self, in_features: int, out_features: int, depth: int,
               width: int, norm: str, residual: bool):
    super().__init__()
    self.body = plain_stack(in_features, depth, width, out_features, norm)
    self.out_features = out_features
    self.residual = residual

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.body(x)
    if self.residual:
      return residual_base(x, self.out_features) - y
    return y


class FFDNet(nn.Module):
  """zoo.FFDNet: the input's last channel is the noise map."""

  def __init__(self, in_features: int, out_features: int, depth: int,
               width: int, norm: str, residual: bool):
    super().__init__()
    self.body = plain_stack(4 * (in_features - 1) + 1, depth, width,
                            4 * out_features, norm)
    self.out_features = out_features
    self.residual = residual

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2:]
    x_pad = pad_to_multiple(x, 2)
    image, sigma = x_pad[:, :-1], x_pad[:, -1:]
    y = self.body(torch.cat([F.pixel_unshuffle(image, 2),
                             sigma[:, :, ::2, ::2]], 1))
    y = F.pixel_shuffle(y, 2)
    if self.residual:
      y = y + residual_base(image, self.out_features)
    return y[..., :h, :w]


class SuperResolution(nn.Module):
  """zoo._SuperResolution: `body` at low resolution (giving `width`
  channels), then a 3x3 conv to scale² x out channels and pixel shuffle,
  plus the bicubic upsampling of the input with `bicubic_skip`."""

  def __init__(self, body: nn.Module, width: int, out_features: int,
               scale: int, bicubic_skip: bool):
    super().__init__()
    self.body = body
    self.tail = nn.Sequential(conv(width, scale ** 2 * out_features),
                              nn.PixelShuffle(scale))
    self.out_features = out_features
    self.scale = scale
    self.bicubic_skip = bicubic_skip

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.tail(self.body(x))
    if self.bicubic_skip:
      y = y + residual_base(bicubic(x, self.scale), self.out_features)
    return y


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
  """zoo.bicubic_upsample's cost (not its exact numbers: torch's kernel is
  a = -0.75)."""
  return F.interpolate(x, scale_factor=scale, mode='bicubic',
                       align_corners=False)


def espcn(in_features: int, out_features: int, scale: int,
          widths: Sequence[int], activation: str,
          bicubic_skip: bool) -> nn.Module:
  """zoo.ESPCN: a 5x5 conv then 3x3 convs, each followed by `activation`."""
  layers, cin = [], in_features
  for i, f in enumerate(widths):
    layers += [conv(cin, f, 5 if i == 0 else 3), ACTIVATIONS[activation]()]
    cin = f
  return SuperResolution(nn.Sequential(*layers), cin, out_features, scale,
                         bicubic_skip)


def fsrcnn(in_features: int, out_features: int, scale: int, width: int,
           shrink: int, mapping_layers: int, bicubic_skip: bool) -> nn.Module:
  """zoo.FSRCNN: conv and PReLU layers (flax's nn.PReLU: one slope per
  layer, not per channel)."""
  shapes = ([(width, 5), (shrink, 1)] + [(shrink, 3)] * mapping_layers +
            [(width, 1)])
  layers, cin = [], in_features
  for f, k in shapes:
    layers += [conv(cin, f, k), nn.PReLU(1, init=0.25)]
    cin = f
  return SuperResolution(nn.Sequential(*layers), width, out_features, scale,
                         bicubic_skip)


class EDSR(nn.Module):
  """zoo.EDSR: head, residual blocks and a long skip at low resolution, the
  upsampler (x4 as two x2 steps) and a 3x3 conv to the output."""

  def __init__(self, in_features: int, out_features: int, scale: int,
               num_blocks: int, width: int, res_scale: float,
               bicubic_skip: bool):
    super().__init__()
    self.head = conv(in_features, width)
    self.blocks = nn.ModuleList(
        nn.Sequential(conv(width, width), nn.ReLU(), conv(width, width))
        for _ in range(num_blocks))
    self.body_end = conv(width, width)
    layers = []
    for step in ((2, 2) if scale == 4 else (scale,)):
      layers += [conv(width, step ** 2 * width), nn.PixelShuffle(step)]
    self.upsampler = nn.Sequential(*layers)
    self.tail = conv(width, out_features)
    self.out_features = out_features
    self.scale = scale
    self.res_scale = res_scale
    self.bicubic_skip = bicubic_skip

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    head = self.head(x - 0.5)
    h = head
    for block in self.blocks:
      h = h + self.res_scale * block(h)
    y = self.tail(self.upsampler(self.body_end(h) + head))
    if self.bicubic_skip:
      return y + residual_base(bicubic(x, self.scale), self.out_features)
    return y + 0.5


# The twin of each architecture of ae_research/archs.py that has one.
TWINS = {
    'autoencoder': Autoencoder,
    'unet': UNet,
    'dncnn': DnCNN,
    'ffdnet': FFDNet,
    'espcn': espcn,
    'fsrcnn': fsrcnn,
    'edsr': EDSR,
}


class NoTwin(LookupError):
  """The architecture has no PyTorch twin here."""


def twin(model_config: Any, in_features: int, out_features: int,
         scale: int = 1) -> nn.Module:
  """The PyTorch twin of `zoo.from_config(model_config, out_features,
  scale=scale)`, taking inputs of `in_features` channels."""
  arch = archs.get(model_config.get('arch', 'autoencoder'))
  if arch.name not in TWINS:
    raise NoTwin(f'no PyTorch twin of config.model.arch={arch.name!r}: add '
                 'one to TWINS in benchmarks/torch_twins.py')
  fields = {k: model_config[k] for k in arch.fields}
  if arch.low_resolution:
    fields['scale'] = scale
  return TWINS[arch.name](in_features=in_features, out_features=out_features,
                          **fields)


# ----------------------------------------------------------- compression
class GDN(nn.Module):
  """compression.GDN, computed in float32 (autocast off) like flax's."""

  def __init__(self, channels: int, inverse: bool = False):
    super().__init__()
    self.beta_sqrt = nn.Parameter(torch.ones(channels))
    self.gamma_sqrt = nn.Parameter(
        torch.sqrt(0.1 * torch.eye(channels) + 1e-6))
    self.inverse = inverse

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    dtype = x.dtype
    with torch.autocast(x.device.type, enabled=False):
      x = x.float()
      beta = torch.square(self.beta_sqrt) + 1e-6
      gamma = torch.square(self.gamma_sqrt).T  # [out i, in j].
      norm_ = torch.sqrt(F.conv2d(torch.square(x), gamma[:, :, None, None],
                                  beta))
      return (x * norm_ if self.inverse else x / norm_).to(dtype)


def _softplus_inverse(x: float) -> float:
  return math.log(math.expm1(x))


class EntropyBottleneck(nn.Module):
  """compression.EntropyBottleneck: per channel, the likelihood of the unit
  bin around each latent value, in float32."""

  def __init__(self, channels: int, filters: Sequence[int] = (3, 3, 3),
               init_scale: float = 10.0):
    super().__init__()
    dims = (1,) + tuple(filters) + (1,)
    scale = init_scale ** (1.0 / (len(filters) + 1))
    self.matrices = nn.ParameterList()
    self.biases = nn.ParameterList()
    self.factors = nn.ParameterList()
    for i in range(len(dims) - 1):
      value = _softplus_inverse(1.0 / scale / dims[i + 1])
      self.matrices.append(nn.Parameter(
          torch.full((channels, dims[i + 1], dims[i]), value)))
      self.biases.append(nn.Parameter(
          torch.rand(channels, dims[i + 1], 1) - 0.5))
      if i < len(dims) - 2:
        self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))

  def cdf_logits(self, x_CxN: torch.Tensor) -> torch.Tensor:
    x = x_CxN[:, None, :]
    for i, (m, b) in enumerate(zip(self.matrices, self.biases)):
      x = torch.bmm(F.softplus(m), x) + b
      if i < len(self.factors):
        x = x + torch.tanh(self.factors[i]) * torch.tanh(x)
    return x[:, 0, :]

  def forward(self, y: torch.Tensor) -> torch.Tensor:
    with torch.autocast(y.device.type, enabled=False):
      c = y.shape[1]
      y_CxN = y.float().transpose(0, 1).reshape(c, -1)
      lower = self.cdf_logits(y_CxN - 0.5)
      upper = self.cdf_logits(y_CxN + 0.5)
      sign = -torch.sign(lower + upper)
      p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
      p = torch.clamp(p, min=1e-9)
      return p.reshape(c, y.shape[0], *y.shape[2:]).transpose(0, 1)


class FactorizedPrior(nn.Module):
  """compression.FactorizedPrior; forward returns (reconstruction, bits per
  image), with uniform noise in place of rounding in training mode."""

  def __init__(self, features: Sequence[int], latent_features: int,
               upsample: str, out_features: int = 3, in_features: int = 3):
    super().__init__()
    f = tuple(features)
    self.analysis_convs = nn.ModuleList(
        conv(cin, c, 5, 2) for cin, c in zip((in_features,) + f[:-1], f))
    self.analysis_gdns = nn.ModuleList(GDN(c) for c in f)
    self.to_latent = conv(f[-1], latent_features)
    self.from_latent = conv(latent_features, f[-1])
    ins = f[::-1]
    outs = f[:-1][::-1] + (out_features,)
    self.synthesis_gdns = nn.ModuleList(GDN(c, inverse=True) for c in ins)
    if upsample == 'transpose':
      self.synthesis_convs = nn.ModuleList(
          nn.ConvTranspose2d(cin, c, 5, 2, padding=2, output_padding=1)
          for cin, c in zip(ins, outs))
    elif upsample == 'pixel_shuffle':
      self.synthesis_convs = nn.ModuleList(
          nn.Sequential(conv(cin, 4 * c), nn.PixelShuffle(2))
          for cin, c in zip(ins, outs))
    else:
      raise ValueError(f'FactorizedPrior upsample={upsample!r}')
    self.densities = EntropyBottleneck(latent_features)

  def analysis(self, x: torch.Tensor) -> torch.Tensor:
    x = x - 0.5
    for conv_, gdn in zip(self.analysis_convs, self.analysis_gdns):
      x = gdn(conv_(x))
    return self.to_latent(x)

  def synthesis(self, y: torch.Tensor) -> torch.Tensor:
    x = self.from_latent(y)
    for conv_, gdn in zip(self.synthesis_convs, self.synthesis_gdns):
      x = conv_(gdn(x))
    return x + 0.5

  def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = self.analysis(x).float()
    if self.training:
      y_hat = y + (torch.rand_like(y) - 0.5)
    else:
      y_hat = torch.round(y)
    x_hat = self.synthesis(y_hat)
    if not self.training:
      x_hat = torch.clamp(x_hat, 0.0, 1.0)
    bits = -torch.sum(torch.log2(self.densities(y_hat)), dim=(1, 2, 3))
    return x_hat, bits


def twin_factorized(features: Sequence[int], latent_features: int,
                    upsample: str, out_features: int = 3) -> FactorizedPrior:
  """The PyTorch twin of `compression.FactorizedPrior` with these fields."""
  return FactorizedPrior(features, latent_features, upsample, out_features)
