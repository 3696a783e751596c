"""Codec speed: encode and decode megapixels per second, beside JPEG and WebP.

  python benchmarks/codec_speed.py                       # the default model
  python benchmarks/codec_speed.py --workdir=runs/compress

Codes the held-out embedded photos (whole, any size) with the compression
model of --workdir (its latest checkpoint) or, without one, a freshly
initialized model of configs/compress.py (same architecture and cost; speed
does not depend on training), after one warm-up pass that compiles every
image size. Splits each direction into the network (jax) and the entropy
coder (constriction), and times Pillow's JPEG (quality 75) and WebP
(quality 75, method 6) on the same images in the same process; prints
MP/s and the ratios.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import aec, compression, datasets, rd
from ae_research import workdir as workdir_lib
from configs import compress as compress_config


def _timed(fn, repeats):
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='')
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  if args.workdir:
    codec = workdir_lib.load_codec(args.workdir)
    config = codec.config
  else:
    config = compress_config.get_config()
    model = compression.from_config(config)
    params = model.init({'params': jax.random.key(0), 'noise': jax.random.key(1)},
                        jnp.zeros((1, 16, 16, 3)))['params']
    codec = aec.Codec(config, params)
  if args.data_dir:
    config.data_dir = args.data_dir
  source = datasets.get_source(config, 'test', 'photos')
  images = [np.asarray(source[i]['image']) for i in range(len(source))]
  megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
  files = [codec.encode(im) for im in images]  # Warm-up: compiles each size.
  for f in files:
    codec.decode(f)

  def network_encode():
    for im in images:
      codec.latent(im)

  results = {
      'encode (whole)': _timed(lambda: [codec.encode(im) for im in images], args.repeats),
      'encode (network only)': _timed(network_encode, args.repeats),
      'decode (whole)': _timed(lambda: [codec.decode(f) for f in files], args.repeats),
  }
  for name, q in (('jpeg', 75), ('webp', 75)):
    results[f'{name} q{q} encode+decode'] = _timed(
        lambda n=name, q=q: [rd.classical_roundtrip(im, n, q) for im in images],
        args.repeats)
  print(f'{len(images)} images, {megapixels:.2f} MP, {jax.devices()[0].platform}, '
        f'model {config.compress.model} {tuple(config.model.features)} / '
        f'{config.model.latent_features}')
  print('| what | seconds | MP/s |\n|---|---|---|')
  for name, seconds in results.items():
    print(f'| {name} | {seconds:.3f} | {megapixels / seconds:.2f} |')
  roundtrip = results['encode (whole)'] + results['decode (whole)']
  for name in ('jpeg', 'webp'):
    ref = results[f'{name} q75 encode+decode']
    print(f'codec encode+decode takes {roundtrip / ref:.1f}x the time of {name}')


if __name__ == '__main__':
  main()
