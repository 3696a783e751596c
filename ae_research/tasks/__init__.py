"""Experiments: what differs between them lives in one small class each.

Each experiment is a `base.Task` subclass overriding what differs from the
image-to-image defaults; `get(name)` returns the registered instance of
config.task.
"""

import inspect

from ae_research.tasks import base, colorize, compress, denoise, super_resolution


def _signature(fn) -> list[tuple[str, inspect._ParameterKind]]:
  return [(p.name, p.kind) for p in inspect.signature(fn).parameters.values()]


def check_task(task: base.Task) -> None:
  """TypeError unless `task` is a named `base.Task` whose every overridden
  method takes the interface's parameters (same names, same order)."""
  if not isinstance(task, base.Task):
    raise TypeError(f'{task!r} is not a tasks.base.Task; an experiment is a '
                    'subclass of it')
  if not task.name:
    raise TypeError(f'{type(task).__name__} sets no name (config.task)')
  for attr, interface in vars(base.Task).items():
    if attr.startswith('_') or not inspect.isfunction(interface):
      continue
    own = getattr(type(task), attr)
    if not inspect.isfunction(own):
      raise TypeError(f'task {task.name!r}: {attr} must be a method, got '
                      f'{type(own).__name__}')
    if _signature(own) != _signature(interface):
      raise TypeError(
          f'task {task.name!r}: {type(task).__name__}.{attr}'
          f'{inspect.signature(own)} does not match the interface '
          f'tasks.base.Task.{attr}{inspect.signature(interface)}')


def _register(*instances: base.Task) -> dict[str, base.Task]:
  """{name: task}, each checked by `check_task`; names are unique."""
  out = {}
  for task in instances:
    check_task(task)
    if task.name in out:
      raise TypeError(f'two tasks are named {task.name!r}')
    out[task.name] = task
  return out


TASKS: dict[str, base.Task] = _register(
    colorize.Colorize(), compress.Compress(), denoise.Denoise(),
    super_resolution.SuperResolution())


def get(name: str) -> base.Task:
  """The task called `name` (config.task)."""
  if name not in TASKS:
    raise ValueError(f'config.task={name!r} is unknown; choose one of '
                     f'{sorted(TASKS)}')
  return TASKS[name]
