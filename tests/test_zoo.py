"""The architectures: every one of the registry at smoke size (a new one is
covered by declaring it), the registry's checks, and what each reference
model is built to do."""

import json
import os
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from ae_research import archs, checks, config_lib, corruptions, zoo
from ae_research import workdir as workdir_lib
from configs import colorize, compress, default, denoise, super_resolution

# The reference models of zoo.py; the tests of what each is built to do.
REFERENCE = ('autoencoder', 'unet', 'dncnn', 'ffdnet', 'espcn', 'fsrcnn',
             'edsr')


def _config(arch, **fields):
  """config.model of `arch` at its smoke size, with `fields`."""
  return ml_collections.ConfigDict(
      archs.get(arch).config(**{**archs.get(arch).smoke, **fields}))


def _channels(arch):
  return 4 if archs.get(arch).noise_map else 3


def _smoke_config(arch):
  """An experiment config with `arch`, after the 'smoke' variant."""
  config = default.get_config()
  default.use_arch(config, arch)
  return default.apply_variant(config, 'smoke')


@pytest.mark.parametrize('name', archs.names())
def test_every_architecture_builds_from_its_smoke_config_and_runs(name):
  """The contract of a registered architecture: its smoke config passes its
  checks and builds; init and apply (eval and train) give the promised size
  from sides that are multiples of `downsampling`, as a pure function."""
  arch = archs.get(name)
  config = _smoke_config(name)
  assert config.model.arch == name
  assert arch.problems(config.model) == []
  model = zoo.from_config(config.model, out_features=3, scale=2)
  up = 2 if arch.low_resolution else 1
  assert model.upscale == up
  h, w = 4 * model.downsampling, 6 * model.downsampling
  x = jax.random.uniform(jax.random.key(0), (2, h, w, _channels(name)))
  variables = model.init(jax.random.key(1), x)
  y = model.apply(variables, x)
  assert y.shape == (2, h * up, w * up, 3)
  assert bool(jnp.all(jnp.isfinite(y)))
  np.testing.assert_array_equal(model.apply(variables, x), y)
  other = model.init(jax.random.key(2), x)
  assert not np.allclose(model.apply(other, x), y)
  y_train, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert y_train.shape == y.shape


def test_the_registry_is_consistent():
  """Every declaration has its class, with the declared defaults, and the
  capability lists are the declarations'."""
  zoo.check_registry()
  for name, arch in archs.REGISTRY.items():
    assert arch.name == name
    cls = zoo.model_class(arch)
    assert getattr(zoo, arch.module) is cls
    built = cls()
    for field, value in arch.defaults.items():
      assert getattr(built, field) == value, (name, field)
    assert arch.problems(arch.config()) == []
  assert zoo.SUPER_RESOLUTION_ARCHS == tuple(
      a.name for a in archs.REGISTRY.values() if a.low_resolution)
  assert zoo.NOISE_MAP_ARCHS == tuple(
      a.name for a in archs.REGISTRY.values() if a.noise_map)


_GOOD = dict(module='DnCNN', fields=dict(
    depth=archs.Field(17, archs.at_least(2)),
    width=archs.Field(64, checks.positive)), smoke=dict(depth=3))


@pytest.mark.parametrize('changes,message', [
    (dict(module=None), "architecture 'mine' (ae_research/archs.py) names no "
     'module: give module=NAME'),
    (dict(fields=None), "architecture 'mine' (ae_research/archs.py) declares "
     'no fields'),
    (dict(smoke=None), "architecture 'mine' (ae_research/archs.py) has no "
     'smoke sizes: give smoke=dict(...)'),
    (dict(fields=dict(depth=17)), "architecture 'mine' (ae_research/archs.py): "
     "field 'depth' is 17; give Field(default, check)"),
    (dict(fields=dict(depth=archs.Field(1, archs.at_least(2)))),
     "the default of 'depth' is 1, which its check refuses: use an integer "
     '>= 2'),
    (dict(fields=dict(scale=archs.Field(2, checks.positive))),
     "declares field 'scale', which the code that builds a model sets"),
    (dict(smoke=dict(kernel=3)), "smoke sets 'kernel', which is not one of "
     "its fields ['depth', 'width']"),
    (dict(smoke=dict(width=0)), "smoke 'width' is 0, which its check refuses"),
    (dict(noise_map='yes'), "architecture 'mine' (ae_research/archs.py): "
     "noise_map='yes'; give True or False"),
])
def test_an_incomplete_declaration_names_the_architecture_and_what_is_missing(
    changes, message):
  with pytest.raises(archs.ArchError, match=re.escape(message)):
    archs.Arch('mine', **{**_GOOD, **changes})


@pytest.mark.parametrize('changes,message', [
    (dict(module='VDSR'), "architecture 'mine' (ae_research/archs.py) names "
     "module='VDSR', but ae_research/zoo.py has no linen module of that name"),
    (dict(module='bicubic_upsample'), 'has no linen module of that name'),
    (dict(fields=dict(_GOOD['fields'], kernel=archs.Field(3, checks.positive))),
     "zoo.DnCNN lacks the field(s) ['kernel']: add them to the class"),
    (dict(low_resolution=True), "zoo.DnCNN lacks the field(s) ['scale']"),
    (dict(fields=dict(depth=archs.Field(5, archs.at_least(2)))),
     'zoo.DnCNN.depth defaults to 17 but the declaration says 5'),
    (dict(module='PlainStack'), "zoo.PlainStack has no 'downsampling'"),
])
def test_a_declaration_that_disagrees_with_its_class_is_named(changes, message):
  arch = archs.Arch('mine', **{**_GOOD, **changes})
  with pytest.raises(archs.ArchError, match=re.escape(message)):
    zoo.model_class(arch)


def test_the_registry_refuses_a_name_declared_twice():
  arch = archs.Arch('mine', **_GOOD)
  with pytest.raises(archs.ArchError, match="'mine' is declared twice"):
    archs.registry(arch, arch)


@pytest.mark.slow
@pytest.mark.parametrize('arch,scale', [(a, 3) for a in REFERENCE] + [
    (a, 4) for a in REFERENCE if archs.get(a).low_resolution])
def test_the_reference_models_take_any_size(arch, scale):
  """They pad (and crop back) inputs that are not multiples of
  `downsampling` themselves (x2 is in the test above)."""
  model = zoo.from_config(_config(arch), out_features=3, scale=scale)
  x = jax.random.uniform(jax.random.key(0), (2, 13, 10, _channels(arch)))
  variables = model.init(jax.random.key(1), x)
  y = model.apply(variables, x)
  up = scale if archs.get(arch).low_resolution else 1
  assert y.shape == (2, 13 * up, 10 * up, 3)
  assert bool(jnp.all(jnp.isfinite(y)))


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
  model = zoo.DnCNN(**archs.get('dncnn').smoke)
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
  model = zoo.FFDNet(**archs.get('ffdnet').smoke)
  noisy = jax.random.uniform(jax.random.key(0), (1, 10, 14, 3))
  level = lambda s: jnp.concatenate([noisy, jnp.full((1, 10, 14, 1), s)], -1)
  variables = model.init(jax.random.key(1), level(0.1))
  assert not np.allclose(model.apply(variables, level(0.05)),
                         model.apply(variables, level(0.2)))
  with pytest.raises(ValueError, match='noise map'):
    model.apply(variables, noisy[..., :1])


@pytest.mark.slow
@pytest.mark.parametrize('arch', ('espcn', 'fsrcnn', 'edsr'))
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
    assert config.model.arch in archs.names()


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
    (lambda: denoise.get_config('dncnn'), 'model.features',
     re.escape("config.model has ['features'], which config.model.arch='dncnn' "
               "does not take; its fields: ['depth', 'norm', 'residual', "
               "'width']")),
    (lambda: denoise.get_config('dncnn'), 'model.arch',
     "config.model.arch='vdsr' is not allowed: use one of"),
])
def test_bad_model_configs_are_named(make, field, message):
  config = make()
  if field == 'model.depth':
    config.model.depth = 1
  elif field == 'model.res_scale':
    config.model.res_scale = 0.0
  elif field == 'model.arch' and config.task == 'compress':
    default.use_arch(config, 'unet')
  elif field == 'model.arch':
    config.model.arch = 'vdsr'
  elif field == 'model.features':
    with config.model.ignore_type():
      config.model.features = (8,)
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
