"""Training-step speed: jax (jit) against the same models in PyTorch.

  pip install -c constraints.txt -e '.[bench]'
  python benchmarks/train_speed.py                 # every model below
  python benchmarks/train_speed.py --quick         # a dry run (seconds)
  python benchmarks/train_speed.py --models denoise:dncnn,compress --markdown speed.md
  python benchmarks/train_speed.py --kinds         # + every down/upsampling kind
  python benchmarks/train_speed.py --check_twins   # equal parameter counts only

Times the full training step (forward, backward, Adam update) after
compilation and warm-up, in one process on one device, on identical shapes
and architectures (the PyTorch twins are benchmarks/torch_twins.py; every row
asserts equal parameter counts, and a model without a twin is printed as
skipped). Variants:

- jax: `steps.make_train_step` jitted with the state donated, computing in
  float32 and in bfloat16 (float32 parameters and optimizer state).
- PyTorch: eager float32, eager float32 channels_last, `torch.compile`
  (default mode) and bfloat16 autocast; the last two in the faster layout
  of the first two ('*' marks channels_last). A variant that cannot run on
  this device prints n/a, and why below the row.

Rows: the experiments' photo models and the reference models, each built as
the training loop builds it from its config (`configs/TASK.py` variant after
the colon): batch config.batch_size (--batch), patches of config.patch_size,
the models that take the low-resolution image (archs.Arch.low_resolution)
taking patch_size / scale. Loss: MSE; for compress the rate-distortion loss
lambda * 255^2 * MSE + bpp. Printed per row: parameters, input shape, images/s
of each variant, the FLOP/s the jax steps achieve (XLA's cost analysis of the
compiled step times steps/s) and their fraction of the device's peak (known
for H100 SXM and H200: dense bf16 989 TFLOP/s for the bfloat16 step, TF32
494.7 TFLOP/s for the float32 one), and jax best / torch best. `--device auto`
runs on the GPU when both jax and torch see one. On a GPU, float32 means TF32
in both (jax's default precision; torch is set to match).

On a 2-core CPU the jax step is 0.24x to 0.58x PyTorch's (README,
"Accelerators and speed"): per layer, XLA:CPU's convolutions are about half
as fast as oneDNN's. Tried and
not faster in jax: im2col + matmul and per-tap matmul convolutions, a custom
VJP computing the weight gradient as per-tap matmuls (faster only for wide
outputs, slower for narrow ones), and the XLA flags xla_cpu_use_onednn,
xla_cpu_experimental_onednn_custom_call, xla_cpu_use_xnnpack,
xla_cpu_experimental_xnn_fusion_type=dot and the xnn graph fusion mode.
"""

from __future__ import annotations

import os

# jax and torch share the GPU: jax must not take 75% of it up front.
os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')

import argparse
import dataclasses
import functools
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ae_research import archs, entropy_models, models, steps, tasks
from configs import colorize, compress, default, denoise, super_resolution
try:
  import torch
  import torch_twins
except ImportError:  # Without PyTorch (pip install '.[bench]'): the jax columns.
  torch = torch_twins = None

CONFIGS = {m.__name__.rpartition('.')[2]: m
           for m in (colorize, compress, denoise, super_resolution)}
# The rows: configs/TASK.py with the variant after the colon.
MODELS = ('denoise', 'denoise:dncnn', 'denoise:ffdnet', 'denoise:unet',
          'super_resolution', 'super_resolution:espcn',
          'super_resolution:edsr', 'super_resolution:autoencoder',
          'colorize:photos', 'colorize:photos,unet', 'compress')
WARMUP_STEPS = 3
QUICK = dict(steps=2, batch=2, patch=24, models=2)
# (substrings of torch.cuda.get_device_name(), dense bfloat16 FLOP/s, dense
# TF32 FLOP/s): the float32 steps run in TF32 on these GPUs.
PEAKS = ((('H100', 'HBM3'), 989e12, 494.7e12),
         (('H100', 'SXM'), 989e12, 494.7e12),
         (('H200',), 989e12, 494.7e12))
JAX_VARIANTS = ('jax f32', 'jax bf16')
TORCH_VARIANTS = ('torch f32', 'torch CL', 'torch compile', 'torch bf16')
COLUMNS = (('model', 30), ('params', 7), ('input', 16)) + tuple(
    (v, 10) for v in JAX_VARIANTS + TORCH_VARIANTS) + (
        ('f32 FLOP/s', 10), ('f32 %peak', 9), ('bf16 FLOP/s', 11),
        ('bf16 %peak', 10), ('jax/torch', 9))


@dataclasses.dataclass
class Row:
  """One model at one input shape, in both frameworks."""
  name: str
  model: Any  # The flax module.
  make_twin: Callable[[], torch.nn.Module]
  batch: int
  in_size: int  # Input height and width.
  out_size: int  # Target height and width.
  in_channels: int
  out_channels: int = 3
  lmbda: Optional[float] = None  # Rate-distortion loss (compress) or MSE.
  skip: str = ''  # Why the row is not timed (no PyTorch twin), or ''.

  @property
  def input_shape(self) -> tuple[int, ...]:
    return (self.batch, self.in_size, self.in_size, self.in_channels)

  @property
  def target_shape(self) -> tuple[int, ...]:
    return (self.batch, self.out_size, self.out_size, self.out_channels)


def parse_models(text: str) -> list[str]:
  """Row names from --models: a piece naming no experiment continues the
  variants of the name before it ('colorize:photos,unet' stays one row)."""
  names = []
  for piece in filter(None, text.split(',')):
    if ':' in piece or piece in CONFIGS or not names:
      names.append(piece)
    else:
      names[-1] += (',' if ':' in names[-1] else ':') + piece
  return names


def get_config(name: str) -> Any:
  """The config of row `name`: 'TASK' or 'TASK:VARIANT[,VARIANT]'."""
  task, _, variant = name.partition(':')
  if task not in CONFIGS:
    raise ValueError(f'--models: {name!r} names no experiment; choose among '
                     f'{sorted(CONFIGS)} (rows: {", ".join(MODELS)})')
  return CONFIGS[task].get_config(variant)


def kinds_configs() -> list[tuple[str, Any]]:
  """The default (colorize) autoencoder with every down/upsampling kind."""
  out = []
  for down in models.DOWNSAMPLE_KINDS:
    for up in models.UPSAMPLE_KINDS:
      config = colorize.get_config()
      config.model.downsample, config.model.upsample = down, up
      out.append((f'colorize {down}+{up}', config))
  return out


def build_row(name: str, config: Any, batch: Optional[int] = None,
              patch: Optional[int] = None) -> Row:
  """The row of `config`, with the loop's model; `batch` and `patch`
  override the config's (a patch is rounded up to a size the model takes)."""
  task = tasks.get(config.task)
  model = task.make_model(config)
  low_resolution = (config.task == 'super_resolution' and
                    archs.get(config.model.arch).low_resolution)
  scale = config.sr.scale if low_resolution else 1
  multiple = model.downsampling * scale
  patch = patch or config.patch_size or config.shapes.image_size
  patch = -(-patch // multiple) * multiple
  in_channels = task.input_channels(config)
  skip = ''
  if config.task == 'compress':
    if config.compress.model != 'factorized':
      skip = f'no PyTorch twin of compress.model={config.compress.model!r}'
    m = config.model
    make_twin = lambda: torch_twins.twin_factorized(
        tuple(m.features), m.latent_features, m.upsample)
    lmbda = config.compress.lmbda
  else:
    if torch_twins is not None and config.model.arch not in torch_twins.TWINS:
      skip = (f'no PyTorch twin of config.model.arch={config.model.arch!r} in '
              'benchmarks/torch_twins.py')
    make_twin = lambda: torch_twins.twin(config.model, in_channels, 3, scale)
    lmbda = None
  return Row(name, model, make_twin, batch or config.batch_size,
             patch // scale, patch, in_channels, lmbda=lmbda, skip=skip)


# ------------------------------------------------------------------ jax
def jax_loss(row: Row) -> Callable:
  """loss(pred, batch) per example: MSE, or lambda * 255^2 * MSE + bpp."""
  def loss(pred, batch):
    out = pred if row.lmbda is None else pred['output']
    mse = jnp.mean(jnp.square(out - batch['target']), axis=(1, 2, 3))
    if row.lmbda is None:
      return mse
    bits = entropy_models.bits(pred['likelihoods'])
    return row.lmbda * 255.0 ** 2 * mse + bits / row.out_size ** 2
  return loss


def jax_variables(row: Row) -> Any:
  """The shapes of the model's variables (nothing computed)."""
  return jax.eval_shape(lambda: steps.init_variables(
      row.model, jax.random.key(0), (1,) + row.input_shape[1:]))


def count_shapes(tree: Any) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def flops_of(lowered: Any) -> Optional[float]:
  """XLA's FLOP count of a lowered function (a dict, or a list of one per
  computation, across jax versions), or None. Counted on the program before
  compilation: the same on every device (after compilation for a GPU the
  convolutions are cuDNN calls, which XLA's cost analysis counts as 0)."""
  cost = lowered.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  flops = (cost or {}).get('flops')
  return float(flops) if flops and flops > 0 else None


def time_jax(row: Row, dtype: str, steps_n: int) -> tuple[float, Optional[float]]:
  """(images/s, FLOPs per step) of the jitted training step."""
  tx = optax.adam(1e-3)
  state = steps.create_train_state(row.model, tx, jax.random.key(0),
                                   (1,) + row.input_shape[1:])
  step = jax.jit(steps.make_train_step(
      row.model, tx, jax_loss(row), compute_dtype=steps.COMPUTE_DTYPES[dtype]),
      donate_argnums=0)
  rng = np.random.default_rng(0)
  batch = {'input': jnp.asarray(rng.random(row.input_shape, np.float32)),
           'target': jnp.asarray(rng.random(row.target_shape, np.float32))}
  key = jax.random.key(0)
  lowered = step.lower(state, batch, key)
  flops = flops_of(lowered)
  compiled = lowered.compile()
  for _ in range(WARMUP_STEPS):
    state, _ = compiled(state, batch, key)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(steps_n):
    state, _ = compiled(state, batch, key)
  jax.block_until_ready(state)
  return row.batch * steps_n / (time.perf_counter() - start), flops


# ------------------------------------------------------------------ torch
def torch_loss(row: Row, out: Any, y: torch.Tensor) -> torch.Tensor:
  """jax_loss's twin, averaged over the batch, in float32."""
  if row.lmbda is None:
    return torch.mean(torch.square(out.float() - y))
  x_hat, bits = out
  mse = torch.mean(torch.square(x_hat.float() - y), dim=(1, 2, 3))
  return torch.mean(row.lmbda * 255.0 ** 2 * mse + bits / row.out_size ** 2)


def synchronize(device: str) -> None:
  if device == 'cuda':
    torch.cuda.synchronize()


def time_torch(row: Row, device: str, steps_n: int, channels_last: bool,
               compiled: bool = False, bf16: bool = False) -> float:
  """Images/s of the twin's training step."""
  torch.manual_seed(0)
  net = row.make_twin().to(device)
  b, h, w, c = row.input_shape
  x = torch.rand(b, c, h, w, device=device)
  y = torch.rand(b, row.out_channels, row.out_size, row.out_size,
                 device=device)
  if channels_last:
    net = net.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    y = y.contiguous(memory_format=torch.channels_last)
  opt = torch.optim.Adam(net.parameters(), 1e-3)
  if compiled:
    torch._dynamo.reset()  # pylint: disable=protected-access
    net = torch.compile(net)

  def step():
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
      out = net(x)
    torch_loss(row, out, y).backward()
    opt.step()

  for _ in range(WARMUP_STEPS):
    step()
  synchronize(device)
  start = time.perf_counter()
  for _ in range(steps_n):
    step()
  synchronize(device)
  return row.batch * steps_n / (time.perf_counter() - start)


def torch_params(row: Row) -> int:
  return sum(p.numel() for p in row.make_twin().parameters())


# ------------------------------------------------------------------ rows
def attempt(fn: Callable[[], Any], device: str) -> tuple[Any, str]:
  """(fn(), '') or (None, why it failed): a variant this device cannot run
  does not stop the benchmark."""
  try:
    return fn(), ''
  except Exception as e:  # pylint: disable=broad-except
    lines = str(e).strip().splitlines() or ['']
    return None, f'{type(e).__name__}: {lines[0][:160]}'
  finally:
    if device == 'cuda' and torch is not None:
      torch.cuda.empty_cache()


def peak_flops(device_name: str) -> dict[str, float]:
  """{jax variant: the dense peak FLOP/s of its precision} on a known GPU;
  empty elsewhere."""
  for names, bf16, tf32 in PEAKS:
    if all(n in device_name for n in names):
      return {'jax f32': tf32, 'jax bf16': bf16}
  return {}


def run_row(row: Row, device: str, steps_n: int,
            skip_compile: bool) -> dict[str, Any]:
  """{variant: images/s or None}, with 'notes' (why a variant is n/a),
  'flops' (per jax step, by variant) and 'channels_last'."""
  out, notes, flops = {}, {}, {}
  for variant, dtype in zip(JAX_VARIANTS, ('float32', 'bfloat16')):
    result, notes[variant] = attempt(
        functools.partial(time_jax, row, dtype, steps_n), device)
    out[variant], flops[variant] = result or (None, None)
  if torch is None:
    for variant in ('torch f32', 'torch CL', 'torch compile', 'torch bf16'):
      out[variant], notes[variant] = None, 'PyTorch is not installed'
    return dict(out, notes={'torch': 'PyTorch is not installed'}, flops=flops,
                channels_last=False)
  for variant, cl in (('torch f32', False), ('torch CL', True)):
    out[variant], notes[variant] = attempt(
        functools.partial(time_torch, row, device, steps_n, cl), device)
  cl = (out['torch CL'] or 0) > (out['torch f32'] or 0)
  if skip_compile:
    out['torch compile'], notes['torch compile'] = None, '--skip_torch_compile'
  else:
    out['torch compile'], notes['torch compile'] = attempt(
        functools.partial(time_torch, row, device, steps_n, cl, compiled=True),
        device)
  if device == 'cpu' and not torch.ops.mkldnn._is_mkldnn_bf16_supported():  # pylint: disable=protected-access
    # Emulated, tens of times slower than float32: not a figure anyone uses.
    out['torch bf16'], notes['torch bf16'] = None, 'no native bfloat16 on this CPU'
  else:
    out['torch bf16'], notes['torch bf16'] = attempt(
        functools.partial(time_torch, row, device, steps_n, cl, bf16=True), device)
  return dict(out, notes={k: v for k, v in notes.items() if v}, flops=flops,
              channels_last=cl)


def si(x: float) -> str:
  """x with an SI prefix: 12.3G, 456T."""
  for factor, prefix in ((1e12, 'T'), (1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
    if x >= factor:
      return f'{x / factor:.3g}{prefix}'
  return f'{x:.3g}'


def cells(row: Row, result: dict[str, Any], n_params: int,
          peaks: dict[str, float]) -> list[str]:
  """The printed values of a row, in COLUMNS' order."""
  b, h, w, c = row.input_shape
  shape = f'{b}x{h}x{w}x{c}' + (f' (x{row.out_size // h})'
                                if row.out_size != h else '')
  out = [row.name, f'{n_params / 1e6:.2f}M', shape]
  for variant in JAX_VARIANTS + TORCH_VARIANTS:
    ips = result[variant]
    star = '*' if result['channels_last'] and variant in (
        'torch compile', 'torch bf16') else ''
    out.append('n/a' if ips is None else f'{ips:.1f}{star}')
  for variant in JAX_VARIANTS:
    ips, flops = result[variant], result['flops'][variant]
    if ips is None or flops is None:
      out += ['-', '-']
      continue
    achieved = flops * ips / row.batch
    peak = peaks.get(variant)
    out += [si(achieved), f'{100 * achieved / peak:.1f}%' if peak else '-']
  best_jax = max((result[v] or 0) for v in JAX_VARIANTS)
  best_torch = max((result[v] or 0) for v in TORCH_VARIANTS)
  out.append(f'{best_jax / best_torch:.2f}' if best_jax and best_torch else '-')
  return out


def format_line(values: list[str]) -> str:
  return ' '.join(v.rjust(width) if i else v.ljust(width)
                  for i, (v, (_, width)) in enumerate(zip(values, COLUMNS)))


def markdown(header: str, table: list[list[str]], notes: list[str]) -> str:
  lines = [header, '', '| ' + ' | '.join(name for name, _ in COLUMNS) + ' |',
           '|' + '---|' * len(COLUMNS)]
  lines += ['| ' + ' | '.join(values) + ' |' for values in table]
  if notes:
    lines += [''] + [f'- {n}' for n in notes]
  return '\n'.join(lines) + '\n'


def check_configs() -> list[tuple[str, Any]]:
  """Settings the rows leave out, for check_twins: every norm, another
  activation and the sigmoid output (autoencoder and U-Net), the other
  down/upsampling kinds of the U-Net, every super-resolution scale with the
  bicubic skip, the other FFDNet and DnCNN settings, the transposed
  FactorizedPrior."""
  out = []
  for norm in models.NORM_KINDS:
    for variant in ('photos', 'photos,unet'):
      config = colorize.get_config(variant)
      config.model.norm, config.model.activation = norm, 'gelu'
      config.model.output_activation = 'sigmoid'
      out.append((f'colorize:{variant} norm={norm}', config))
  config = denoise.get_config('unet')
  config.model.downsample, config.model.upsample = 'stride', 'transpose'
  out.append(('denoise:unet stride+transpose', config))
  skipping = [a.name for a in archs.REGISTRY.values()
              if a.low_resolution and 'bicubic_skip' in a.fields]
  for scale in (2, 3, 4):
    for arch in skipping:
      config = super_resolution.get_config()
      default.use_arch(config, arch, bicubic_skip=True)
      config.sr.scale = scale
      out.append((f'super_resolution:{arch} x{scale} bicubic_skip', config))
  config = denoise.get_config('ffdnet')
  config.model.residual = False
  out.append(('denoise:ffdnet residual=False', config))
  config = denoise.get_config('dncnn')
  config.model.norm, config.model.residual = 'none', False
  out.append(('denoise:dncnn norm=none residual=False', config))
  config = compress.get_config()
  config.model.upsample = 'transpose'
  out.append(('compress transpose', config))
  return out


def check_twins(rows: list[Row]) -> None:
  """Asserts that every row's twin has the flax model's parameter count and
  output shape (one image, inference mode)."""
  failed = []
  for row in rows:
    if row.skip:
      print(f'{row.name:48s} skipped: {row.skip}', flush=True)
      continue
    variables = jax_variables(row)
    n_jax, n_torch = count_shapes(variables['params']), torch_params(row)
    x = jax.ShapeDtypeStruct((1,) + row.input_shape[1:], jnp.float32)
    pred = jax.eval_shape(row.model.apply, variables, x)
    net = row.make_twin().eval()
    with torch.no_grad():
      out = net(torch.zeros(1, row.in_channels, row.in_size, row.in_size))
    if row.lmbda is None:
      shapes = (pred.shape,), (tuple(out.permute(0, 2, 3, 1).shape),)
    else:
      bits = jax.eval_shape(entropy_models.bits, pred['likelihoods'])
      shapes = ((pred['output'].shape, bits.shape),
                (tuple(out[0].permute(0, 2, 3, 1).shape), tuple(out[1].shape)))
    ok = n_jax == n_torch and shapes[0] == shapes[1]
    print(f'{row.name:48s} jax {n_jax:9,d} torch {n_torch:9,d} params, '
          f'output {shapes[0]} {shapes[1]} {"ok" if ok else "MISMATCH"}',
          flush=True)
    if not ok:
      failed.append(row.name)
  assert not failed, f'twins differ from the flax models: {failed}'
  checked = sum(not row.skip for row in rows)
  print(f'{checked} twins: equal parameter counts and output shapes')


def pick_device(name: str) -> str:
  """'cuda' or 'cpu' for --device; 'auto' is the GPU when both see one
  (without PyTorch: when jax does)."""
  if torch is None:
    return 'cuda' if jax.default_backend() == 'gpu' else 'cpu'
  gpu = torch.cuda.is_available() and jax.default_backend() == 'gpu'
  if name == 'cuda' and not gpu:
    raise SystemExit('--device cuda: torch and jax must both see a GPU; got '
                     f'torch.cuda.is_available()={torch.cuda.is_available()}, '
                     f'jax.default_backend()={jax.default_backend()!r}')
  if name == 'auto':
    return 'cuda' if gpu else 'cpu'
  return name


def device_name(device: str) -> str:
  if device == 'cuda':
    return (torch.cuda.get_device_name() if torch is not None
            else jax.devices()[0].device_kind)
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'CPU'


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default='',
                      help=f'comma-separated rows (default all: '
                      f'{",".join(MODELS)})')
  parser.add_argument('--steps', type=int, default=None,
                      help='timed steps per variant (default 20)')
  parser.add_argument('--batch', type=int, default=None,
                      help="override every row's config.batch_size")
  parser.add_argument('--quick', action='store_true',
                      help='dry run: 2 steps, batch 2, patches of 24, the '
                      'first 2 models unless --models')
  parser.add_argument('--kinds', action='store_true',
                      help='also time the default model with every '
                      'down/upsampling kind')
  parser.add_argument('--markdown', default='',
                      help='also write the table to this Markdown file')
  parser.add_argument('--skip_torch_compile', action='store_true')
  parser.add_argument('--check_twins', action='store_true',
                      help='only assert equal parameter counts and output '
                      'shapes (every row, kind and more settings unless '
                      '--models)')
  parser.add_argument('--device', default='auto',
                      choices=('auto', 'cpu', 'cuda'))
  args = parser.parse_args()

  device = pick_device(args.device)
  steps_n = args.steps or (QUICK['steps'] if args.quick else 20)
  batch = args.batch or (QUICK['batch'] if args.quick else None)
  patch = QUICK['patch'] if args.quick else None
  names = parse_models(args.models) or list(MODELS)
  if args.quick and not args.models and not args.check_twins:
    names = names[:QUICK['models']]
  configs = [(name, get_config(name)) for name in names]
  if args.kinds or (args.check_twins and not args.models):
    configs += kinds_configs()
  if args.check_twins and not args.models:
    configs += check_configs()
  if torch is None:
    print('PyTorch is not installed: the jax columns alone')
  elif device == 'cpu':
    torch.set_num_threads(os.cpu_count())
  else:
    torch.set_float32_matmul_precision('high')  # TF32, as jax's default.

  with jax.default_device(jax.devices('gpu' if device == 'cuda' else 'cpu')[0]):
    rows = [build_row(name, config, batch, patch) for name, config in configs]
    if args.check_twins:
      check_twins(rows)
      return
    name = device_name(device)
    torch_info = (f'torch {torch.__version__}' if torch is not None
                  else 'no torch')
    threads = torch.get_num_threads() if torch is not None else 0
    header = (f'jax {jax.__version__}, {torch_info}; {device}: '
              f'{name}, {os.cpu_count()} cores ({threads} '
              f'torch threads); {steps_n} steps after {WARMUP_STEPS} of '
              f'warm-up; images/s (* channels_last), FLOP/s of the jax step')
    print(header)
    print(format_line([c for c, _ in COLUMNS]), flush=True)
    peaks = peak_flops(name) if device == 'cuda' else {}
    table, notes = [], []
    for row in rows:
      if row.skip:
        notes.append(f'{row.name} skipped: {row.skip}')
        print(f'{row.name} skipped: {row.skip}', flush=True)
        continue
      n_jax = count_shapes(jax_variables(row)['params'])
      n_torch = torch_params(row) if torch is not None else n_jax
      assert n_jax == n_torch, f'{row.name}: jax {n_jax} != torch {n_torch} params'
      result = run_row(row, device, steps_n, args.skip_torch_compile)
      table.append(cells(row, result, n_jax, peaks))
      print(format_line(table[-1]), flush=True)
      for variant, why in result['notes'].items():
        notes.append(f'{row.name}, {variant} n/a: {why}')
        print(f'  {variant} n/a: {why}', flush=True)
  if args.markdown:
    with open(args.markdown, 'w') as f:
      f.write(markdown(header, table, notes))
    print(f'wrote {args.markdown}')


if __name__ == '__main__':
  main()
