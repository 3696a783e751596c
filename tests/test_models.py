import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae_research import models


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
  model = models.from_config(config.model, out_features=3)
  x = jnp.zeros((1, 32, 32, 1))
  params = jax.eval_shape(model.init, jax.random.key(0), x)['params']
  n = models.count_params(params)
  wider = config.model.copy_and_resolve_references()
  wider.features = tuple(2 * f for f in config.model.features)
  params2 = jax.eval_shape(models.from_config(wider, 3).init,
                           jax.random.key(0), x)['params']
  assert models.count_params(params2) > 2 * n
