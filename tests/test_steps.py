"""Steps: learning, and the same parameters on 1 device, mesh+jit and pmap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ae_research import models, parallel, steps, tasks

task = tasks.get('colorize')


def _batches(n, batch_size=16, size=16, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    x = rng.random((batch_size, size, size, 1), np.float32)
    out.append({'input': x, 'target': np.repeat(x, 3, -1) * [1.0, 0.5, 0.0]})
  return [{k: v.astype(np.float32) for k, v in b.items()} for b in out]


def _setup(norm='none', axis_name=None, tx=None):
  # Strided: with average pooling, batch statistics over 8 devices drift
  # from one device's by up to 1e-4 in 4 momentum steps (float32 sums in
  # another order, amplified by low-variance channels).
  model = models.TinyAutoencoder(out_features=3, norm=norm, downsample='stride',
                                 norm_axis_name=axis_name)
  tx = tx or optax.adam(3e-3)
  state = steps.create_train_state(model, tx, jax.random.key(0), (1, 16, 16, 1))
  return model, tx, state


def test_train_step_lowers_the_loss():
  model, tx, state = _setup()
  step = jax.jit(steps.make_train_step(model, tx, task.loss), donate_argnums=0)
  batch = _batches(1)[0]
  losses = []
  for i in range(30):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics['loss']))
  assert int(state.step) == 30
  assert losses[-1] < 0.5 * losses[0]


def test_eval_step_weights_examples_by_mask():
  model, tx, state = _setup()
  eval_step = jax.jit(steps.make_eval_step(model, task.metrics))
  batch = _batches(1)[0]
  full = eval_step(state, {**batch, 'mask': np.ones(16, np.float32)})
  half_mask = (np.arange(16) < 8).astype(np.float32)
  half = eval_step(state, {**batch, 'mask': half_mask})
  first = eval_step(state, {k: v[:8] for k, v in batch.items()} |
                    {'mask': np.ones(8, np.float32)})
  assert float(full['psnr'][1]) == 16 and float(half['psnr'][1]) == 8
  np.testing.assert_allclose(half['psnr'][0], first['psnr'][0], rtol=1e-5)


@pytest.mark.parametrize('norm', ['none', 'batch'])
def test_one_device_mesh_and_pmap_agree(norm):
  assert jax.device_count() == 8, 'conftest sets 8 CPU devices'
  batches = _batches(4, batch_size=16)
  rngs = [jax.random.key(i) for i in range(4)]

  # SGD, unlike Adam, would show a gradient summed rather than averaged.
  sgd = optax.sgd(0.05, momentum=0.9)
  # One device.
  model, tx, state = _setup(norm, tx=sgd)
  state = jax.tree.map(np.asarray, state)  # Host copy: donation can't delete it.
  step = jax.jit(steps.make_train_step(model, tx, task.loss))
  one = jax.device_put(state, jax.devices()[0])
  losses = {'one': [], 'mesh': [], 'pmap': []}
  for b, r in zip(batches, rngs):
    one, m = step(one, jax.device_put(b, jax.devices()[0]), r)
    losses['one'].append(float(m['loss']))

  # Mesh over 8 devices, jit with the batch sharded and the state donated.
  mesh = parallel.make_mesh()
  sharded_step = parallel.jit_train_step(
      steps.make_train_step(model, tx, task.loss), mesh)
  meshed = jax.device_put(state, parallel.replicated(mesh))
  for b, r in zip(batches, rngs):
    meshed, m = sharded_step(meshed, parallel.shard_batch(b, mesh), r)
    losses['mesh'].append(float(m['loss']))
    assert meshed.params['encoder']['Conv_0']['kernel'].sharding.is_fully_replicated

  # pmap with an axis name.
  model_p, tx, _ = _setup(norm, axis_name='batch', tx=sgd)
  pstep = jax.pmap(steps.make_train_step(model_p, tx, task.loss, axis_name='batch'),
                   axis_name='batch', in_axes=(0, 0, None), donate_argnums=0)
  pstate = jax.tree.map(lambda x: jnp.stack([x] * 8), state)
  for b, r in zip(batches, rngs):
    pstate, m = pstep(pstate, jax.tree.map(lambda x: x.reshape(8, 2, *x.shape[1:]), b), r)
    losses['pmap'].append(float(m['loss'][0]))

  np.testing.assert_allclose(losses['one'], losses['mesh'], rtol=1e-5)
  np.testing.assert_allclose(losses['one'], losses['pmap'], rtol=1e-5)
  assert losses['one'][-1] < losses['one'][0]
  for a, b, c in zip(jax.tree.leaves(one), jax.tree.leaves(meshed),
                     jax.tree.leaves(pstate)):
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    for replica in np.asarray(c):
      np.testing.assert_allclose(a, replica, atol=1e-5, rtol=1e-5)


def test_the_input_key_is_the_callers():
  """A batch that names its input otherwise trains the same."""
  model, tx, state = _setup()
  loss = lambda pred, batch: jnp.mean((pred - batch['target']) ** 2, axis=(1, 2, 3))
  x = jax.random.uniform(jax.random.key(3), (4, 16, 16, 1))
  y = jnp.repeat(x, 3, -1)
  _, ours = steps.make_train_step(model, tx, loss)(
      state, {'input': x, 'target': y}, jax.random.key(0))
  _, theirs = steps.make_train_step(model, tx, loss, input_key='gray')(
      state, {'gray': x, 'target': y}, jax.random.key(0))
  assert float(ours['loss']) == float(theirs['loss'])
  eval_step = steps.make_eval_step(
      model, lambda p, b: {'n': (jnp.sum(p), 1.0)}, input_key='gray')
  assert float(eval_step(state, {'gray': x})['n'][0]) == float(
      jnp.sum(steps.make_predict(model)(state, x)))
