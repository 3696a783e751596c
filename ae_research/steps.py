"""Training state and the pure step functions every experiment shares.

  train_step(state, batch, rng) -> (state, metrics)
  eval_step(state, batch) -> {name: (sum, count)}

`make_train_step` and `make_eval_step` close over the model, the optimizer and
the task's loss; the returned functions are pure and run under `jax.jit` with
a sharded batch or, given `axis_name`, under `jax.pmap`.

What they need of a model: a linen module whose `__call__(x, train=...)`
takes the input and a `train` keyword (batch norm and quantization noise
depend on it), draws randomness only from the 'dropout' and 'noise' RNG
streams, and keeps any state besides 'params' in mutable collections (e.g.
'batch_stats'). Of a batch: a dict of arrays holding the model's input
under `input_key` ('input' by default) and whatever the loss reads.
"""

from typing import Any, Callable, Optional

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

Batch = dict[str, jax.Array]
# config.compute_dtype -> the dtype `make_train_step` computes the model in.
COMPUTE_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


@flax.struct.dataclass
class TrainState:
  """Everything a training step updates (a pytree)."""
  step: jax.Array
  params: Any
  model_state: Any  # Collections other than params, e.g. batch_stats.
  opt_state: Any


def init_variables(model: nn.Module, rng: jax.Array, input_shape) -> dict:
  """The model's variables, initialized on zeros of `input_shape`."""
  return model.init(rng, jnp.zeros(input_shape, jnp.float32), train=False)


def create_train_state(model: nn.Module, tx: optax.GradientTransformation,
                       rng: jax.Array, input_shape) -> TrainState:
  """Step 0: initialized parameters, other collections and optimizer state."""
  variables = dict(init_variables(model, rng, input_shape))
  params = variables.pop('params')
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    model_state=variables, opt_state=tx.init(params))


def cast_floats(tree: Any, dtype) -> Any:
  """Every floating-point leaf of `tree` as `dtype`; other leaves as they are."""
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x,
      tree)


def _pmean(tree, axis_name):
  return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation,
                    loss_fn: Callable[[Any, Batch], Any],
                    axis_name: Optional[str] = None, input_key: str = 'input',
                    compute_dtype: Any = jnp.float32):
  """Returns train_step(state, batch, rng) -> (state, metrics).

  loss_fn(pred, batch) gives the per-example loss [B], or a dict of
  per-example terms whose 'loss' is minimized and whose other entries (rate,
  distortion...) are reported beside it. `rng` feeds the model's 'dropout'
  and 'noise' (e.g. quantization noise) streams. Metrics: the mean of each
  term and 'grad_norm', averaged over `axis_name` under pmap.

  Mixed precision: with `compute_dtype` jnp.bfloat16 the model runs on a
  bfloat16 copy of the parameters and of the input, while the parameters,
  their gradients, the optimizer state and other collections (batch
  statistics) stay float32; the prediction is cast back to float32 before
  the loss. Flax's normalizations reduce in float32 whatever the input, and
  layers that need float32 inside (the entropy model's likelihoods, GDN)
  cast to it themselves.
  """

  def train_step(state: TrainState, batch: Batch, rng: jax.Array):
    def objective(params):
      variables = {'params': cast_floats(params, compute_dtype),
                   **state.model_state}
      mutable = list(state.model_state)
      pred, new_model_state = model.apply(
          variables, batch[input_key].astype(compute_dtype), train=True,
          mutable=mutable,
          rngs={'dropout': rng, 'noise': jax.random.fold_in(rng, 1)})
      pred = cast_floats(pred, jnp.float32)
      terms = loss_fn(pred, batch)
      if not isinstance(terms, dict):
        terms = {'loss': terms}
      terms = {k: jnp.mean(v) for k, v in terms.items()}
      return terms['loss'], (terms, new_model_state)

    (_, (terms, new_model_state)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    grads = _pmean(grads, axis_name)
    terms = _pmean(terms, axis_name)
    new_model_state = _pmean(new_model_state, axis_name)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {**terms, 'grad_norm': optax.tree.norm(grads)}
    return TrainState(step=state.step + 1, params=params,
                      model_state=new_model_state, opt_state=opt_state), metrics

  return train_step


def make_predict(model: nn.Module):
  """predict(state, inputs) -> outputs, in inference mode."""
  def predict(state: TrainState, x: jax.Array) -> jax.Array:
    return model.apply({'params': state.params, **state.model_state}, x,
                       train=False)
  return predict


def make_eval_step(model: nn.Module, metrics_fn, axis_name: Optional[str] = None,
                   input_key: str = 'input'):
  """Returns eval_step(state, batch) -> {name: (sum, count)} over the batch;
  metrics_fn(pred, batch) gives the sums and counts."""
  predict = make_predict(model)

  def eval_step(state: TrainState, batch: Batch):
    sums = metrics_fn(predict(state, batch[input_key]), batch)
    return sums if axis_name is None else jax.lax.psum(sums, axis_name)

  return eval_step


def make_baseline_step(baseline_fn, metrics_fn):
  """baseline_step(batch) -> the task's metrics of its trivial prediction."""
  def baseline_step(batch: Batch):
    return metrics_fn(baseline_fn(batch), batch)
  return baseline_step


def make_optimizer(config: Any) -> optax.GradientTransformation:
  """AdamW with linear warmup, cosine decay and global-norm clipping."""
  c = config.optimizer
  schedule = optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=c.learning_rate,
      warmup_steps=c.warmup_steps, decay_steps=config.num_train_steps,
      end_value=c.learning_rate * c.final_lr_fraction)
  chain = []
  if c.grad_clip_norm > 0:
    chain.append(optax.clip_by_global_norm(c.grad_clip_norm))
  chain.append(optax.adamw(schedule, b1=c.b1, b2=c.b2,
                           weight_decay=c.weight_decay))
  return optax.chain(*chain)
