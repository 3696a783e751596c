"""Experiments: what differs between them lives in one small module each.

Each module provides every name of `base.Task` (the interface, written down
once); `get(name)` returns the module of config.task.
"""

import types

from ae_research.tasks import base, colorize, compress, denoise, super_resolution

INTERFACE = tuple(n for n in vars(base.Task) if not n.startswith('_')) + tuple(
    base.Task.__annotations__)


def _register(*modules: types.ModuleType) -> dict[str, types.ModuleType]:
  """{NAME: module}; a module missing a name of the interface is refused."""
  out = {}
  for m in modules:
    missing = sorted(set(INTERFACE) - set(vars(m)))
    if missing:
      raise TypeError(f'task module {m.__name__} does not provide {missing}; '
                      'every task provides each name of tasks.base.Task')
    out[m.NAME] = m
  return out


TASKS: dict[str, types.ModuleType] = _register(
    colorize, compress, denoise, super_resolution)


def get(name: str) -> types.ModuleType:
  """The task module called `name` (config.task)."""
  if name not in TASKS:
    raise ValueError(f'config.task={name!r} is unknown; choose one of '
                     f'{sorted(TASKS)}')
  return TASKS[name]
