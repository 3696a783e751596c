"""Training-step speed: jax (jit) against the same model in PyTorch eager.

  pip install -c constraints.txt -e '.[bench]'
  python benchmarks/train_speed.py              # default + 2M reference model
  python benchmarks/train_speed.py --kinds      # every down/upsampling kind

Times the full step (forward, backward, Adam update) after compilation and
warm-up, on identical inputs and architectures, in one process; prints
images/s for each framework and the jax/torch ratio.

On a 2-core CPU the jax step is about 0.4x PyTorch's (README, Speed): per
layer, XLA:CPU's convolutions are about half as fast as oneDNN's. Tried and
not faster in jax: im2col + matmul and per-tap matmul convolutions, a custom
VJP computing the weight gradient as per-tap matmuls (faster only for wide
outputs, slower for narrow ones), and the XLA flags xla_cpu_use_onednn,
xla_cpu_experimental_onednn_custom_call, xla_cpu_use_xnnpack,
xla_cpu_experimental_xnn_fusion_type=dot and the xnn graph fusion mode.
"""

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch import nn

from ae_research import models, steps
from configs import colorize


# ---------------------------------------------------------------- PyTorch twin
def _act(name):
  return {'relu': nn.ReLU, 'gelu': nn.GELU, 'silu': nn.SiLU,
          'leaky_relu': lambda: nn.LeakyReLU(0.01)}[name]()


def _same_conv(cin, cout, k=3, stride=1):
  # 'SAME' padding as in flax; for stride 2 with even inputs XLA pads (0, 1).
  if stride == 1:
    return nn.Conv2d(cin, cout, k, padding=k // 2)
  return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(cin, cout, k, stride))


def _down(kind, cin, cout):
  if kind == 'stride':
    return _same_conv(cin, cout, 3, 2)
  if kind == 'avgpool':
    return nn.Sequential(nn.AvgPool2d(2), _same_conv(cin, cout))
  if kind == 'space_to_depth':
    return nn.Sequential(nn.PixelUnshuffle(2), _same_conv(4 * cin, cout))
  raise ValueError(kind)


def _up(kind, cin, cout):
  if kind == 'pixel_shuffle':
    return nn.Sequential(_same_conv(cin, 4 * cout), nn.PixelShuffle(2))
  if kind == 'nearest':
    return nn.Sequential(nn.Upsample(scale_factor=2), _same_conv(cin, cout))
  if kind == 'transpose':
    return nn.ConvTranspose2d(cin, cout, 4, 2, padding=1)
  raise ValueError(kind)


def torch_autoencoder(m, in_features: int, out_features: int) -> nn.Module:
  """The architecture of ae_research.models.Autoencoder, in PyTorch."""
  f = list(m.features)
  act = lambda: _act(m.activation)
  layers = [_same_conv(in_features, f[0]), act()]
  cin = f[0]
  for c in f:
    layers += [_down(m.downsample, cin, c), act()]
    for _ in range(m.blocks_per_level):
      layers += [_same_conv(c, c), act()]
    cin = c
  layers += [nn.Conv2d(cin, m.latent_features, 1),
             nn.Conv2d(m.latent_features, f[-1], 1), act()]
  above = [f[0]] + f[:-1]
  for c, c_above in reversed(list(zip(f, above))):
    for _ in range(m.blocks_per_level):
      layers += [_same_conv(c, c), act()]
    layers += [_up(m.upsample, c, c_above), act()]
  layers += [_same_conv(f[0], out_features)]
  return nn.Sequential(*layers)


# ---------------------------------------------------------------- timing
def time_jax(model_config, batch, in_c, out_c, size, steps_n):
  model = models.from_config(model_config, out_c)
  tx = optax.adam(1e-3)
  state = steps.create_train_state(model, tx, jax.random.key(0),
                                   (1, size, size, in_c))
  mse = lambda p, b: jnp.mean(jnp.square(p - b['target']), axis=(1, 2, 3))
  step = jax.jit(steps.make_train_step(model, tx, mse), donate_argnums=0)
  rng = np.random.default_rng(0)
  b = {'input': jnp.asarray(rng.random((batch, size, size, in_c), np.float32)),
       'target': jnp.asarray(rng.random((batch, size, size, out_c), np.float32))}
  key = jax.random.key(0)
  for _ in range(3):
    state, metrics = step(state, b, key)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(steps_n):
    state, metrics = step(state, b, key)
  jax.block_until_ready(state)
  return batch * steps_n / (time.perf_counter() - t), models.count_params(state.params)


def time_torch(model_config, batch, in_c, out_c, size, steps_n, channels_last):
  torch.manual_seed(0)
  net = torch_autoencoder(model_config, in_c, out_c)
  opt = torch.optim.Adam(net.parameters(), 1e-3)
  x = torch.rand(batch, in_c, size, size)
  y = torch.rand(batch, out_c, size, size)
  if channels_last:
    net = net.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    y = y.contiguous(memory_format=torch.channels_last)

  def step():
    opt.zero_grad(set_to_none=True)
    loss = torch.mean(torch.square(net(x) - y))
    loss.backward()
    opt.step()

  for _ in range(3):
    step()
  t = time.perf_counter()
  for _ in range(steps_n):
    step()
  return batch * steps_n / (time.perf_counter() - t), sum(
      p.numel() for p in net.parameters())


def compare(name, model_config, batch, in_c, out_c, size, steps_n):
  jax_ips, jax_n = time_jax(model_config, batch, in_c, out_c, size, steps_n)
  torch_ips, torch_n = time_torch(model_config, batch, in_c, out_c, size,
                                  steps_n, channels_last=False)
  torch_cl, _ = time_torch(model_config, batch, in_c, out_c, size, steps_n,
                           channels_last=True)
  best_torch = max(torch_ips, torch_cl)
  assert jax_n == torch_n, (jax_n, torch_n)
  print(f'{name:34s} params {jax_n / 1e6:5.2f}M  batch {batch} {size}x{size}x{in_c}'
        f'->{out_c} | jax {jax_ips:7.1f} img/s | torch {torch_ips:7.1f} '
        f'(channels_last {torch_cl:7.1f}) | jax/torch {jax_ips / best_torch:.2f}',
        flush=True)


def reference_model_config():
  """About 2M parameters, for 64x64x3 inputs."""
  m = colorize.get_config().model
  m.features = (64, 128, 128)
  m.latent_features = 64
  return m


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--kinds', action='store_true',
                      help='also time the default model with every down/upsampling kind')
  args = parser.parse_args()
  torch.set_num_threads(os.cpu_count())
  print(f'jax {jax.__version__} on {jax.devices()[0].platform} '
        f'({os.cpu_count()} cores), torch {torch.__version__} '
        f'({torch.get_num_threads()} threads)')
  config = colorize.get_config()
  compare('default (colorize)', config.model, config.batch_size, 1, 3,
          config.shapes.image_size, args.steps * 5)
  ref = reference_model_config()
  compare('reference (~2M params)', ref, 64, 3, 3, 64, args.steps)
  if args.kinds:
    for down in models.DOWNSAMPLE_KINDS:
      for up in models.UPSAMPLE_KINDS:
        m = config.model.copy_and_resolve_references()
        m.downsample, m.upsample = down, up
        compare(f'default down={down} up={up}', m, config.batch_size, 1, 3,
                config.shapes.image_size, args.steps * 5)


if __name__ == '__main__':
  main()
