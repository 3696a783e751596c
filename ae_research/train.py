"""The training loop every experiment shares.

  state = train_and_evaluate(config, workdir)   # train (resuming), then score
  results = evaluate_workdir(config, workdir)   # score a trained run's images
  run(config, workdir, mode, distributed)       # what `main` calls

A run, step by step: `_start` builds what the config describes (task, model,
data, jitted steps: a `Run`); `_restore_or_init` resumes from the latest
checkpoint in `workdir/checkpoints` (train state, data position and RNG, so
an interrupted run ends exactly where an uninterrupted one would) or
initializes; `_train` runs the steps with progress lines, evaluations and
checkpoints; `_final_report` scores the model beside its baseline and writes
`workdir/metrics.json`. TensorBoard summaries go to `workdir/tensorboard`,
sample grids to `workdir/samples`, and every evaluation's metrics, with the
minutes of training it took to get there, to `workdir/eval_history.jsonl`. On SIGTERM (a scheduler's notice) every
process saves a checkpoint of the same step and the run stops
(`preemption.Preempted`); run again, it resumes. A training run holds its
workdir (`claim`) from before it opens its checkpoints until the last write:
a second launch on the same workdir stops with a message naming the holder.
"""

import dataclasses
import functools
import json
import math
import os
import time
import traceback
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging
from flax import linen as nn

from jax.experimental import multihost_utils

from ae_research import checkpointing, claim as claim_lib, config_lib, datasets
from ae_research import device_data, errors, logs
from ae_research import evaluate, input_pipeline
from ae_research import models, parallel, preemption, pretrained, steps
from ae_research import summaries
from ae_research import workdir as workdir_lib


class TrainingDiverged(errors.UserError, FloatingPointError):
  """The loss became NaN or infinite."""


@dataclasses.dataclass
class Run:
  """What one training run uses, built once from its config (`_start`)."""
  config: ml_collections.ConfigDict
  workdir: str
  mesh: jax.sharding.Mesh
  task: Any  # A tasks.base.Task module.
  model: nn.Module
  tx: optax.GradientTransformation
  train_source: Any
  test_source: Any
  train_step: Callable  # (state, batch, rng) -> (state, metrics), jitted.
  eval_step: Callable  # (state, batch) -> {name: (sum, count)}, jitted.
  predict: Callable  # (state, x) -> output, jitted, on one device's copy.
  writer: summaries.Writer
  ckpt: checkpointing.Checkpointer
  is_chief: bool  # Process 0: the one that writes files.
  # Seconds spent training (compiling included, evaluation excluded).
  train_seconds: float = 0.0
  claim: Optional[claim_lib.Claim] = None  # Held by process 0.

  @property
  def ckpt_dir(self) -> str:
    return os.path.join(self.workdir, 'checkpoints')

  @property
  def history_path(self) -> str:
    return os.path.join(self.workdir, 'eval_history.jsonl')

  def close(self, quiet: bool = False) -> None:
    """Waits for an asynchronous save to finish, closes the summaries and
    releases the workdir. `quiet` (closing after an error): what fails here
    is logged, not raised, so the error reported is the first one."""
    try:
      for close in (self.ckpt.close, self.writer.close):
        try:
          close()
        except Exception as e:  # pylint: disable=broad-except
          if not quiet:
            raise
          logs.detail(f'While closing after an error: {e}')
    finally:
      if self.claim is not None:
        self.claim.release()


def _claim(workdir: str) -> Optional[claim_lib.Claim]:
  """Process 0 claims `workdir`; if another run holds it, every process of
  this run stops (claim.WorkdirHeld) before any work."""
  held, claim = None, None
  if jax.process_index() == 0:
    try:
      claim = claim_lib.hold(workdir)
    except claim_lib.WorkdirHeld as e:
      held = e
  if jax.process_count() > 1:
    stop = int(multihost_utils.broadcast_one_to_all(np.int32(held is not None)))
    if stop and held is None:
      raise claim_lib.WorkdirHeld(
          f'{workdir} is being written by another run: process 0 of this run '
          'found it held and names the holder.')
  if held is not None:
    raise held
  return claim


def _start(config: ml_collections.ConfigDict, workdir: str,
           mesh: jax.sharding.Mesh) -> Run:
  """Builds the task, model, data sources and jitted steps, then (the data
  opened: nothing is written for a run that cannot start) stores or checks
  the config in `workdir`, claims it (one writer per workdir), and opens its
  checkpoints and summaries."""
  task, model, tx = workdir_lib.build(config)
  train_source = datasets.get_source(config, 'train')
  test_source = datasets.get_source(config, 'test', config.eval_dataset or None)
  workdir_lib.check_workdir(config, workdir)
  claim = _claim(workdir)
  try:
    return _open_run(config, workdir, mesh, task, model, tx, train_source,
                     test_source, claim)
  except BaseException:
    if claim is not None:
      claim.release()
    raise


def _open_run(config, workdir, mesh, task, model, tx, train_source,
              test_source, claim) -> Run:
  """The Run's jitted steps, summary writer and checkpointer."""
  loss = functools.partial(task.loss, config=config)
  metrics = functools.partial(task.metrics, config=config)
  is_chief = jax.process_index() == 0
  return Run(
      config=config, workdir=workdir, mesh=mesh, task=task, model=model, tx=tx,
      train_source=train_source, test_source=test_source,
      train_step=parallel.jit_train_step(steps.make_train_step(
          model, tx, loss,
          compute_dtype=steps.COMPUTE_DTYPES[config.compute_dtype]), mesh),
      eval_step=parallel.jit_eval_step(steps.make_eval_step(model, metrics), mesh),
      predict=jax.jit(steps.make_predict(model)),
      writer=summaries.Writer(os.path.join(workdir, 'tensorboard'), is_chief),
      ckpt=checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                      config.keep_checkpoints,
                                      config.async_checkpoints),
      is_chief=is_chief, claim=claim)


def _restore_or_init(run: Run) -> tuple[steps.TrainState, jax.Array,
                                        Optional[dict[str, Any]]]:
  """(state, train RNG, data state): from the newest intact checkpoint
  (damaged ones are moved to workdir/damaged_checkpoints), else
  initialized (from config.init_from's parameters if set) with no data
  state."""
  config = run.config
  init_rng, train_rng = jax.random.split(jax.random.key(config.seed))
  shape = workdir_lib.init_shape(run.task, config, run.model)
  rep = parallel.replicated(run.mesh)
  state = jax.jit(lambda r: steps.create_train_state(run.model, run.tx, r, shape),
                  out_shardings=rep)(init_rng)
  logging.info('Model: %d parameters.', models.count_params(state.params))
  if run.ckpt.latest_step() is not None:
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), state)
    state, data_state, train_rng, last_saved = run.ckpt.restore_intact(
        abstract, quarantine=os.path.join(run.workdir, 'damaged_checkpoints'))
    logging.info('Resumed from step %d in %s.', last_saved, run.ckpt_dir)
    _resume_history(run, last_saved)
    return state, train_rng, data_state
  if config.init_from:  # A shipped model (pretrained:NAME) or a workdir.
    start = (pretrained.warm_start if pretrained.is_name(config.init_from)
             else workdir_lib.warm_start)
    state = start(config, state, rep)
  return state, train_rng, None


def _train_batches(run: Run, data_state: Optional[dict[str, Any]]):
  """The training batches, on the devices: made there from the images kept
  in their memory (`device_data`), or by grain on the host and sent
  (`input_pipeline.choose` decides); at `data_state`'s position when
  resuming."""
  config, mesh = run.config, run.mesh
  resumed = None if data_state is None else input_pipeline.pipeline_of(data_state)
  if input_pipeline.choose(config, run.train_source, resumed,
                          run.task.on_device(config)) == 'device':
    batches = device_data.DeviceBatches(run.train_source, run.task, config, mesh)
    logging.info('Training batches made on the device from %d images '
                 '(%.0f MB kept there).', len(run.train_source),
                 batches.num_bytes / 1e6)
  else:
    train_iter = iter(input_pipeline.train_dataset(
        run.train_source, run.task, config,
        config.batch_size // jax.process_count(), jax.process_index(),
        jax.process_count()))
    batches = input_pipeline.DevicePrefetcher(
        train_iter, lambda b: parallel.shard_batch(b, mesh))
    logging.info('Training batches made on the host (grain, %d threads).',
                 config.data_threads)
  if data_state is not None:
    batches.set_state(data_state)
  return batches


def read_history(workdir: str) -> list[dict[str, Any]]:
  """The records of workdir/eval_history.jsonl: {'step', 'train_minutes',
  metric: value...}, one per evaluation during training."""
  path = os.path.join(workdir, 'eval_history.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def _resume_history(run: Run, step: int) -> None:
  """Keeps the evaluations up to `step` (later ones are made again) and
  counts training time on from the last of them: the steps between it and
  the checkpoint are run again, so their time is counted again."""
  kept = [r for r in read_history(run.workdir) if r['step'] <= step]
  run.train_seconds = 60.0 * kept[-1]['train_minutes'] if kept else 0.0
  if run.is_chief:
    _write_history(run, kept)


def _write_history(run: Run, records: list[dict[str, Any]]) -> None:
  def write(tmp):
    with open(tmp, 'w') as f:
      f.writelines(json.dumps(r) + '\n' for r in records)
  summaries.write_through_temp(run.history_path, write)


def _check_finite(step: int, metrics: dict, run: Run) -> dict:
  """`metrics` (on the host), or TrainingDiverged if the loss or gradient
  norm is NaN or infinite."""
  bad = {k: float(metrics[k]) for k in ('loss', 'grad_norm')
         if not math.isfinite(float(metrics[k]))}
  if bad:
    last = run.ckpt.latest_step()
    kept = (f'the checkpoints up to step {last} in {run.ckpt_dir} are kept as '
            'they were' if last else 'no checkpoint was saved')
    what = ', '.join(f'{k} is {v}' for k, v in bad.items())
    raise TrainingDiverged(
        f'{what} at step {step}; training stopped and {kept}. '
        'Try a lower config.optimizer.learning_rate or '
        'config.optimizer.grad_clip_norm > 0, in a new --workdir.')
  return metrics


def _train(run: Run, state: steps.TrainState, train_rng: jax.Array,
           batches) -> steps.TrainState:
  """The steps from state.step to config.num_train_steps, with progress
  lines, evaluations and checkpoints. A step's metrics are fetched one step
  late, so the host never waits for the device."""
  config = run.config
  progress = summaries.Progress(config.num_train_steps, config.batch_size,
                                int(state.step))
  pending, logged = None, []  # The last step's metrics; those since the last line.
  watcher = preemption.Watcher()
  started = time.perf_counter()
  try:
    for step in range(int(state.step) + 1, config.num_train_steps + 1):
      parallel.progress.step, parallel.progress.phase = step, 'training'
      state, metrics = run.train_step(state, next(batches),
                                      jax.random.fold_in(train_rng, step))
      if watcher.reached(step) and step < config.num_train_steps:
        # Every process stops at this step: save it and leave.
        run.ckpt.save(step, state, batches.get_state(), train_rng)
        run.ckpt.wait()
        logging.warning('SIGTERM: saved step %d in %s; exiting.', step, run.ckpt_dir)
        raise preemption.Preempted(step, run.ckpt_dir)
      if pending is not None:
        logged.append(_check_finite(step - 1, parallel.fetch(pending), run))
      pending = metrics
      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        logged.append(_check_finite(step, parallel.fetch(pending), run))
        pending = None
        _log_train(run, progress, step, logged)
        logged = []
      if step % config.eval_every_steps == 0 and step < config.num_train_steps:
        run.train_seconds += time.perf_counter() - started
        _evaluate(run, state, step)
        started = time.perf_counter()
        progress.restart(step)  # Evaluation time is not training speed.
      if step % config.checkpoint_every_steps == 0 or step == config.num_train_steps:
        if pending is not None:  # Never save a diverged state.
          _check_finite(step, parallel.fetch(pending), run)
        run.ckpt.save(step, state, batches.get_state(), train_rng)
    jax.block_until_ready(state)
    run.train_seconds += time.perf_counter() - started
  finally:
    watcher.close()
  return state


def _log_train(run: Run, progress: summaries.Progress, step: int,
               logged: list[dict]) -> None:
  """A progress line and TensorBoard scalars: the means since the last line."""
  means = {k: float(np.mean([m[k] for m in logged])) for k in logged[0]}
  logging.info('%s', progress.report(step, means))
  run.writer.scalars(step, {f'train/{k}': v for k, v in means.items()})


def evaluate_batches(eval_step: Callable, state: steps.TrainState, batches,
                     mesh: jax.sharding.Mesh) -> dict[str, float]:
  """Averages the task's metrics over every batch, weighted by the mask."""
  totals = {}
  for batch in batches:
    sums = parallel.fetch(eval_step(state, parallel.shard_batch(batch, mesh)))
    for name, (num, den) in sums.items():
      n, d = totals.get(name, (0.0, 0.0))
      totals[name] = (n + float(num), d + float(den))
  return {name: num / max(den, 1e-12) for name, (num, den) in totals.items()}


def _eval_batches(run: Run):
  """This process's part of the test batches."""
  c = run.config
  return input_pipeline.eval_batches(
      run.test_source, run.task, c, c.eval_batch_size // jax.process_count(),
      jax.process_index(), jax.process_count(), c.num_eval_examples)


def _evaluate(run: Run, state: steps.TrainState, step: int,
              full: Optional[dict[str, Any]] = None) -> dict[str, float]:
  """Logs the model's test metrics and writes a sample grid. `full` is a
  whole-image evaluation the caller already made; without it, the test
  batches are scored (or the whole images, with config.eval_whole_images,
  without the classical methods)."""
  config = run.config
  logging.info('Evaluating step %d.', step)
  parallel.progress.phase = 'evaluation'
  if full is None and config.eval_whole_images:
    full = run.task.evaluate_images(parallel.local_copy(state), run.predict,
                                    run.test_source, config, classical=False)
  if full is not None:
    results = full['mean']['model']
  else:
    results = evaluate_batches(run.eval_step, state, _eval_batches(run), run.mesh)
  run.writer.scalars(step, {f'eval/{k}': v for k, v in results.items()})
  logging.info('eval step %d (%.1f min of training): %s', step,
               run.train_seconds / 60,
               ' '.join(f'{k} {v:.4f}' for k, v in results.items()))
  if run.is_chief:  # Rewritten whole: a failed write leaves the old file.
    _write_history(run, read_history(run.workdir) + [
        {'step': step, 'train_minutes': run.train_seconds / 60, **results}])
  if config.num_sample_images:  # Every process predicts; process 0 writes.
    _write_samples(run, state, step, full)
  run.writer.flush()
  return results


def _write_samples(run: Run, state: steps.TrainState, step: int,
                   full: Optional[dict[str, Any]]) -> None:
  """input | output | target: the first test batch, or the first whole image."""
  if full is None:
    first = next(iter(_eval_batches(run)))
    n = min(run.config.num_sample_images, len(first['input']))
    x, target = first['input'][:n], first['target'][:n]
    output = run.predict(parallel.local_copy(state), jnp.asarray(x))
    shown = np.stack([evaluate.shown_input({'input': a, 'target': b})
                      for a, b in zip(x, target)])
    columns = [shown, np.asarray(output), target]
  else:
    columns = full['sample']
  grid = summaries.image_grid(columns)
  run.writer.image(step, 'samples/input_output_target', grid)
  if run.is_chief:
    summaries.save_png(os.path.join(run.workdir, 'samples', f'step_{step:07d}.png'),
                       grid, scale=max(1, 128 // columns[0].shape[1]))


def _final_report(run: Run, state: steps.TrainState) -> dict[str, Any]:
  """Scores the model and the task's baseline on the test data; writes
  metrics.json (and, for whole images, workdir/eval/)."""
  config, task = run.config, run.task
  step = int(state.step)
  logging.info('Final report: scoring step %d beside the baseline.', step)
  parallel.progress.phase = 'final report'
  summary = {'step': step, 'task': config.task,
             'dataset': config.eval_dataset or config.dataset}
  if config.eval_whole_images:  # One pass scores the model and the baselines.
    full = task.evaluate_images(
        parallel.local_copy(state), run.predict, run.test_source, config,
        out_dir=os.path.join(run.workdir, 'eval') if run.is_chief else None,
        classical=config.eval_classical)
    _evaluate(run, state, step, full)
    summary.update(num_eval_examples=len(full['images']), **full['mean'],
                   baseline=full['mean'][task.baseline_name(config)])
  else:
    model_results = _evaluate(run, state, step)
    metrics = functools.partial(task.metrics, config=config)
    baseline_step = parallel.jit_eval_step(
        lambda _, b: steps.make_baseline_step(task.baseline, metrics)(b), run.mesh)
    summary.update(
        num_eval_examples=min(config.num_eval_examples, len(run.test_source)),
        model=model_results,
        baseline=evaluate_batches(baseline_step, state, _eval_batches(run), run.mesh))
  logging.info('baseline (%s): %s', task.baseline_name(config),
               ' '.join(f'{k} {v:.4f}' for k, v in summary['baseline'].items()))
  if run.is_chief:
    summaries.write_json(os.path.join(run.workdir, 'metrics.json'), summary)
  return summary


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> steps.TrainState:
  """Trains `config` in `workdir` (resuming if it holds a checkpoint), then
  scores the model; returns the final train state."""
  mesh = parallel.make_mesh()
  config_lib.validate(config, num_devices=mesh.size)
  run = _start(config, workdir, mesh)
  try:
    state, train_rng, data_state = _restore_or_init(run)
    state = _train(run, state, train_rng, _train_batches(run, data_state))
    _final_report(run, state)
  except BaseException:
    run.close(quiet=True)
    raise
  run.close()
  return state


def eval_dir_name(name: str) -> str:
  """eval_Set5 for folder:.../Set5, eval_Set5_Set14 for folder:.../Set5,.../Set14,
  eval_tfds_cifar10 for tfds:cifar10..."""
  kind, arg = datasets.parse(name)
  if kind == 'folder':
    name = '_'.join(os.path.basename(os.path.normpath(p))
                    for p in arg.split(',') if p)
  return 'eval_' + ''.join(c if c.isalnum() or c in '-_' else '_'
                           for c in name).strip('_')


def evaluate_workdir(config: ml_collections.ConfigDict,
                     workdir: str) -> dict[str, Any]:
  """Scores the latest checkpoint of `workdir` on whole images of
  config.eval_dataset (or the test split of config.dataset), beside the
  task's baselines; writes workdir/eval_<dataset>/results.{json,md} and PNGs.

  At most config.num_eval_examples images are scored (the first ones).
  The task's group may differ from the trained run's where the task allows
  (`Task.group_fixed_at_eval`; e.g. a blind denoiser scored at sigma 15):
  the folder's name then says how (eval_Kodak24_sigma15_sigma_range0-0)."""
  mesh = parallel.make_mesh()
  config_lib.validate(config, num_devices=mesh.size)
  workdir_lib.require_run(workdir)
  workdir_lib.check_workdir(config, workdir, at_eval=True)
  task, model, _ = workdir_lib.build(config)
  name = config.eval_dataset or config.dataset
  source = datasets.get_source(config, 'test', name)
  state, step = workdir_lib.restore_latest(config, workdir)
  out_dir = os.path.join(workdir, eval_dir_name(name) + task.eval_label(
      workdir_lib.load_config(workdir), config))
  results = task.evaluate_images(
      parallel.local_copy(state), jax.jit(steps.make_predict(model)),
      source, config, out_dir=out_dir if jax.process_index() == 0 else None,
      max_images=config.num_eval_examples, classical=config.eval_classical)
  logging.info('step %d on %s (%d images), written to %s; means:\n%s', step,
               name, len(results['images']), out_dir, '\n'.join(
                   f'  {method}: ' + ' '.join(f'{k} {v:.4f}' for k, v in m.items())
                   for method, m in results['mean'].items()))
  return results


def run(config: ml_collections.ConfigDict, workdir: str, mode: str = 'train',
        distributed: str = 'auto') -> None:
  """What `python -m ae_research.main` does: joins the other processes of
  a multi-process run (`parallel.initialize_distributed`), then trains
  (mode 'train') or scores the trained run on whole images ('eval')."""
  if mode not in ('train', 'eval'):
    raise ValueError(f"mode={mode!r}; use 'train' or 'eval'")
  watch = None
  if parallel.initialize_distributed(distributed):
    if jax.process_index():
      logging.set_verbosity(logging.WARNING)  # Process 0 reports progress.
      logs.per_process(jax.process_index())  # Its own details.log.
    watch = parallel.ProcessWatch().start()  # Stops this one if another dies.
  try:
    if mode == 'train':
      train_and_evaluate(config, workdir)
    else:
      evaluate_workdir(config, workdir)
    if watch is not None:  # Every process ends here, none before the others.
      watch.finished()
      parallel.leave_together()
  except preemption.Preempted:
    if watch is not None:  # Every process saved the same step and stops.
      watch.finished()
      parallel.leave_together()
    raise
  except Exception as e:  # pylint: disable=broad-except
    if watch is not None and parallel.lost_peer(e):  # Another one died.
      logs.detail(traceback.format_exc())
      parallel.stop_lost('a collective failed: another process is lost ('
                         + str(e).splitlines()[0][:200] + ')')
    raise
  finally:
    if watch is not None:
      watch.finished()
