"""Codec speed: each direction split into the networks and the rest, beside
JPEG and WebP.

  python benchmarks/codec_speed.py                       # mean-scale, variable-rate
  python benchmarks/codec_speed.py --variants=';hyperprior;mean_scale'
  python benchmarks/codec_speed.py --workdir=runs/compress
  python benchmarks/codec_speed.py --images=folder:../shared/testsets/Kodak24

Codes the held-out embedded photos (or --images, whole, any size) with the
compression model of --workdir (its latest checkpoint) or, without one, a
freshly initialized model of each configs/compress.py variant (same
architecture and cost; speed does not depend on training), after one
warm-up pass that compiles every image size. For each direction it times
the whole (`Codec.encode` of an image, `Codec.decode` of its file) and the
networks alone (the analysis network on the padded float image, and a
hyperprior's hyper analysis on its latent; the synthesis network on the
decoded latent); the rest is the difference: the integer hyper synthesis
and table lookup (at both ends), range coding, the file, the conversions
and Python.

The hyperprior models are timed twice: writing format version 5 (8-bit
integer hyper synthesis through XLA) and version 4 (float64 integer hyper
synthesis on the host, as before version 5), in the same process, so the
speed-up of the rest is a ratio of two runs here. Pillow's JPEG (quality 75)
and WebP (quality 75, method 6) round trips are timed on the same images.
Each time is the best of --repeats passes over all images. The files'
sizes of the two versions are compared too.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import aec, compression, datasets, rd
from ae_research import workdir as workdir_lib
from configs import compress as compress_config


def _best(fn, repeats: int) -> float:
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


def _images(config, name: str) -> list[np.ndarray]:
  source = datasets.get_source(config, 'test', name)
  return [np.asarray(source[i]['image'], np.uint8) for i in range(len(source))]


def time_codec(codec: aec.Codec, images: list, version: int, repeats: int) -> dict:
  """Seconds over all images: encode, its analysis network, decode, its
  synthesis network."""
  files = [codec.encode(im, version=version) for im in images]  # Compiles.
  for f in files:
    codec.decode(f)
  padded = [codec._padded(im[..., :3 if im.shape[-1] > 2 else 1])  # pylint: disable=protected-access
            for im in images]
  latents = []
  for f in files:
    header, y_hat = codec.decode_latent(f)
    if codec.variable_rate:
      y_hat = y_hat * codec.gains(header['setting'])[1]
    latents.append(y_hat)
  def analysis():  # The analysis network, and a hyperprior's hyper analysis.
    for x in padded:
      y = codec.analysis(x)
      if codec.hyper:
        codec.hyper_analysis(y)

  return {
      'bytes': sum(len(f) for f in files),
      'encode': _best(lambda: [codec.encode(im, version=version) for im in images], repeats),
      'analysis': _best(analysis, repeats),
      'decode': _best(lambda: [codec.decode(f) for f in files], repeats),
      'synthesis': _best(lambda: [codec.reconstruct(y) for y in latents], repeats),
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workdir', default='')
  parser.add_argument('--images', default='photos',
                      help="'photos' (the held-out embedded photos) or folder:PATH")
  parser.add_argument('--variants', default='mean_scale;variable',
                      help="configs/compress.py variants to time without --workdir, "
                           "separated by ';' ('' is the factorized prior)")
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  variants = [''] if args.workdir else args.variants.split(';')
  rows, images, megapixels = [], None, 0.0
  for variant in variants:
    codec = _codec(args, variant)
    if images is None:
      images = _images(codec.config, args.images)
      megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    name = (f'{codec.config.compress.model}{" variable-rate" if codec.variable_rate else ""}'
            f' {tuple(codec.config.model.features)} / {codec.config.model.latent_features}')
    for version in ((aec.VERSION, 4) if codec.hyper else (aec.VERSION,)):
      rows.append((f'{name}, version {version}', time_codec(codec, images, version,
                                                            args.repeats)))
  classical = {n: _best(lambda n=n: [rd.classical_roundtrip(im, n, 75) for im in images],
                        args.repeats) for n in ('jpeg', 'webp')}
  print(f'{len(images)} images ({args.images}), {megapixels:.2f} MP, '
        f'{jax.devices()[0].platform}, best of {args.repeats}')
  print('| model, format | direction | MP/s | network alone, MP/s | the rest, ms/MP '
        '| network share |\n|---|---|---|---|---|---|')
  for name, t in rows:
    for direction, network in (('encode', 'analysis'), ('decode', 'synthesis')):
      rest = t[direction] - t[network]
      print(f'| {name} | {direction} | {megapixels / t[direction]:.2f} | '
            f'{megapixels / t[network]:.2f} | {1e3 * rest / megapixels:.1f} | '
            f'{t[network] / t[direction]:.0%} |')
  print('\n| model, format | round trip MP/s | networks alone | WebP q75 m6 | JPEG q75 |'
        '\n|---|---|---|---|---|')
  for name, t in rows:
    both = t['encode'] + t['decode']
    print(f'| {name} | {megapixels / both:.2f} | '
          f'{megapixels / (t["analysis"] + t["synthesis"]):.2f} | '
          f'{megapixels / classical["webp"]:.2f} | {megapixels / classical["jpeg"]:.1f} |')
  for (name, new), (old_name, old) in zip(rows, rows[1:]):
    if name.endswith(f'version {aec.VERSION}') and old_name.endswith('version 4'):
      ratios = [(old[d] - old[n]) / (new[d] - new[n])
                for d, n in (('encode', 'analysis'), ('decode', 'synthesis'))]
      print(f'{name}: the rest is {ratios[0]:.1f}x (encode) and {ratios[1]:.1f}x '
            f'(decode) faster than version 4\'s; its files {new["bytes"]:,} bytes, '
            f'{new["bytes"] / old["bytes"] - 1:+.2%} against version 4\'s')


if __name__ == '__main__':
  main()
