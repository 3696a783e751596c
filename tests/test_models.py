import itertools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ae_research import archs, models, zoo


@pytest.mark.parametrize('down,up', list(itertools.product(
    models.DOWNSAMPLE_KINDS, models.UPSAMPLE_KINDS)))
def test_shapes_for_every_resampling_kind(down, up):
  model = models.Autoencoder(features=(4, 8), latent_features=5,
                             out_features=3, downsample=down, upsample=up)
  x = jnp.zeros((2, 16, 16, 1))
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  y = jax.eval_shape(model.apply, variables, x)
  z = jax.eval_shape(lambda v, x: model.apply(v, x, method='encode'),
                     variables, x)
  assert y.shape == (2, 16, 16, 3)
  assert z.shape == (2, 4, 4, 5)


@pytest.mark.slow
@pytest.mark.parametrize('norm', models.NORM_KINDS)
def test_norms_train_and_eval(norm):
  model = models.TinyAutoencoder(out_features=2, norm=norm)
  x = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  variables = model.init(jax.random.key(0), x)
  assert ('batch_stats' in variables) == (norm == 'batch')
  y, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert y.shape == (4, 8, 8, 2)
  assert bool(jnp.all(jnp.isfinite(y)))
  y_eval = model.apply(variables, x)
  assert y_eval.shape == y.shape


def test_apply_is_a_pure_function():
  model = models.TinyAutoencoder(out_features=3)
  x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1))
  v = model.init(jax.random.key(0), x)
  np.testing.assert_array_equal(model.apply(v, x), model.apply(v, x))
  v2 = model.init(jax.random.key(1), x)
  assert not np.allclose(model.apply(v, x), model.apply(v2, x))


def test_decode_of_encode_is_call():
  model = models.TinyAutoencoder(out_features=3)
  x = jax.random.uniform(jax.random.key(2), (2, 8, 8, 1))
  v = model.init(jax.random.key(0), x)
  z = model.apply(v, x, method='encode')
  np.testing.assert_allclose(model.apply(v, z, method='decode'),
                             model.apply(v, x), rtol=1e-6)


def test_depth_to_space_inverts_space_to_depth():
  x = jax.random.normal(jax.random.key(0), (2, 8, 6, 3))
  s = models.space_to_depth(x)
  assert s.shape == (2, 4, 3, 12)
  np.testing.assert_array_equal(models.depth_to_space(s), x)


def test_from_config_counts_params():
  from configs import colorize
  config = colorize.get_config()
  model = zoo.from_config(config.model, out_features=3)
  assert isinstance(model, models.Autoencoder)
  x = jnp.zeros((1, 32, 32, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  n = models.count_params(params)
  wider = config.model.copy_and_resolve_references()
  wider.features = tuple(2 * f for f in config.model.features)
  params2 = jax.eval_shape(zoo.from_config(wider, 3).init,
                           jax.random.key(0), x)['params']
  assert models.count_params(params2) > 2 * n


def test_downsampling_is_two_to_the_number_of_levels():
  for features in [(4,), (4, 8), (4, 8, 8, 16)]:
    want = 2 ** len(features)
    assert models.downsampling(features) == want
    for cls in (models.Autoencoder, models.Encoder, models.Decoder):
      assert cls(features=features).downsampling == want


def test_defaults_are_the_declared_ones():
  """Those of config.model.arch='autoencoder' (archs.py), which the configs
  read; and the kinds the config checks allow are the ones built here."""
  declared = archs.get('autoencoder').defaults
  for cls in (models.Autoencoder, models.Encoder, models.Decoder):
    fields = cls.__dataclass_fields__
    for name, value in declared.items():
      if name in fields:
        assert getattr(cls(), name) == value, (cls, name)
  assert set(declared) <= set(models.Autoencoder.__dataclass_fields__)
  assert set(models.ACTIVATIONS) == set(archs.ACTIVATIONS)


def _reflect_or_edge_pad(x_BxHxWxC, multiple):
  """tiling.pad_to's rule, in numpy: reflect, or edge when too small."""
  h, w = x_BxHxWxC.shape[1:3]
  ph, pw = -h % multiple, -w % multiple
  mode = 'reflect' if min(h, w) > max(ph, pw) else 'edge'
  return np.pad(x_BxHxWxC, ((0, 0), (0, ph), (0, pw), (0, 0)), mode=mode)


@pytest.mark.slow
@pytest.mark.parametrize('down,residual', [
    (down, residual) for down in models.DOWNSAMPLE_KINDS
    for residual in (False, True)])
def test_any_size_is_the_padded_input_cropped(down, residual):
  model = models.Autoencoder(features=(4, 8), latent_features=5, out_features=3,
                             downsample=down, residual=residual)
  apply = jax.jit(model.apply)
  v = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))
  # Pads of 1..3 rows/columns; the last is too small to reflect.
  for h, w in [(33, 32), (17, 23), (2, 3)]:
    x = np.asarray(jax.random.uniform(jax.random.key(h * w), (2, h, w, 1)))
    y = apply(v, x)
    assert y.shape == (2, h, w, 3)
    padded = _reflect_or_edge_pad(x, 4)
    assert padded.shape[1] % 4 == 0 and padded.shape[2] % 4 == 0
    want = np.asarray(apply(v, padded))[:, :h, :w]
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize('shape,message', [
    ((1, 33, 32, 3), 'Encoder with 2 levels needs height and width divisible '
     'by 4; got 33x32: pad to 36x32 (or crop to 32x32)'),
    ((1, 16, 2, 3), 'Encoder with 2 levels needs height and width divisible '
     'by 4; got 16x2: pad to 16x4'),
])
def test_encoder_refuses_sides_that_are_not_multiples(shape, message):
  model = models.Autoencoder(features=(4, 8), latent_features=5)
  v = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  x = jnp.zeros(shape)
  whole = re.escape(message) + r'(?:$|\n)'  # jit may append a note.
  with pytest.raises(ValueError, match=whole):
    model.apply(v, x, method='encode')
  with pytest.raises(ValueError, match=whole):  # Shapes are static in jit.
    jax.jit(lambda v, x: model.apply(v, x, method='encode'))(v, x)
  encoder = models.Encoder(features=(4, 8), latent_features=5)
  with pytest.raises(ValueError, match=whole):
    encoder.init(jax.random.key(0), x)


def test_refuses_unbatched_and_wrong_rank_inputs():
  model = models.Autoencoder(features=(4, 8), latent_features=5)
  v = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  one = re.escape('add a batch axis (x[None])')
  with pytest.raises(ValueError, match='Autoencoder.*' + one):
    model.apply(v, jnp.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match='Encoder.*' + one):
    model.apply(v, jnp.zeros((8, 8, 3)), method='encode')
  with pytest.raises(ValueError, match='Decoder.*' + one):
    model.apply(v, jnp.zeros((2, 2, 5)), method='decode')
  for shape in [(2, 1, 8, 8, 3), (8, 8)]:
    with pytest.raises(ValueError, match=re.escape(f'(4-D); got shape {shape}')):
      model.apply(v, jnp.zeros(shape))


@pytest.mark.parametrize('field,value,choices', [
    ('activation', 'softsign', tuple(models.ACTIVATIONS)),
    ('output_activation', 'softmax', models.OUTPUT_ACTIVATIONS),
    ('downsample', 'maxpool', models.DOWNSAMPLE_KINDS),
    ('upsample', 'bilinear', models.UPSAMPLE_KINDS),
    ('norm', 'instance', models.NORM_KINDS),
])
def test_unknown_kinds_are_refused_naming_the_choices(field, value, choices):
  model = models.Autoencoder(features=(4,), latent_features=2, **{field: value})
  with pytest.raises(ValueError, match=re.escape(f'{field}={value!r}; choose '
                                                 f'one of {choices}')):
    model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 1)))


def test_output_activations_none_and_sigmoid():
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 1))
  plain = models.Autoencoder(features=(4,), latent_features=2,
                             output_activation='none')
  v = plain.init(jax.random.key(0), x)
  squashed = plain.clone(output_activation='sigmoid')
  np.testing.assert_allclose(squashed.apply(v, x),
                             jax.nn.sigmoid(plain.apply(v, x)), rtol=1e-6)


def test_residual_refuses_inputs_with_other_channel_counts():
  model = models.Autoencoder(features=(4,), latent_features=2, out_features=3,
                             residual=True)
  with pytest.raises(ValueError, match='1 or out_features=3 channels; got 2'):
    model.init(jax.random.key(0), jnp.zeros((1, 4, 4, 2)))


@pytest.mark.slow
@pytest.mark.parametrize('down,up', list(zip(models.DOWNSAMPLE_KINDS,
                                             models.UPSAMPLE_KINDS)))
def test_jit_and_grad_over_a_mesh_equal_one_device(down, up):
  # jax.make_mesh's default axis types are Explicit: reshapes of the
  # batch-sharded activations must keep the batch's sharding.
  n = jax.device_count()
  mesh = jax.make_mesh((n,), ('data',))
  model = models.Autoencoder(features=(4, 8), latent_features=5, out_features=3,
                             downsample=down, upsample=up)
  x = jax.random.uniform(jax.random.key(1), (n, 14, 18, 1))  # Padded inside.
  v = model.init(jax.random.key(0), x)
  x_sharded = jax.device_put(x, NamedSharding(mesh, P('data')))
  # Parameters live on the mesh too: only then can jax give their gradient,
  # a sum over the sharded batch, a sharding.
  v_replicated = jax.device_put(v, NamedSharding(mesh, P()))
  loss = lambda v, x: jnp.mean(model.apply(v, x) ** 2)

  y = jax.jit(model.apply)(v_replicated, x_sharded)
  assert y.sharding.spec[0] == 'data'
  np.testing.assert_allclose(y, model.apply(v, x), rtol=1e-5, atol=1e-5)
  grads = jax.jit(jax.grad(loss))(v_replicated, x_sharded)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                       atol=1e-5),
               grads, jax.grad(loss)(v, x))
