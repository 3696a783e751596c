"""A run's workdir: its stored config, its checkpoints, and the objects they
describe. Below the loop and every command that opens a trained run.

  config = workdir.load_config('runs/denoise')
  state, step = workdir.restore_latest(config, 'runs/denoise')
  codec = workdir.load_codec('runs/compress')     # a compression run's codec
"""

import copy
import json
import os
from typing import Any, Optional

import jax
import ml_collections
import optax
from absl import logging
from flax import linen as nn

from ae_research import aec, base_config, checkpointing, errors, parallel, steps
from ae_research import summaries, tasks, tiling


class WorkdirMismatch(errors.UserError, ValueError):
  """The workdir holds no run, or a run of a different model, task or data."""


def _stored(stored: dict, defaults: dict, key: str) -> Any:
  """The stored config's value of `key`, in today's terms: a field the run
  predates has its default (also inside a group, e.g. config.compress); a
  model from before config.model.arch was the autoencoder."""
  value = stored.get(key, defaults.get(key))
  if key == 'model' and isinstance(value, dict):
    return {'arch': 'autoencoder', **value}
  if isinstance(value, dict) and isinstance(defaults.get(key), dict):
    return base_config.merge(copy.deepcopy(defaults[key]), value)
  return value


def check_workdir(config: ml_collections.ConfigDict, workdir: str,
                  at_eval: bool = False) -> None:
  """Stores the config in `workdir`, or checks it against the stored one:
  the fields a resumed run keeps, or (`at_eval`) those a scored run keeps
  (`base_config.fixed_fields`)."""
  path = os.path.join(workdir, 'config.json')
  current = json.loads(config.to_json_best_effort())
  if os.path.exists(path):
    with open(path) as f:
      stored = json.load(f)
    fields = base_config.fixed_fields(config.task, at_eval)
    # A field the stored run predates: its default.
    defaults = base_config.defaults_of(stored.get('task', config.task))
    differ = [k for k in fields
              if _stored(stored, defaults, k) != current.get(k)]
    if differ:
      raise WorkdirMismatch(
          f'{workdir} holds a run with a different config.' +
          ''.join(f'\n  config.{k}: stored {stored.get(k)!r}, now {current.get(k)!r}'
                  for k in differ) +
          '\nUse a new --workdir, or the stored values to resume that run.')
  elif jax.process_index() == 0:
    with errors.writing(workdir, 'Nothing was written'):
      os.makedirs(workdir, exist_ok=True)
    summaries.write_json(path, current)


def require_run(workdir: str) -> None:
  """WorkdirMismatch unless `workdir` holds a run (its config.json)."""
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise WorkdirMismatch(f'{workdir} holds no run (no config.json); train one '
                          'there first (python -m ae_research.main --config=... '
                          f'--workdir={workdir})')


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config stored in a run's workdir; fields the run predates take
  their default values."""
  require_run(workdir)
  with open(os.path.join(workdir, 'config.json')) as f:
    stored = json.load(f)
  return base_config.from_stored(stored)


def build(config: ml_collections.ConfigDict, norm_axis_name: Optional[str] = None
          ) -> tuple[Any, nn.Module, optax.GradientTransformation]:
  """The task module, model and optimizer that a config describes."""
  task = tasks.get(config.task)
  model = task.make_model(config, norm_axis_name)
  return task, model, steps.make_optimizer(config)


def init_shape(task, config: ml_collections.ConfigDict,
               model: nn.Module) -> tuple[int, ...]:
  """An input shape to initialize the model with (its parameters depend on
  the channels only): the channels of the task's input, the smallest square
  the model takes."""
  side = model.downsampling
  return (1, side, side, task.input_channels(config))


def restore_latest(config: ml_collections.ConfigDict, workdir: str,
                   step: Optional[int] = None) -> tuple[steps.TrainState, int]:
  """(train state, step) of the newest intact checkpoint of `workdir` (a
  damaged newer one is skipped with a warning), or of `step`
  (checkpointing.DamagedCheckpoint if it is damaged), replicated over every
  device."""
  task, model, tx = build(config)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  saved = ckpt.all_steps()
  if not saved or (step is not None and step not in saved):
    ckpt.close()
    raise WorkdirMismatch(
        f'{workdir} holds no checkpoint yet' if not saved else
        f'{workdir} holds no checkpoint of step {step}; it holds steps '
        f'{sorted(saved)}')
  shape = init_shape(task, config, model)
  rep = parallel.replicated(parallel.make_mesh())
  abstract = jax.eval_shape(
      lambda r: steps.create_train_state(model, tx, r, shape), jax.random.key(0))
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)
  try:
    if step is None:  # The newest intact one.
      state, _, _, step = ckpt.restore_intact(abstract)
    else:
      state, _, _ = ckpt.restore(abstract, step)
  finally:
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


def load_codec(workdir: str, step: Optional[int] = None,
               plan: tiling.Tiling = tiling.Tiling()) -> aec.Codec:
  """The codec of the latest checkpoint (or `step`) of a run whose task
  makes one (`Task.codec`: compression)."""
  config = load_config(workdir)
  require_codec(config, workdir)
  state, _ = restore_latest(config, workdir, step)
  return tasks.get(config.task).codec(config, state, plan)


def require_codec(config: ml_collections.ConfigDict, what: str) -> None:
  """WorkdirMismatch unless the config's task makes a codec; `what` names
  the run or model in the message."""
  task = tasks.get(config.task)
  if type(task).codec is tasks.base.Task.codec:
    with_codec = [t.name for t in tasks.TASKS.values()
                  if type(t).codec is not tasks.base.Task.codec]
    raise WorkdirMismatch(f'{what} holds a {task.name!r} model, which makes no '
                          f'codec; give one of config.task in {with_codec}')
