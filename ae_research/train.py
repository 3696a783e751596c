"""The training loop every experiment shares.

  state = train_and_evaluate(config, workdir)

Resumes from the latest checkpoint in `workdir/checkpoints` (train state, data
position and RNG), so an interrupted run ends exactly where an uninterrupted
one would. Writes progress lines, TensorBoard summaries (`workdir/tensorboard`),
sample grids (`workdir/samples`) and, at the end, `workdir/metrics.json`.
On SIGTERM (a scheduler's notice) every process saves a checkpoint of the
same step and the run stops (`preemption.Preempted`); run again, it resumes.
"""

import functools
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from ae_research import checkpointing, config_lib, datasets, evaluate, input_pipeline
from ae_research import models, parallel, preemption, steps, summaries, tasks
from configs import default as default_config


class TrainingDiverged(FloatingPointError):
  """The loss became NaN or infinite."""


class WorkdirMismatch(ValueError):
  """The workdir holds a run of a different model, task or data set."""


# A resumed run must agree with the stored config on these, or it would end
# neither as the stored run nor as a fresh one (the data position counts
# batches, the learning-rate schedule spans num_train_steps); the rest
# (logging, evaluation, checkpoint frequency...) may change between runs.
_FIXED_FIELDS = ('task', 'dataset', 'model', 'shapes', 'denoise', 'sr',
                 'compress', 'seed', 'patch_size', 'batch_size',
                 'num_train_steps', 'optimizer', 'init_from')


def check_workdir(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Stores the config in `workdir`, or checks it against the stored one."""
  path = os.path.join(workdir, 'config.json')
  current = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    # A field the stored run predates counts as its default value.
    defaults = json.loads(default_config.get_config().to_json_best_effort())
    differ = [k for k in _FIXED_FIELDS
              if stored.get(k, defaults.get(k)) != current.get(k)]
    if differ:
      raise WorkdirMismatch(
          f'{workdir} holds a run with a different config.' +
          ''.join(f'\n  config.{k}: stored {stored.get(k)!r}, now {current.get(k)!r}'
                  for k in differ) +
          '\nUse a new --workdir, or the stored values to resume that run.')
  elif jax.process_index() == 0:
    os.makedirs(workdir, exist_ok=True)
    summaries.write_json(path, current)


def _merge(base: dict, update: dict) -> dict:
  for k, v in update.items():
    base[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(
        base.get(k), dict) else v
  return base


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config stored in a run's workdir; fields the run predates take
  their default values."""
  path = os.path.join(workdir, 'config.json')
  if not os.path.isfile(path):
    raise WorkdirMismatch(f'{workdir} holds no run (no config.json); train one '
                          'there first (python -m ae_research.main --config=... '
                          f'--workdir={workdir})')
  with open(path) as f:
    stored = json.load(f)
  defaults = json.loads(default_config.get_config().to_json_best_effort())
  return ml_collections.ConfigDict(_merge(defaults, stored))


def build(config: ml_collections.ConfigDict, mesh, axis_name=None):
  """The task, model, optimizer and step functions a config describes."""
  task = tasks.get(config.task)
  if hasattr(task, 'make_model'):
    model = task.make_model(config, axis_name)
  else:
    model = models.from_config(config.model, task.out_features(config),
                               norm_axis_name=axis_name)
  tx = steps.make_optimizer(config)
  return task, model, tx


def whole_image_evaluator(task):
  """The task's own whole-image evaluation, or the shared one."""
  return getattr(task, 'evaluate_images', evaluate.evaluate_images)


def evaluate_batches(eval_step, state, batches, mesh) -> dict[str, float]:
  """Averages the task's metrics over every batch, weighted by the mask."""
  totals = {}
  for batch in batches:
    sums = parallel.fetch(eval_step(state, parallel.shard_batch(batch, mesh)))
    for name, (num, den) in sums.items():
      n, d = totals.get(name, (0.0, 0.0))
      totals[name] = (n + float(num), d + float(den))
  return {name: num / max(den, 1e-12) for name, (num, den) in totals.items()}


def _check_finite(step: int, metrics: dict, checkpoint_dir: str, last_saved):
  values = {k: float(metrics[k]) for k in ('loss', 'grad_norm')}
  bad = {k: v for k, v in values.items() if not math.isfinite(v)}
  if bad:
    kept = (f'the checkpoints up to step {last_saved} in {checkpoint_dir} are '
            'kept as they were' if last_saved else 'no checkpoint was saved')
    what = ', '.join(f'{k} is {v}' for k, v in bad.items())
    raise TrainingDiverged(
        f'{what} at step {step}; training stopped and {kept}. '
        'Try a lower config.optimizer.learning_rate or '
        'config.optimizer.grad_clip_norm > 0, in a new --workdir.')


def init_shape(task, config) -> tuple[int, ...]:
  """An input shape to initialize the model with (its parameters depend on
  the channels only): the channels of the task's input, a small square."""
  side = 2 ** len(config.model.features)
  return (1, side, side, task.input_channels(config))


def _eval_dir_name(name: str) -> str:
  """eval_Set5 for folder:.../Set5, eval_tfds_cifar10 for tfds:cifar10..."""
  kind, arg = datasets.parse(name)
  if kind == 'folder':
    name = os.path.basename(os.path.normpath(arg))
  return 'eval_' + ''.join(c if c.isalnum() or c in '-_' else '_'
                           for c in name).strip('_')


def evaluate_workdir(config: ml_collections.ConfigDict,
                     workdir: str) -> dict[str, Any]:
  """Scores the latest checkpoint of `workdir` on whole images of
  config.eval_dataset (or the test split of config.dataset), beside the
  task's baselines; writes workdir/eval_<dataset>/results.{json,md} and PNGs."""
  mesh = parallel.make_mesh()
  config_lib.validate(config, num_devices=mesh.size,
                      num_processes=jax.process_count())
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    raise WorkdirMismatch(f'{workdir} holds no run (no config.json); train '
                          'one there first')
  check_workdir(config, workdir)
  task, model, _ = build(config, mesh)
  name = config.eval_dataset or config.dataset
  source = datasets.get_source(config, 'test', name)
  state, step = restore_latest(config, workdir)
  out_dir = os.path.join(workdir, _eval_dir_name(name))
  results = whole_image_evaluator(task)(
      parallel.local_copy(state), jax.jit(steps.make_predict(model)), task,
      source, config,
      out_dir=out_dir if jax.process_index() == 0 else None)
  logging.info('step %d on %s (%d images), written to %s; means:\n%s', step,
               name, len(results['images']), out_dir, '\n'.join(
                   f'  {method}: ' + ' '.join(f'{k} {v:.4f}' for k, v in m.items())
                   for method, m in results['mean'].items()))
  return results


def restore_latest(config: ml_collections.ConfigDict, workdir: str,
                   step: int | None = None) -> tuple[steps.TrainState, int]:
  """(train state, step) of the latest checkpoint of `workdir`, or of `step`."""
  mesh = parallel.make_mesh()
  task, model, tx = build(config, mesh)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  saved = ckpt.all_steps()
  if not saved or (step is not None and step not in saved):
    ckpt.close()
    raise WorkdirMismatch(
        f'{workdir} holds no checkpoint yet' if not saved else
        f'{workdir} holds no checkpoint of step {step}; it holds steps '
        f'{sorted(saved)}')
  step = max(saved) if step is None else step
  shape = init_shape(task, config)
  rep = parallel.replicated(mesh)
  abstract = jax.eval_shape(
      lambda r: steps.create_train_state(model, tx, r, shape), jax.random.key(0))
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)
  state, _, _ = ckpt.restore(abstract, step)
  ckpt.close()
  return state, step


def warm_start(config: ml_collections.ConfigDict, state: steps.TrainState,
               sharding) -> steps.TrainState:
  """`state` with the parameters (and batch statistics) of the latest
  checkpoint of the run in config.init_from; the step, optimizer state and
  data position start afresh (e.g. another lambda of a compression sweep)."""
  other = load_config(config.init_from)
  if other.get('task') != config.task:
    raise WorkdirMismatch(f'config.init_from={config.init_from!r} holds a '
                          f'{other.get("task")!r} run; this run is {config.task!r}')
  source, step = restore_latest(other, config.init_from)
  want = jax.tree.map(lambda x: x.shape, (state.params, state.model_state))
  got = jax.tree.map(lambda x: x.shape, (source.params, source.model_state))
  if want != got:
    raise WorkdirMismatch(
        f'config.init_from={config.init_from!r} holds a model of other shapes '
        f'(its config.model: {other.model.to_dict()}); use the same config.model')
  logging.info('Parameters from step %d of %s.', step, config.init_from)
  return state.replace(params=jax.device_put(source.params, sharding),
                       model_state=jax.device_put(source.model_state, sharding))


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> steps.TrainState:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint)."""
  mesh = parallel.make_mesh()
  config_lib.validate(config, num_devices=mesh.size,
                      num_processes=jax.process_count())
  check_workdir(config, workdir)
  is_chief = jax.process_index() == 0
  task, model, tx = build(config, mesh)

  local_batch = config.batch_size // jax.process_count()
  local_eval_batch = config.eval_batch_size // jax.process_count()
  train_source = datasets.get_source(config, 'train')
  test_source = datasets.get_source(config, 'test', config.eval_dataset or None)
  input_shape = init_shape(task, config)

  rng = jax.random.key(config.seed)
  init_rng, train_rng = jax.random.split(rng)
  rep = parallel.replicated(mesh)
  state = jax.jit(lambda r: steps.create_train_state(model, tx, r, input_shape),
                  out_shardings=rep)(init_rng)
  logging.info('Model: %d parameters.', models.count_params(state.params))

  train_iter = input_pipeline.train_dataset(
      train_source, task, config, local_batch, jax.process_index(),
      jax.process_count()).__iter__()
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  ckpt = checkpointing.Checkpointer(ckpt_dir, config.keep_checkpoints,
                                    config.async_checkpoints)
  last_saved = ckpt.latest_step()
  if last_saved is not None:
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
    state, data_state, train_rng = ckpt.restore(abstract, last_saved)
    train_iter.set_state(data_state)
    logging.info('Resumed from step %d in %s.', last_saved, ckpt_dir)
  elif config.init_from:
    state = warm_start(config, state, rep)
  start_step = int(state.step)

  batches = input_pipeline.DevicePrefetcher(
      train_iter, lambda b: parallel.shard_batch(b, mesh))
  train_step = parallel.jit_train_step(
      steps.make_train_step(model, tx, functools.partial(task.loss, config=config)),
      mesh)
  eval_step = parallel.jit_eval_step(
      steps.make_eval_step(model, functools.partial(task.metrics, config=config)), mesh)
  predict = jax.jit(steps.make_predict(model))
  evaluate_images = whole_image_evaluator(task)

  def eval_batches():
    return input_pipeline.eval_batches(
        test_source, task, config, local_eval_batch, jax.process_index(),
        jax.process_count(), config.num_eval_examples)

  writer = summaries.Writer(os.path.join(workdir, 'tensorboard'), is_chief)
  progress = summaries.Progress(config.num_train_steps, config.batch_size,
                                start_step)

  def run_eval(step: int, full: dict[str, Any] | None = None) -> dict[str, float]:
    """Logs the model's eval metrics; `full` is a whole-image evaluation
    already made by the caller."""
    if full is None and config.eval_whole_images:
      full = evaluate_images(parallel.local_copy(state), predict, task,
                             test_source, config, classical=False)
    if full is not None:
      results = full['mean']['model']
    else:
      results = evaluate_batches(eval_step, state, eval_batches(), mesh)
    writer.scalars(step, {f'eval/{k}': v for k, v in results.items()})
    logging.info('eval step %d: %s', step,
                 ' '.join(f'{k} {v:.4f}' for k, v in results.items()))
    if config.num_sample_images:  # Every process predicts; process 0 writes.
      if full is None:
        first = next(iter(eval_batches()))
        n = min(config.num_sample_images, len(first['input']))
        x, target = first['input'][:n], first['target'][:n]
        columns = [x, np.asarray(predict(parallel.local_copy(state), jnp.asarray(x))),
                   target]
      else:  # The first test image, whole.
        columns = full['sample']
        x = columns[0]
      grid = summaries.image_grid(columns)
      writer.image(step, 'samples/input_output_target', grid)
      if is_chief:
        summaries.save_png(
            os.path.join(workdir, 'samples', f'step_{step:07d}.png'), grid,
            scale=max(1, 128 // x.shape[1]))
    writer.flush()
    return results

  pending = None  # The previous step's metrics, fetched one step late.
  train_metrics = []
  watcher = preemption.Watcher()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      state, metrics = train_step(state, next(batches),
                                  jax.random.fold_in(train_rng, step))
      if watcher.reached(step) and step < config.num_train_steps:
        # Every process stops here: save this step and leave.
        ckpt.save(step, state, batches.get_state(), train_rng)
        ckpt.wait()
        logging.warning('SIGTERM: saved step %d in %s; exiting.', step, ckpt_dir)
        raise preemption.Preempted(step, ckpt_dir)
      if pending is not None:  # Fetching step-1 lets the device run ahead.
        host = parallel.fetch(pending)
        _check_finite(step - 1, host, ckpt_dir, last_saved)
        train_metrics.append(host)
      pending = metrics
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        host = parallel.fetch(pending)
        _check_finite(step, host, ckpt_dir, last_saved)
        train_metrics.append(host)
        pending = None
        means = {k: float(np.mean([m[k] for m in train_metrics]))
                 for k in train_metrics[0]}
        train_metrics = []
        line = progress.report(step, means)
        logging.info('%s', line)
        writer.scalars(step, {f'train/{k}': v for k, v in means.items()})
      if step % config.eval_every_steps == 0 and step < config.num_train_steps:
        run_eval(step)
        progress.restart(step)  # Evaluation time is not training speed.
      if (step % config.checkpoint_every_steps == 0 or
          step == config.num_train_steps):
        if pending is not None:
          _check_finite(step, parallel.fetch(pending), ckpt_dir, last_saved)
        ckpt.save(step, state, batches.get_state(), train_rng)
        last_saved = step

    final_step = int(state.step)
    summary = {'step': final_step, 'task': config.task,
               'dataset': config.eval_dataset or config.dataset}
    if config.eval_whole_images:  # One pass scores the model and the baselines.
      full = evaluate_images(
          parallel.local_copy(state), predict, task, test_source, config,
          out_dir=os.path.join(workdir, 'eval') if is_chief else None)
      run_eval(final_step, full)
      summary.update(num_eval_examples=len(full['images']), **full['mean'],
                     baseline=full['mean'][task.BASELINE_NAME])
    else:
      results = run_eval(final_step)
      baseline_step = parallel.jit_eval_step(
          lambda _, b: steps.make_baseline_step(
              task.baseline, functools.partial(task.metrics, config=config))(b),
          mesh)
      summary.update(
          num_eval_examples=min(config.num_eval_examples, len(test_source)),
          model=results,
          baseline=evaluate_batches(baseline_step, state, eval_batches(), mesh))
    logging.info('baseline (%s): %s', task.BASELINE_NAME,
                 ' '.join(f'{k} {v:.4f}' for k, v in summary['baseline'].items()))
    if is_chief:
      summaries.write_json(os.path.join(workdir, 'metrics.json'), summary)
  finally:
    watcher.close()
    ckpt.close()
    writer.close()
  return state
