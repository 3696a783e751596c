"""Steps: learning, and the same parameters on 1 device, mesh+jit and pmap."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
import pytest

from ae_research import models, parallel, steps, tasks, zoo

_task = tasks.get('colorize')
# The loss and metrics of a task, as the loop binds them (config=...).
loss = functools.partial(_task.loss, config=None)
metrics_fn = functools.partial(_task.metrics, config=None)


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
  step = jax.jit(steps.make_train_step(model, tx, loss), donate_argnums=0)
  batch = _batches(1)[0]
  losses = []
  for i in range(30):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics['loss']))
  assert int(state.step) == 30
  assert losses[-1] < 0.5 * losses[0]


def test_eval_step_weights_examples_by_mask():
  model, tx, state = _setup()
  eval_step = jax.jit(steps.make_eval_step(model, metrics_fn))
  batch = _batches(1)[0]
  full = eval_step(state, {**batch, 'mask': np.ones(16, np.float32)})
  half_mask = (np.arange(16) < 8).astype(np.float32)
  half = eval_step(state, {**batch, 'mask': half_mask})
  first = eval_step(state, {k: v[:8] for k, v in batch.items()} |
                    {'mask': np.ones(8, np.float32)})
  assert float(full['psnr'][1]) == 16 and float(half['psnr'][1]) == 8
  np.testing.assert_allclose(half['psnr'][0], first['psnr'][0], rtol=1e-5)


@pytest.mark.slow
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
  step = jax.jit(steps.make_train_step(model, tx, loss))
  one = jax.device_put(state, jax.devices()[0])
  losses = {'one': [], 'mesh': [], 'pmap': []}
  for b, r in zip(batches, rngs):
    one, m = step(one, jax.device_put(b, jax.devices()[0]), r)
    losses['one'].append(float(m['loss']))

  # Mesh over 8 devices, jit with the batch sharded and the state donated.
  mesh = parallel.make_mesh()
  sharded_step = parallel.jit_train_step(
      steps.make_train_step(model, tx, loss), mesh)
  meshed = jax.device_put(state, parallel.replicated(mesh))
  for b, r in zip(batches, rngs):
    meshed, m = sharded_step(meshed, parallel.shard_batch(b, mesh), r)
    losses['mesh'].append(float(m['loss']))
    assert meshed.params['encoder']['Conv_0']['kernel'].sharding.is_fully_replicated

  # pmap with an axis name.
  model_p, tx, _ = _setup(norm, axis_name='batch', tx=sgd)
  pstep = jax.pmap(steps.make_train_step(model_p, tx, loss, axis_name='batch'),
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


@pytest.mark.slow
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


def _denoising_losses(compute_dtype, num_steps=120):
  """Training losses of a small DnCNN (batch norm) on a fixed noisy batch."""
  model = zoo.DnCNN(depth=4, width=16)
  tx = optax.adam(3e-3)
  rng = np.random.default_rng(0)
  y, x = np.mgrid[0:24, 0:24] / 24.0
  clean = np.stack([np.sin(a * x + b * y) * 0.4 + 0.5 for a, b in
                    rng.uniform(1, 6, (16, 2))])[..., None].repeat(3, -1)
  noisy = clean + rng.normal(0, 0.1, clean.shape)
  batch = {'input': jnp.asarray(noisy, jnp.float32),
           'target': jnp.asarray(clean, jnp.float32)}
  state = steps.create_train_state(model, tx, jax.random.key(0), (1, 24, 24, 3))
  mse = lambda p, b: jnp.mean(jnp.square(p - b['target']), axis=(1, 2, 3))
  step = jax.jit(steps.make_train_step(model, tx, mse, compute_dtype=compute_dtype))
  losses = []
  for i in range(num_steps):
    state, metrics = step(state, batch, jax.random.key(i))
    losses.append(float(metrics['loss']))
  return losses, state


@pytest.mark.slow
def test_bfloat16_computes_in_bfloat16_and_trains_close_to_float32():
  f32, _ = _denoising_losses(jnp.float32)
  bf16, state = _denoising_losses(jnp.bfloat16)
  # Parameters, optimizer state and batch statistics stay float32.
  dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.opt_state,
                                              state.model_state))
            if jnp.issubdtype(x.dtype, jnp.floating)}
  assert dtypes == {jnp.dtype(jnp.float32)}
  assert bf16[-1] < 0.3 * bf16[0]  # It trains,
  assert abs(np.log(bf16[-1] / f32[-1])) < np.log(1.25)  # about as well,
  assert bf16 != f32  # and does compute in bfloat16.


def test_bfloat16_model_sees_bfloat16_and_the_loss_float32():
  seen = {}

  class Probe(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
      seen['input'] = x.dtype
      y = nn.Conv(3, (3, 3))(x)
      seen['output'] = y.dtype
      return y

  def loss(pred, batch):
    seen['loss'] = pred.dtype
    return jnp.mean(jnp.square(pred - batch['target']), axis=(1, 2, 3))

  model, tx = Probe(), optax.sgd(0.1)
  state = steps.create_train_state(model, tx, jax.random.key(0), (1, 8, 8, 3))
  batch = {'input': jnp.ones((2, 8, 8, 3)), 'target': jnp.zeros((2, 8, 8, 3))}
  steps.make_train_step(model, tx, loss, compute_dtype=jnp.bfloat16)(
      state, batch, jax.random.key(0))
  assert seen == {'input': jnp.bfloat16, 'output': jnp.bfloat16,
                  'loss': jnp.float32}
