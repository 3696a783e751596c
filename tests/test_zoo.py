"""The reference models: shapes, purity, what each one is built to do, and
their configs."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ae_research import config_lib, corruptions, defaults, zoo
from ae_research import workdir as workdir_lib
from configs import colorize, compress, default, denoise, super_resolution

SMALL = {
    'autoencoder': dict(features=(4, 8), latent_features=4),
    'unet': dict(features=(4, 8, 8)),
    'dncnn': dict(depth=4, width=8),
    'ffdnet': dict(depth=3, width=8),
    'espcn': dict(widths=(8, 4)),
    'fsrcnn': dict(width=8, shrink=4, mapping_layers=2),
    'edsr': dict(num_blocks=2, width=8),
}


def _config(arch, **fields):
  return ml_collections.ConfigDict(
      dict(arch=arch, **{**defaults.ARCHS[arch], **SMALL[arch], **fields}))


def _channels(arch):
  return 4 if arch in zoo.NOISE_MAP_ARCHS else 3


@pytest.mark.parametrize('arch,scale', [(a, 3) for a in sorted(zoo.ARCHS)] + [
    (a, s) for a in zoo.SUPER_RESOLUTION_ARCHS for s in (2, 4)])
def test_any_size_in_the_promised_size_out(arch, scale):
  model = zoo.from_config(_config(arch), out_features=3, scale=scale)
  x = jax.random.uniform(jax.random.key(0), (2, 13, 10, _channels(arch)))
  variables = model.init(jax.random.key(1), x)
  y = model.apply(variables, x)
  up = scale if arch in zoo.SUPER_RESOLUTION_ARCHS else 1
  assert model.upscale == up
  assert y.shape == (2, 13 * up, 10 * up, 3)
  assert bool(jnp.all(jnp.isfinite(y)))
  # A pure function of (variables, input), and the parameters matter.
  np.testing.assert_array_equal(model.apply(variables, x), y)
  other = model.init(jax.random.key(2), x)
  assert not np.allclose(model.apply(other, x), y)


def test_published_sizes_have_the_published_parameter_counts():
  """EDSR's baseline: 1.37M (x2), 1.55M (x3), 1.52M (x4) parameters; a
  17-layer color DnCNN: 3 and 64 channels, 15 batch-normed middle layers."""
  count = lambda m, c: sum(a.size for a in jax.tree.leaves(jax.eval_shape(
      m.init, jax.random.key(0), jnp.zeros((1, 8, 8, c)))['params']))
  edsr = [count(zoo.EDSR(scale=s), 3) for s in (2, 3, 4)]
  assert [round(n / 1e4) for n in edsr] == [137, 155, 152]
  conv = lambda i, o: 9 * i * o + o
  middle = 15 * (9 * 64 * 64 + 2 * 64)  # No bias before batch norm.
  assert count(zoo.DnCNN(), 3) == conv(3, 64) + middle + conv(64, 3)


def test_dncnn_predicts_the_noise_and_keeps_batch_statistics():
  model = zoo.DnCNN(**SMALL['dncnn'])
  x = jax.random.uniform(jax.random.key(0), (4, 12, 12, 3))
  variables = model.init(jax.random.key(1), x)
  assert 'batch_stats' in variables
  # With a last layer of zeros it predicts no noise: the output is the input.
  params = jax.tree.map(lambda a: a, variables['params'])
  params['body']['last'] = jax.tree.map(jnp.zeros_like, params['body']['last'])
  y = model.apply({**variables, 'params': params}, x)
  np.testing.assert_allclose(y, x, atol=1e-6)
  _, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  before = jax.tree.leaves(variables['batch_stats'])
  assert any(not np.allclose(a, b) for a, b in
             zip(before, jax.tree.leaves(updates['batch_stats'])))


def test_ffdnet_reads_the_noise_map_and_says_what_it_needs():
  model = zoo.FFDNet(**SMALL['ffdnet'])
  noisy = jax.random.uniform(jax.random.key(0), (1, 10, 14, 3))
  level = lambda s: jnp.concatenate([noisy, jnp.full((1, 10, 14, 1), s)], -1)
  variables = model.init(jax.random.key(1), level(0.1))
  assert not np.allclose(model.apply(variables, level(0.05)),
                         model.apply(variables, level(0.2)))
  with pytest.raises(ValueError, match='noise map'):
    model.apply(variables, noisy[..., :1])


@pytest.mark.parametrize('arch', zoo.SUPER_RESOLUTION_ARCHS)
def test_bicubic_skip_adds_the_bicubic_upsampling(arch):
  """With the last layer at zero, a model with the skip gives bicubic
  upsampling; it agrees with the protocol's (host) bicubic inside the
  image."""
  model = zoo.from_config(_config(arch, bicubic_skip=True), 3, scale=3)
  rng = np.random.default_rng(0)
  lr = corruptions.quantize(rng.uniform(size=(12, 12, 3)).astype(np.float32))
  variables = model.init(jax.random.key(1), lr[None])
  params = dict(variables['params'])
  last = sorted((k for k in params if k.startswith('Conv_')),
                key=lambda k: int(k.split('_')[1]))[-1]
  params[last] = jax.tree.map(jnp.zeros_like, params[last])
  y = np.asarray(model.apply({'params': params}, lr[None]))[0]
  np.testing.assert_allclose(y, zoo.bicubic_upsample(lr[None], 3)[0], atol=1e-5)
  host = corruptions.bicubic_upscale(lr, 3)
  np.testing.assert_allclose(y[6:-6, 6:-6], host[6:-6, 6:-6], atol=2e-3)


def test_unet_uses_its_skips():
  """A U-Net output pixel sees the input at full resolution: changing one
  input pixel changes the output there even when the deepest level's
  features are zeroed."""
  model = zoo.UNet(features=(4, 8), blocks_per_level=1, residual=False)
  x = jax.random.uniform(jax.random.key(0), (1, 8, 8, 3))
  variables = model.init(jax.random.key(1), x)
  y = model.apply(variables, x)
  x2 = x.at[0, 3, 3].add(1.0)
  assert not np.allclose(model.apply(variables, x2)[0, 3, 3], y[0, 3, 3])
  assert model.downsampling == 2


def test_from_config_and_use_arch_name_what_is_wrong():
  with pytest.raises(ValueError, match="arch='vdsr'; choose one of"):
    zoo.from_config(ml_collections.ConfigDict(dict(arch='vdsr')), 3)
  config = default.get_config()
  with pytest.raises(ValueError, match="dncnn has no field"):
    default.use_arch(config, 'dncnn', features=(8,))
  default.use_arch(config, 'dncnn', depth=5)
  assert config.model.depth == 5 and 'features' not in config.model


@pytest.mark.parametrize('module,variants', [
    (denoise, ['dncnn', 'ffdnet', 'ffdnet,blind', 'unet', 'dncnn,smoke', 'unet,smoke']),
    (super_resolution, ['espcn', 'fsrcnn,x2', 'edsr,x4', 'edsr,smoke']),
    (colorize, ['unet', 'photos,unet', 'unet,photos,smoke']),
])
def test_reference_variants_are_valid(module, variants):
  for variant in variants:
    config = module.get_config(variant)
    config_lib.validate(config, num_devices=8)
    assert config.model.arch in zoo.ARCHS


def test_variants_apply_in_the_experiments_order():
  assert (colorize.get_config('unet,photos').to_dict() ==
          colorize.get_config('photos,unet').to_dict())


@pytest.mark.parametrize('make,field,message', [
    (lambda: denoise.get_config('dncnn'), 'model.depth', 'an integer >= 2'),
    (lambda: super_resolution.get_config('edsr'), 'model.res_scale', 'a number > 0'),
    (lambda: denoise.get_config('ffdnet,salt_and_pepper'), None,
     'takes the noise level'),
    (lambda: compress.get_config(), 'model.arch', "use 'autoencoder'"),
    (lambda: super_resolution.get_config('espcn'), 'patch_size',
     'multiple of config.sr.scale'),
])
def test_bad_model_configs_are_named(make, field, message):
  config = make()
  if field == 'model.depth':
    config.model.depth = 1
  elif field == 'model.res_scale':
    config.model.res_scale = 0.0
  elif field == 'model.arch':
    default.use_arch(config, 'unet')
  elif field == 'patch_size':
    config.patch_size = 50
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config, num_devices=8)


def test_a_run_from_before_config_model_arch_still_opens(tmp_path):
  """Its stored model has no 'arch': it was the autoencoder."""
  config = colorize.get_config('smoke')
  workdir = str(tmp_path / 'run')
  workdir_lib.check_workdir(config, workdir)
  path = os.path.join(workdir, 'config.json')
  with open(path) as f:
    stored = json.load(f)
  del stored['model']['arch']
  with open(path, 'w') as f:
    json.dump(stored, f)
  workdir_lib.check_workdir(config, workdir)  # Resumes: no mismatch.
  assert workdir_lib.load_config(workdir).model.arch == 'autoencoder'
  default.use_arch(config, 'unet')
  with pytest.raises(workdir_lib.WorkdirMismatch, match='config.model'):
    workdir_lib.check_workdir(config, workdir)
