"""Compression models, the entropy model's tables, MS-SSIM and BD-rate."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.signal import convolve2d
from skimage.metrics import structural_similarity
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ae_research import compression, entropy_models, metrics, rd


def _init(model, shape=(1, 32, 48, 3)):
  # Jitted: one compilation, not one per operation.
  init = jax.jit(model.init, static_argnames='train')
  return init({'params': jax.random.key(0), 'noise': jax.random.key(1)},
              jnp.zeros(shape), train=True)


def test_gdn_matches_its_formula():
  x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
  gdn = compression.GDN()
  v = gdn.init(jax.random.key(1), x)
  v = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.key(2), p.shape), v)
  beta = np.asarray(v['params']['beta_sqrt']) ** 2 + 1e-6
  gamma = np.asarray(v['params']['gamma_sqrt']) ** 2
  xn = np.asarray(x, np.float64)
  norm = np.sqrt(beta + np.einsum('bhwj,ji->bhwi', xn ** 2, gamma))
  np.testing.assert_allclose(gdn.apply(v, x), xn / norm, rtol=1e-5, atol=1e-6)
  inverse = compression.GDN(inverse=True).apply(v, x)
  np.testing.assert_allclose(inverse, xn * norm, rtol=1e-5, atol=1e-6)


def _trained_like_density(channels=4):
  """An entropy bottleneck with perturbed (not initial) parameters."""
  eb = entropy_models.EntropyBottleneck(channels)
  v = eb.init(jax.random.key(0), jnp.zeros((1, 2, 2, channels)))
  keys = iter(jax.random.split(jax.random.key(3), 100))
  return eb, jax.tree.map(
      lambda p: p + 0.5 * jax.random.normal(next(keys), p.shape), v)


@pytest.mark.slow
def test_density_sums_to_one_over_the_integers():
  eb, v = _trained_like_density()
  y = jnp.arange(-200, 201, dtype=jnp.float32)
  grid = jnp.broadcast_to(y[:, None], (len(y), 4))[None, :, None, :]
  p = eb.apply(v, grid, method='likelihood')[0, :, 0, :]  # [values, channels]
  np.testing.assert_allclose(np.sum(p, axis=0), 1.0, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize('exact', [True, False])
def test_coding_tables_match_the_density(exact):
  eb, v = _trained_like_density()
  offsets, pmfs = entropy_models.bottleneck_tables(v['params'], exact)
  for c in range(4):
    pmf = pmfs[c]
    assert abs(pmf.sum() - 1.0) < 1e-9
    assert pmf[-1] <= 2 * entropy_models.TAIL_MASS  # The escape's mass.
    y = (offsets[c] + np.arange(len(pmf) - 1)).astype(np.float32)
    full = np.zeros((1, len(y), 1, 4), np.float32)
    full[0, :, 0, c] = y
    p = np.asarray(eb.apply(v, jnp.asarray(full), method='likelihood'))[0, :, 0, c]
    np.testing.assert_allclose(pmf[:-1], p, atol=2e-6)


@pytest.mark.slow
@pytest.mark.parametrize('model', [
    compression.FactorizedPrior(features=(8, 8), latent_features=6),
    compression.FactorizedPrior(features=(8, 8), latent_features=6,
                                upsample='transpose'),
    compression.QuantizedAutoencoder(features=(8, 8), latent_features=6, bits=3),
], ids=['factorized', 'factorized_transpose', 'bottleneck'])
def test_quantize_then_dequantize_is_inference(model):
  v = _init(model)
  x = jax.random.uniform(jax.random.key(5), (2, 32, 48, 3))
  symbols = model.apply(v, x, method='quantize')
  assert symbols.dtype == jnp.int32 and symbols.shape == (2, 8, 12, 6)
  out = model.apply(v, x)
  np.testing.assert_allclose(model.apply(v, symbols, method='dequantize'),
                             out['output'], atol=1e-6)
  bits = entropy_models.bits(out['likelihoods'])
  assert bits.shape == (2,) and bool(jnp.all(bits > 0))
  if isinstance(model, compression.QuantizedAutoencoder):
    assert int(symbols.min()) >= 0 and int(symbols.max()) <= 7
    np.testing.assert_allclose(bits, 8 * 12 * 6 * 3, rtol=1e-6)


@pytest.mark.slow
def test_training_noise_differs_from_rounding():
  model = compression.FactorizedPrior(features=(8, 8), latent_features=6)
  v = _init(model)
  x = jax.random.uniform(jax.random.key(5), (1, 32, 32, 3))
  a = model.apply(v, x, train=True, rngs={'noise': jax.random.key(0)})
  b = model.apply(v, x, train=True, rngs={'noise': jax.random.key(1)})
  assert not np.allclose(entropy_models.bits(a['likelihoods']),
                         entropy_models.bits(b['likelihoods']))


@pytest.mark.slow
def test_hyperprior_likelihoods_and_rounding():
  """The mean-scale model (the scale-only one is its special case)."""
  mean_scale = True
  model = compression.ScaleHyperprior(features=(8, 8), latent_features=6,
                                      hyper_features=5, mean_scale=mean_scale)
  v = _init(model, (1, 32, 32, 3))
  x = jax.random.uniform(jax.random.key(5), (2, 32, 48, 3))
  out = model.apply(v, x)
  assert set(out['likelihoods']) == {'y', 'z'}
  assert out['likelihoods']['y'].shape == (2, 8, 12, 6)
  assert out['likelihoods']['z'].shape == (2, 2, 3, 5)
  # Computed apart: z rounded, its parameters, y rounded around the means.
  y = model.apply(v, x, method='analysis')
  z_hat = jnp.round(model.apply(v, y, method='hyper_latent'))
  scales, means = model.apply(v, z_hat, method='entropy_parameters')
  assert (means is not None) == mean_scale
  y_hat = jnp.round(y - means) + means if mean_scale else jnp.round(y)
  want = model.apply(v, y_hat, method='synthesis')
  np.testing.assert_allclose(out['output'], jnp.clip(want, 0, 1), atol=1e-5)
  p_y = entropy_models.GaussianConditional().apply({}, y_hat, scales, means,
                                                   method='likelihood')
  np.testing.assert_allclose(out['likelihoods']['y'], p_y, rtol=1e-5)
  noisy = model.apply(v, x, train=True, rngs={'noise': jax.random.key(0)})
  assert not np.allclose(noisy['likelihoods']['y'], out['likelihoods']['y'])


def test_hyperprior_needs_sides_divisible_by_its_hyper_latent():
  model = compression.ScaleHyperprior(features=(8, 8), latent_features=6,
                                      hyper_features=5)
  keys = {'params': jax.random.key(0), 'noise': jax.random.key(1)}
  v = jax.eval_shape(model.init, keys, jnp.zeros((1, 16, 16, 3)))
  with pytest.raises(ValueError, match=re.escape(
      'divisible by 16; got 24x32: pad to 32x32 (or crop to 16x32)')):
    jax.eval_shape(model.apply, v, jnp.zeros((1, 24, 32, 3)))
  # The analysis alone (what the codec tiles) needs only y's factor.
  y = jax.eval_shape(lambda v, x: model.apply(v, x, method='analysis'), v,
                     jnp.zeros((1, 24, 32, 3)))
  assert y.shape == (1, 6, 8, 6)



_MODELS = {
    'factorized': lambda: compression.FactorizedPrior(features=(8, 8),
                                                      latent_features=6),
    'factorized_transpose': lambda: compression.FactorizedPrior(
        features=(8, 8), latent_features=6, upsample='transpose'),
    'bottleneck': lambda: compression.QuantizedAutoencoder(
        features=(8, 8), latent_features=6, bits=3),
}



def test_downsampling_is_two_to_the_number_of_levels():
  for features in [(8,), (8, 8), (8, 8, 8, 8)]:
    for cls in (compression.FactorizedPrior, compression.QuantizedAutoencoder):
      assert cls(features=features).downsampling == 2 ** len(features)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(_MODELS))
def test_sides_that_are_not_multiples_are_refused(name):
  model = _MODELS[name]()
  v = _init(model, (1, 8, 8, 3))
  who = type(model).__name__
  message = re.escape(f'{who} with 2 levels needs height and width divisible '
                      'by 4; got 33x32: pad to 36x32 (or crop to 32x32)')
  x = jnp.zeros((1, 33, 32, 3))
  methods = ['latent', 'quantize', None]  # None: __call__.
  if who == 'FactorizedPrior':
    methods.append('analysis')
  for method in methods:
    with pytest.raises(ValueError, match=message):
      model.apply(v, x, method=method)
  with pytest.raises(ValueError, match=message):
    model.apply(v, x, train=True, rngs={'noise': jax.random.key(0)})
  with pytest.raises(ValueError, match=message):
    jax.jit(lambda v, x: model.apply(v, x, method='quantize'))(v, x)
  with pytest.raises(ValueError, match=re.escape('add a batch axis (x[None])')):
    model.apply(v, jnp.zeros((32, 32, 3)))


def test_factorized_prior_refuses_other_upsampling():
  model = compression.FactorizedPrior(features=(8,), upsample='nearest')
  choices = compression.FACTORIZED_UPSAMPLE_KINDS
  with pytest.raises(ValueError, match=re.escape(
      f"upsample='nearest'; choose one of {choices}")):
    _init(model, (1, 8, 8, 3))


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(_MODELS))
def test_training_over_a_mesh_equals_one_device(name):
  # jax.make_mesh's default axis types are Explicit: no reshape may merge the
  # batch-sharded axis into another without saying how it is sharded.
  model = _MODELS[name]()
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ('data',))
  x = jax.random.uniform(jax.random.key(5), (n, 16, 16, 3))
  v = _init(model, x.shape)
  x_sharded = jax.device_put(x, NamedSharding(mesh, P('data')))
  # Parameters live on the mesh too: only then can jax give their gradient,
  # a sum over the sharded batch, a sharding.
  v_replicated = jax.device_put(v, NamedSharding(mesh, P()))
  rngs = {'noise': jax.random.key(7)}
  train = lambda v, x: model.apply(v, x, train=True, rngs=rngs)

  def loss(v, x):
    out = train(v, x)
    pixels = x.shape[1] * x.shape[2]
    return jnp.mean(entropy_models.bits(out['likelihoods'])) / pixels + jnp.mean(
        (out['output'] - x) ** 2)

  got, want = jax.jit(train)(v_replicated, x_sharded), train(v, x)
  assert got['output'].sharding.spec[0] == 'data'
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
               got, want)
  grads = jax.jit(jax.grad(loss))(v_replicated, x_sharded)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-5),
               grads, jax.grad(loss)(v, x))


# -- MS-SSIM against an independent numpy implementation --------------------


def _np_ms_ssim(a, b, weights=metrics.MS_SSIM_WEIGHTS):
  """MS-SSIM written from tf.image.ssim_multiscale's definition in numpy."""
  t = np.arange(11) - 5.0
  g = np.exp(-t ** 2 / (2 * 1.5 ** 2))
  win = np.outer(g, g) / np.sum(g) ** 2
  c1, c2 = 0.01 ** 2, 0.03 ** 2
  values = []
  for ch in range(a.shape[-1]):
    x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
    terms = []
    for k in range(len(weights)):
      if k:
        x = np.pad(x, ((0, x.shape[0] % 2), (0, x.shape[1] % 2)), 'symmetric')
        y = np.pad(y, ((0, y.shape[0] % 2), (0, y.shape[1] % 2)), 'symmetric')
        x = 0.25 * (x[::2, ::2] + x[1::2, ::2] + x[::2, 1::2] + x[1::2, 1::2])
        y = 0.25 * (y[::2, ::2] + y[1::2, ::2] + y[::2, 1::2] + y[1::2, 1::2])
      f = lambda z: convolve2d(z, win, mode='valid')
      mx, my = f(x), f(y)
      vx, vy, cov = f(x * x) - mx ** 2, f(y * y) - my ** 2, f(x * y) - mx * my
      cs = (2 * cov + c2) / (vx + vy + c2)
      lum = (2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1)
      terms.append(max(np.mean(cs if k < len(weights) - 1 else lum * cs), 0.0))
    values.append(np.prod(np.array(terms) ** np.array(weights)))
  return np.mean(values)


@pytest.mark.slow
@pytest.mark.parametrize('shape', [(176, 176, 3), (201, 243, 3), (190, 333, 1)])
def test_ms_ssim_matches_numpy(shape):
  rng = np.random.default_rng(sum(shape))
  a = rng.random(shape).astype(np.float32)
  # A smooth image and a noisy, blurred copy: every term is informative.
  a = np.asarray(jax.image.resize(jnp.asarray(a[::8, ::8]), shape, 'bicubic'))
  b = np.clip(a + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
  got = float(metrics.ms_ssim(jnp.asarray(a[None]), jnp.asarray(b[None]))[0])
  np.testing.assert_allclose(got, _np_ms_ssim(a, b), rtol=1e-4)
  assert float(metrics.ms_ssim(jnp.asarray(a[None]), jnp.asarray(a[None]))[0]) == pytest.approx(1.0, abs=1e-5)


def test_single_scale_is_scikit_image_ssim():
  rng = np.random.default_rng(0)
  a = rng.random((64, 80, 3)).astype(np.float32)
  b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
  got = float(metrics.ms_ssim(jnp.asarray(a[None]), jnp.asarray(b[None]),
                              weights=(1.0,))[0])
  want = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                               use_sample_covariance=False, data_range=1.0,
                               channel_axis=-1)
  np.testing.assert_allclose(got, want, rtol=1e-4)


def test_ms_ssim_refuses_small_images():
  x = jnp.zeros((1, 100, 300, 3))
  with pytest.raises(ValueError, match='at least 161 pixels'):
    metrics.ms_ssim(x, x)


# -- BD-rate ------------------------------------------------------------------


def _curve(rates, psnr_of_log_rate):
  return [{'bpp': r, 'psnr': psnr_of_log_rate(np.log10(r)), 'ms_ssim': 0.0}
          for r in rates]


def test_bd_rate_of_a_curve_needing_half_the_bits():
  f = lambda lr: 30 + 8 * lr + 2 * lr ** 2
  anchor = _curve([0.1, 0.2, 0.4, 0.8, 1.6], f)
  half = [{**p, 'bpp': p['bpp'] / 2} for p in anchor]
  assert rd.bd_rate(half, anchor) == pytest.approx(-50.0, abs=1e-6)
  assert rd.bd_rate(anchor, half) == pytest.approx(100.0, abs=1e-6)
  assert rd.bd_rate(anchor, anchor) == pytest.approx(0.0, abs=1e-9)
  # No common quality range: no number.
  far = [{**p, 'psnr': p['psnr'] + 100} for p in anchor]
  assert rd.bd_rate(far, anchor) is None


def test_interpolate_on_a_curve():
  pts = [{'bpp': 0.1, 'psnr': 25.0}, {'bpp': 1.0, 'psnr': 35.0}]
  assert rd.interpolate(pts, np.sqrt(0.1), 'psnr') == pytest.approx(30.0)
  assert rd.interpolate(pts, 2.0, 'psnr') is None


@pytest.mark.parametrize('codec', ['jpeg', 'webp'])
def test_classical_rate_is_the_file_size(codec):
  rng = np.random.default_rng(0)
  image = (rng.random((180, 200, 3)) * 255).astype(np.uint8)
  data, decoded = rd.classical_roundtrip(image, codec, 50)
  assert decoded.shape == image.shape and decoded.dtype == np.uint8
  p = rd.point(len(data), decoded, image)
  assert p['bpp'] == 8 * len(data) / (180 * 200)
  lo, hi = (rd.point(len(d), x, image)
            for d, x in (rd.classical_roundtrip(image, codec, q) for q in (10, 90)))
  assert lo['bpp'] < hi['bpp'] and lo['psnr'] < hi['psnr']
