"""Checks of config values, shared by `config_lib` and the tasks.

Each check takes a value and returns None when it is allowed, else a phrase
saying what is allowed ('a positive integer'). `problems(config, checks)`
applies a {dotted field: check} table and returns one message per bad field.
"""

from typing import Any, Callable, Optional

from ae_research import errors

Check = Callable[[Any], Optional[str]]


class ConfigError(errors.UserError, ValueError):
  """A config value is impossible; the message names the field."""


def positive(x) -> Optional[str]:
  return None if isinstance(x, int) and not isinstance(x, bool) and x > 0 else 'a positive integer'


def non_negative(x) -> Optional[str]:
  return None if isinstance(x, int) and not isinstance(x, bool) and x >= 0 else 'an integer >= 0'


def positive_float(x) -> Optional[str]:
  return None if isinstance(x, (int, float)) and x > 0 else 'a number > 0'


def non_negative_float(x) -> Optional[str]:
  return None if isinstance(x, (int, float)) and x >= 0 else 'a number >= 0'


def fraction(x) -> Optional[str]:
  return None if isinstance(x, (int, float)) and 0 <= x <= 1 else 'a number in [0, 1]'


def boolean(x) -> Optional[str]:
  return None if isinstance(x, bool) else 'True or False'


def one_of(choices) -> Check:
  def check(x):
    return None if x in choices else f'one of {sorted(choices)}'
  return check


def positive_ints(x) -> Optional[str]:
  ok = (isinstance(x, (tuple, list)) and len(x) > 0 and
        all(isinstance(v, int) and v > 0 for v in x))
  return None if ok else 'a non-empty tuple of positive integers, e.g. (32, 64)'


def get(config, dotted: str):
  """config['a']['b'] for 'a.b'."""
  value = config
  for part in dotted.split('.'):
    value = value[part]
  return value


def problems(config, table: dict[str, Check]) -> list[str]:
  """One message per field of `table` that is missing or not allowed."""
  found = []
  for field, check in table.items():
    try:
      value = get(config, field)
    except (KeyError, AttributeError):
      found.append(f'config.{field} is missing')
      continue
    allowed = check(value)
    if allowed is not None:
      found.append(f'config.{field}={value!r} is not allowed: use {allowed}')
  return found


def raise_if(found: list[str]) -> None:
  """ConfigError listing every problem, if there is any."""
  if found:
    raise ConfigError('invalid config:\n  ' + '\n  '.join(found))
