"""Where training time goes: the input pipelines against the step.

  python benchmarks/pipeline_speed.py                     # every config below
  python benchmarks/pipeline_speed.py --configs 'denoise;super_resolution:edsr'
  python benchmarks/pipeline_speed.py --quick             # a dry run, seconds

For each photo config and reference config (on its own training data, the
embedded photos unless --dataset says otherwise), prints examples/s of:

  host         grain making batches on the host (per example, numpy), alone
  device       `device_data` making batches on the device (jitted), alone
  step         the jitted training step on a batch already on the device
  host+step    the loop as it runs with the host pipeline
  device+step  the loop as it runs with the device pipeline

and the ratio host / step (below 1: the host pipeline bounds the loop). The pipelines and the step are the training
loop's own (`train._train_batches`' pieces), in one process, one after the
other, so the ratios compare like with like. On a 2-core CPU the host
pipeline and the step share the cores; on a GPU the host pipeline runs on
the CPU beside it.
"""

import argparse
import functools
import importlib
import json
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ae_research import datasets, device_data, input_pipeline, parallel, steps  # noqa: E402
from ae_research import workdir as workdir_lib  # noqa: E402

CONFIGS = ('denoise', 'denoise:dncnn', 'denoise:ffdnet', 'denoise:unet',
           'super_resolution', 'super_resolution:espcn', 'super_resolution:edsr',
           'super_resolution:autoencoder', 'colorize:photos',
           'colorize:photos,unet', 'compress')


def get_config(name: str, args):
  module, _, variant = name.partition(':')
  config = importlib.import_module(f'configs.{module}').get_config(
      ','.join(v for v in (variant, 'smoke' if args.quick else '') if v))
  config.data_dir = args.data_dir
  if args.dataset:
    config.dataset = args.dataset
  if args.batch:
    config.batch_size = args.batch
  config.compute_dtype = args.compute_dtype
  config.num_train_steps = 10 ** 6  # The learning-rate schedule's length only.
  return config


def _rate(make, n: int, batch_size: int, block=None) -> float:
  """Examples/s of `n` calls of make() after two warm-up calls."""
  for _ in range(2):
    out = make()
  (block or (lambda x: x))(out)
  start = time.perf_counter()
  for _ in range(n):
    out = make()
  (block or (lambda x: x))(out)
  return n * batch_size / (time.perf_counter() - start)


def measure(name: str, args, columns) -> dict:
  config = get_config(name, args)
  mesh = parallel.make_mesh()
  task, model, tx = workdir_lib.build(config)
  source = datasets.get_source(config, 'train')
  b = config.batch_size
  step_fn = parallel.jit_train_step(steps.make_train_step(
      model, tx, lambda p, x: task.loss(p, x, config),
      compute_dtype=steps.COMPUTE_DTYPES[config.compute_dtype]), mesh)
  state = jax.jit(lambda r: steps.create_train_state(
      model, tx, r, workdir_lib.init_shape(task, config, model)),
                  out_shardings=parallel.replicated(mesh))(jax.random.key(0))
  rng = jax.random.key(1)
  n = args.batches

  on_device = device_data.DeviceBatches(source, task, config, mesh)
  batch = next(on_device)
  holder = [state]

  def step(x):
    holder[0], metrics = step_fn(holder[0], x, rng)
    return metrics

  def host_batches():
    return iter(input_pipeline.train_dataset(source, task, config, b))

  timers = {
      'host': lambda: _rate(functools.partial(next, host_batches()), n, b),
      'device': lambda: _rate(lambda: next(on_device), n, b, jax.block_until_ready),
      'step': lambda: _rate(lambda: step(batch), n, b, jax.block_until_ready),
      'host+step': lambda: _rate(functools.partial(
          lambda it: step(next(it)), input_pipeline.DevicePrefetcher(
              host_batches(), lambda x: parallel.shard_batch(x, mesh))),
          n, b, jax.block_until_ready),
      'device+step': lambda: _rate(lambda: step(next(on_device)), n, b,
                                   jax.block_until_ready),
  }
  out = {'config': name, 'batch': b, 'patch': config.patch_size,
         'compute_dtype': config.compute_dtype}
  out.update({c: timers[c]() for c in columns})
  return out


COLUMNS = ('host', 'device', 'step', 'host+step', 'device+step')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default=';'.join(CONFIGS),
                      help='config names (module:variant) separated by ";"')
  parser.add_argument('--columns', default=';'.join(COLUMNS),
                      help='what to time, separated by ";"')
  parser.add_argument('--batches', type=int, default=20)
  parser.add_argument('--batch', type=int, default=0, help='override batch_size')
  parser.add_argument('--dataset', default='', help="e.g. folder:../shared/trainsets/CBSD432")
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--compute_dtype', default='float32')
  parser.add_argument('--quick', action='store_true',
                      help="a dry run: 'smoke' configs, 2 batches, 2 configs")
  parser.add_argument('--markdown', default='', help='also write the table here')
  parser.add_argument('--json', default='', help='also write the numbers here')
  args = parser.parse_args()
  names = [c for c in args.configs.split(';') if c]
  if args.quick:
    args.batches = 2
    if args.configs == parser.get_default('configs'):
      names = names[:2]
  device = jax.devices()[0]
  print(f'jax {jax.__version__} on {device.platform} ({device.device_kind}), '
        f'{os.cpu_count()} cores; examples/s, {args.batches} batches each',
        flush=True)
  columns = [c for c in args.columns.split(';') if c]
  unknown = set(columns) - set(COLUMNS)
  if unknown:
    parser.error(f'--columns: unknown {sorted(unknown)}; choose from {COLUMNS}')
  ratio = {'host', 'step'} <= set(columns)
  header = ('| config | batch x patch | ' + ' | '.join(columns) +
            (' | host / step |' if ratio else ' |'))
  lines = [header, '|' + '---|' * (len(columns) + 2 + ratio)]
  print(header, flush=True)
  results = []
  for name in names:
    r = measure(name, args, columns)
    results.append(r)
    line = (f"| {r['config']} | {r['batch']} x {r['patch']} | " +
            ' | '.join(f'{r[c]:.0f}' for c in columns) +
            (f" | {r['host'] / r['step']:.2f} |" if ratio else ' |'))
    lines.append(line)
    print(line, flush=True)
  if args.markdown:
    with open(args.markdown, 'w') as f:
      f.write('\n'.join(lines) + '\n')
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(results, f, indent=1)


if __name__ == '__main__':
  main()
