"""Codec speed: encode and decode megapixels per second, beside JPEG and WebP.

  python benchmarks/codec_speed.py                       # the default model
  python benchmarks/codec_speed.py --variants=';hyperprior;mean_scale'
  python benchmarks/codec_speed.py --workdir=runs/compress

Codes the held-out embedded photos (whole, any size) with the compression
model of --workdir (its latest checkpoint) or, without one, a freshly
initialized model of configs/compress.py (same architecture and cost; speed
does not depend on training), after one warm-up pass that compiles every
image size. Splits each direction: encoding's networks alone (the analysis,
and for the hyperpriors the hyper analysis and the integer hyper synthesis),
decoding up to the latent (the entropy decoder, and the integer hyper
synthesis) without the synthesis network; and times Pillow's JPEG (quality 75) and WebP
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


def _codec(args, variant: str):
  if args.workdir:
    return workdir_lib.load_codec(args.workdir)
  config = compress_config.get_config(variant)
  model = compression.from_config(config)
  params = jax.jit(model.init)({'params': jax.random.key(0), 'noise': jax.random.key(1)},
                               jnp.zeros((1, 64, 64, 3)))['params']
  return aec.Codec.from_config(config, params)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='')
  parser.add_argument('--data_dir', default='')
  parser.add_argument('--variants', default='',
                      help="configs/compress.py variants to time without --workdir, "
                           "separated by ';' ('' is the factorized prior), e.g. "
                           "';hyperprior;mean_scale'")
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()
  variants = [''] if args.workdir else args.variants.split(';')
  results, images, megapixels = {}, None, 0.0
  for variant in variants:
    codec = _codec(args, variant)
    config = codec.config
    if images is None:
      if args.data_dir:
        config.data_dir = args.data_dir
      source = datasets.get_source(config, 'test', 'photos')
      images = [np.asarray(source[i]['image']) for i in range(len(source))]
      megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    files = [codec.encode(im) for im in images]  # Warm-up: compiles each size.
    for f in files:
      codec.decode(f)
    name = (f'{config.compress.model} {tuple(config.model.features)} / '
            f'{config.model.latent_features}')
    results[f'{name}: encode'] = _timed(
        lambda c=codec: [c.encode(im) for im in images], args.repeats)
    results[f'{name}: encode, networks only'] = _timed(
        lambda c=codec: [c.latent(im) for im in images], args.repeats)
    results[f'{name}: decode'] = _timed(
        lambda c=codec, fs=files: [c.decode(f) for f in fs], args.repeats)
    results[f'{name}: decode, entropy decoding only'] = _timed(
        lambda c=codec, fs=files: [c.decode_latent(f) for f in fs], args.repeats)
  for name, q in (('jpeg', 75), ('webp', 75)):
    results[f'{name} q{q} encode+decode'] = _timed(
        lambda n=name, q=q: [rd.classical_roundtrip(im, n, q) for im in images],
        args.repeats)
  print(f'{len(images)} images, {megapixels:.2f} MP, {jax.devices()[0].platform}')
  print('| what | seconds | MP/s |\n|---|---|---|')
  for name, seconds in results.items():
    print(f'| {name} | {seconds:.3f} | {megapixels / seconds:.2f} |')
  for key in results:
    if key.endswith(': encode'):
      model = key[:-len(': encode')]
      roundtrip = results[key] + results[f'{model}: decode']
      for name in ('jpeg', 'webp'):
        ref = results[f'{name} q75 encode+decode']
        print(f'{model}: encode+decode takes {roundtrip / ref:.1f}x the time of {name}')


if __name__ == '__main__':
  main()
