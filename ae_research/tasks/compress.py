"""Compression: an image to a small file and back (`configs/compress.py`).

The model (`ae_research.compression`, chosen by config.compress.model) is
trained on `lambda * 255^2 * MSE + bits per pixel`. Evaluation runs the real
codec (`ae_research.aec`) on whole images: every rate is the size of the
`.aec` file, every score is that of the image decoded from it, beside the
model's estimated rate and Pillow's JPEG and WebP on the same images.
"""

import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import (aec, checks, compression, datasets, entropy_models,
                         image_io, rd, summaries)
from ae_research import metrics as metrics_lib
from ae_research.tasks import base


def _quality(q) -> str | None:
  top = compression.MAX_QUALITY
  return None if isinstance(q, (int, float)) and not isinstance(q, bool) and (
      0 <= q <= top) else f'a number from 0 to {top:g}'


def variable_rate(config: Any) -> bool:
  """Whether the config's model covers every rate (config.compress.rate_levels)."""
  return bool(config.compress.rate_levels)


class Compress(base.Task):
  """An image to a real file and back; scored by the file's rate."""

  name = 'compress'
  group = 'compress'
  apply_files = ('.aec',)  # `python -m ae_research.apply` writes the file too.

  def group_defaults(self) -> dict[str, Any]:
    # lmbda weighs distortion against rate: lmbda * 255^2 * MSE + bpp;
    # hyper_features: the hyperprior models' hyper latent channels (N).
    # Variable rate (rate_levels > 0; compression.RateGains): qualities 0 to
    # 100 stand for lambdas log-uniform over lmbda_range (lmbda unused);
    # quality is the one coded by default, eval_qualities those the
    # whole-image evaluation draws the curve with.
    return dict(model='factorized', lmbda=0.01, bits=4, hyper_features=128,
                rate_levels=0, lmbda_range=(0.0018, 0.1), quality=50.0,
                eval_qualities=(0.0, 25.0, 50.0, 75.0, 100.0))

  def check_config(self, config: Any) -> list[str]:
    """config.compress, and the evaluation compression needs."""
    found = checks.problems(config, {
        'compress.model': checks.one_of(compression.MODELS),
        'compress.lmbda': checks.positive_float,
        'compress.bits': checks.one_of(tuple(range(1, 17))),
        'compress.hyper_features': checks.positive,
        'compress.rate_levels': checks.non_negative,
        'compress.quality': _quality,
        'compress.eval_qualities': lambda v: None if isinstance(
            v, (tuple, list)) and v and all(_quality(q) is None for q in v)
        else f'a non-empty tuple of qualities, each {_quality(-1)}',
        'compress.lmbda_range': lambda v: None if isinstance(v, (tuple, list))
        and len(v) == 2 and all(isinstance(x, (int, float)) for x in v)
        and 0 < v[0] < v[1] else 'two lambdas (low, high), 0 < low < high',
    })
    levels = config.compress.rate_levels
    if not found and levels:
      if levels == 1:
        found.append('config.compress.rate_levels=1 is not allowed: use 0 (one '
                     'rate) or at least 2 gain vectors, e.g. 8')
      if config.compress.model not in compression.VARIABLE_RATE_MODELS:
        found.append(f'config.compress.rate_levels={levels}: variable rate is for '
                     f'the models {list(compression.VARIABLE_RATE_MODELS)}, not '
                     f'config.compress.model={config.compress.model!r}; use 0')
    if config.model.arch != 'autoencoder':
      found.append(f'config.model.arch={config.model.arch!r}: the compression '
                   "models are built from the autoencoder's fields; use "
                   "'autoencoder'")
      return found
    if (config.compress.model != 'bottleneck' and
        config.model.upsample not in compression.FACTORIZED_UPSAMPLE_KINDS):
      found.append(f'config.model.upsample={config.model.upsample!r}: the '
                   f'{config.compress.model} model upsamples with one of '
                   f'{list(compression.FACTORIZED_UPSAMPLE_KINDS)}')
    if config.compress.model in ('hyperprior', 'mean_scale'):
      multiple = 4 * 2 ** len(config.model.features)
      if config.patch_size % multiple:
        found.append(f'config.patch_size={config.patch_size}: the '
                     f'{config.compress.model} model with '
                     f'{len(config.model.features)} levels needs patches whose '
                     f'side is a multiple of {multiple} (its hyper latent is '
                     f'{multiple}x smaller than the image)')
    if not config.eval_classical:
      found.append('config.eval_classical=False: compression is scored beside '
                   'JPEG and WebP at the same rate; set it to True')
    if not config.eval_whole_images:
      found.append('config.eval_whole_images=False: compression is scored on '
                   'the real files of whole images; set it to True')
    if config.dataset == 'shapes':
      found.append("config.dataset='shapes' has 32x32 images; compression "
                   'needs photos (MS-SSIM wants sides of 161 pixels or more): '
                   "use 'photos', folder:PATH or tfds:NAME")
    return found

  def make_model(self, config: Any, norm_axis_name=None):
    del norm_axis_name  # The compression models have no batch statistics.
    return compression.from_config(config)

  def make_pair(self, example: dict[str, Any], rng: Any,
                config: Any) -> dict[str, Any]:
    del rng, config
    image = base.pixels(example['image'])
    return {'input': image, 'target': image}

  def loss(self, pred: Any, batch: dict[str, jax.Array], config: Any) -> Any:
    """Per example: lambda * 255^2 * MSE + bpp, with both terms reported;
    a variable-rate model's lambda is that of the example's quality."""
    mse = metrics_lib.mse(pred['output'], batch['target'])
    num_pixels = batch['target'].shape[1] * batch['target'].shape[2]
    bpp = entropy_models.bits(pred['likelihoods']) / num_pixels
    lmbda = config.compress.lmbda
    if 'quality' in pred:
      lmbda = compression.lmbda_at(pred['quality'], config.compress.lmbda_range)
    return {'loss': lmbda * 255.0 ** 2 * mse + bpp, 'bpp': bpp,
            'psnr': -10.0 * jnp.log10(mse)}

  def metrics(self, pred: Any, batch: dict[str, jax.Array], config: Any):
    """PSNR and the model's estimated rate (the real rate needs the codec:
    whole-image evaluation)."""
    del config
    mask_B = batch['mask']
    num_pixels = batch['target'].shape[1] * batch['target'].shape[2]
    out = metrics_lib.rgb_psnr_ssim(pred['output'], batch)
    bits = entropy_models.bits(pred['likelihoods'])
    out['bpp_estimated'] = metrics_lib.mean_over_batch(bits / num_pixels, mask_B)
    return out

  def baseline_name(self, config: Any) -> str:
    """JPEG at the model's rate, interpolated on its curve (whole images);
    the uncompressed input on scored batches."""
    del config
    return 'jpeg'

  def apply_pair(self, image: np.ndarray, config: Any) -> dict[str, Any]:
    """The codec takes the image itself."""
    del config
    return {'input': image, 'shown': image}

  def codec(self, config: Any, state: Any, plan: Any) -> aec.Codec:
    """The trained model as a codec of real files."""
    return aec.Codec.from_config(config, state.params, state.model_state, plan)

  def make_applier(self, config: Any, state: Any, plan: Any) -> base.Applier:
    """apply(image, compare, on_tile) -> base.Result for
    `python -m ae_research.apply`: the image coded to a real .aec file (alpha
    stored losslessly beside the coded color) and decoded from it; the
    comparison shows JPEG and WebP at about the same rate."""
    codec = self.codec(config, state, plan)

    def apply(image, compare: bool = False, on_tile=None):
      codec.on_tile = on_tile
      planes = [image_io.to_uint8(image.pixels)]
      if image.alpha is not None:
        planes.append(image_io.to_uint8(image.alpha))
      data = codec.encode(np.concatenate(planes, -1))
      decision = codec.last_decision
      decoded = codec.decode(data).astype(np.float32) / 255.0
      channels = image.pixels.shape[-1]
      h, w = decoded.shape[:2]
      bpp = 8 * len(data) / (h * w)
      out = image_io.Image(decoded[..., :channels],
                           decoded[..., channels:] if image.alpha is not None else None, 8)
      result = base.Result(out, {'.aec': data}, decision=decision,
                           note=f'{len(data)} bytes, {bpp:.4f} bpp')
      if compare:
        rgb = image.rgb_uint8()
        result.compare = [('original', rgb / 255.0), (f'model {bpp:.3f} bpp', out.pixels)]
        for name in ('jpeg', 'webp'):
          rate, pixels = rd.closest_classical(rgb, name, bpp)
          result.compare.append((f'{name} {rate:.3f} bpp', pixels / 255.0))
      return result

    return apply

  def evaluate_images(self, state: Any, predict: Callable, source: Any,
                      config: Any, out_dir: str | None = None,
                      max_images: int | None = None,
                      classical: bool = True) -> dict[str, Any]:
    """The codec on every image of `source`, beside JPEG and WebP.

    Writes to `out_dir`: files/<name>.aec (the compressed files), decoded/
    <name>.png (what decompressing them gives, exactly what was scored),
    images/<name>.png (original | model | JPEG and WebP at about its rate),
    results.json, results.md and rd_psnr.png / rd_ms_ssim.png.
    Returns {'mean': {'model', 'jpeg', 'webp'}, 'images', 'curves', 'sample'}.
    """
    del predict
    return evaluate_codec(state, source, config, out_dir, max_images, classical)


def evaluate_codec(state: Any, source: Any, config: Any,
                   out_dir: str | None = None, max_images: int | None = None,
                   classical: bool = True) -> dict[str, Any]:
  """`Compress.evaluate_images`: the real codec of `state` on whole images."""
  codec = aec.Codec.from_config(config, state.params, state.model_state)
  n = len(source) if max_images is None else min(max_images, len(source))
  rows, images, decoded_images = [], [], []
  # A variable-rate model: its whole curve too, one point per quality.
  qualities = tuple(config.compress.eval_qualities) if variable_rate(config) else ()
  for i in range(n):
    example = source[i]
    name = example.get('name', i)
    name = name.decode() if isinstance(name, bytes) else str(name)
    image = np.asarray(example['image'], np.uint8)
    side = min(image.shape[:2])
    if side < metrics_lib.ms_ssim_min_side():
      raise datasets.DataError(f'image {name} is {image.shape[0]}x{image.shape[1]}: '
                       f'MS-SSIM needs sides of at least '
                       f'{metrics_lib.ms_ssim_min_side()} pixels')
    row, decoded, data = rd.code_image(codec, image)
    rows.append({'name': name, 'height': image.shape[0], 'width': image.shape[1],
                 'model': row})
    if qualities:
      rows[-1]['model_curve'] = rd.code_curve(codec, image, qualities)
    images.append((name, image))
    decoded_images.append(decoded)
    if out_dir:
      os.makedirs(os.path.join(out_dir, 'files'), exist_ok=True)
      summaries.write_bytes(os.path.join(out_dir, 'files', f'{name}.aec'), data)
      summaries.save_png(os.path.join(out_dir, 'decoded', f'{name}.png'), decoded)
  mean = {'model': {k: float(np.mean([r['model'][k] for r in rows]))
                    for k in rows[0]['model']}}
  results = {'mean': mean, 'images': rows, 'columns': ['original', 'model']}
  if qualities:
    results['model_curve'] = rd.mean_points([r['model_curve'] for r in rows])
    for p in results['model_curve']:  # Each quality's point, in the history.
      for k in ('bpp', 'psnr'):
        mean['model'][f'{k}_q{p["quality"]:g}'] = p[k]
  if classical:
    curves = rd.classical_curves(images)
    if qualities:  # The one model's curve against each classical codec's.
      results['bd_rate'] = {
          codec_name: {m: rd.bd_rate(results['model_curve'], curve['mean'], m)
                       for m in rd.METRICS}
          for codec_name, curve in curves.items()}
      for codec_name, bd in results['bd_rate'].items():  # As a score too.
        mean['model'][f'bd_rate_{codec_name}'] = (
            float('nan') if bd['psnr'] is None else bd['psnr'])
    for codec_name, curve in curves.items():
      at_rate = {m: rd.interpolate(curve['mean'], mean['model']['bpp'], m)
                 for m in rd.METRICS}
      mean[codec_name] = {m: (float('nan') if v is None else v)
                          for m, v in at_rate.items()}
      for r in rows:
        r[codec_name] = curve['images'][r['name']]
    results['curves'] = {k: v['mean'] for k, v in curves.items()}
    results['columns'] += list(curves)
  if out_dir:
    _write_report(results, images, decoded_images, out_dir, config)
  results['sample'] = [images[0][1][None] / 255.0, decoded_images[0][None] / 255.0]
  return results


def _closest(image: np.ndarray, curve: list[dict], codec_name: str,
             bpp: float) -> np.ndarray:
  """The classical codec's decoded image at the quality whose rate on this
  image (`curve`: its points) is nearest `bpp`."""
  q = min(curve, key=lambda p: abs(p['bpp'] - bpp))['quality']
  return rd.classical_roundtrip(image, codec_name, q)[1]


def _write_report(results: dict, images: list, decoded_images: list,
                  out_dir: str, config: Any) -> None:
  rows = results['images']
  classical_names = list(results.get('curves', {}))
  if variable_rate(config):
    setting = (f'quality {config.compress.quality:g} (lambda '
               f'{compression.lmbda_at(config.compress.quality, config.compress.lmbda_range):.4g})'
               f' of a variable-rate model')
  else:
    setting = f'lambda {config.compress.lmbda}'
  lines = [f'# Codec evaluation: {len(rows)} images, {setting}, model '
           f'{config.compress.model}\n',
           '| image | size | bpp (file) | bpp (estimated) | PSNR (dB) | MS-SSIM |' +
           ''.join(f' {c.upper()} PSNR at this rate |' for c in classical_names),
           '|---|---|---|---|---|---|' + '---|' * len(classical_names)]
  fmt = lambda v: '-' if v is None or v != v else f'{v:.2f}'
  for r in rows + [{'name': '**mean**', 'height': '', 'width': '',
                    'model': results['mean']['model']}]:
    m = r['model']
    size = f'{r["width"]}x{r["height"]}' if r['height'] else ''
    at_rate = [rd.interpolate(r[c], m['bpp']) if c in r else
               results['mean'][c]['psnr'] for c in classical_names]
    lines.append(f'| {r["name"]} | {size} | {m["bpp"]:.4f} | '
                 f'{m["bpp_estimated"]:.4f} | {m["psnr"]:.2f} | {m["ms_ssim"]:.4f} |' +
                 ''.join(f' {fmt(v)} |' for v in at_rate))
  m = results['mean']['model']
  gap = m['bpp'] - m['bpp_estimated']
  lines.append(f'\nFile size against the estimated rate: {gap:+.4f} bpp '
               f'({100 * gap / max(m["bpp_estimated"], 1e-12):+.1f}%).\n')
  if 'curves' in results:
    for codec_name in results['curves']:
      v = results['mean'][codec_name]
      lines.append(f'{codec_name.upper()} at the same rate: PSNR {v["psnr"]:.2f} dB, '
                   f'MS-SSIM {v["ms_ssim"]:.4f}.')
    learned = {'model': results.get('model_curve', [m])}
    if 'bd_rate' in results:
      fmt_bd = lambda v: 'n/a' if v is None else f'{v:+.1f}%'
      lines.append('\nThe model\'s curve (qualities '
                   f'{", ".join(f"{q:g}" for q in config.compress.eval_qualities)})'
                   ' against each classical codec, BD-rate (negative: fewer bits):')
      for codec_name, bd in results['bd_rate'].items():
        lines.append(f'- {codec_name.upper()}: PSNR {fmt_bd(bd["psnr"])}, '
                     f'MS-SSIM {fmt_bd(bd["ms_ssim"])}')
    lines.append('\n' + rd.curve_table({**learned, **results['curves']}))
    label = ('model (one model, every quality)' if 'model_curve' in results
             else f'model (lambda {config.compress.lmbda})')
    for metric in rd.METRICS:
      rd.plot({label: learned['model'], **results['curves']},
              os.path.join(out_dir, f'rd_{metric}.png'), metric)
    for r, (name, image), decoded in zip(rows, images, decoded_images):
      columns = [image, decoded] + [_closest(image, r[c], c, r['model']['bpp'])
                                    for c in results['curves']]
      summaries.save_png(os.path.join(out_dir, 'images', f'{name}.png'),
                         summaries.image_grid([c[None] / 255.0 for c in columns]))
  summaries.write_json(os.path.join(out_dir, 'results.json'), results)
  summaries.write_text(os.path.join(out_dir, 'results.md'), '\n'.join(lines) + '\n')

