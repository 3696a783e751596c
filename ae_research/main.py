"""Trains and evaluates one experiment.

  python -m ae_research.main --config=configs/colorize.py --workdir=runs/colorize \
      --config.optimizer.learning_rate=3e-4

Parses the flags and calls `train.run`. A problem with the command (a flag,
a config value, the workdir, the data) is one line on stderr and exit status
2 (flags) or 1 (the rest); any other exception is a bug and shows its
traceback. A run stopped by SIGTERM exits with status 143 after saving.

`--config.model.arch=NAME` switches the config to that architecture with its
defaults (ae_research/archs.py); the other `--config.model.*` flags then set
its fields:

  python -m ae_research.main --config=configs/denoise.py --workdir=runs/dn5 \
      --config.model.arch=dncnn --config.model.depth=5
"""

import importlib.util
import os
import sys
import traceback
from typing import Optional

from absl import app, flags, logging
import jax
import ml_collections
from ml_collections import config_flags

from ae_research import archs, cli, errors, logs, preemption, train

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with a variant '
    '(configs/colorize.py:smoke).', lock_config=True)
_WORKDIR = cli.define_workdir(
    'Directory for checkpoints, summaries and results; a run in it is '
    'resumed.')
_MODE = flags.DEFINE_enum(
    'mode', 'train', ['train', 'eval'],
    'train: train and evaluate (resuming). eval: score the latest checkpoint '
    'of --workdir on whole images of config.eval_dataset (e.g. '
    '--config.eval_dataset=folder:PATH).')
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'],
    'auto: join the other processes when started by `srun -n K` (K > 1); on: '
    'always call jax.distributed.initialize() (Cloud TPU pods, clusters it '
    'detects); off: one process.')
_ARCH_FLAG = 'config.model.arch'


def _arch_flag(argv: list[str]) -> Optional[str]:
  """NAME of the last --config.model.arch=NAME (or `--config.model.arch
  NAME`) in argv, or None."""
  found = None
  for i, arg in enumerate(argv):
    name, eq, value = arg.lstrip('-').partition('=')
    if not arg.startswith('-') or name != _ARCH_FLAG:
      continue
    if eq:
      found = value
    elif i + 1 < len(argv):
      found = argv[i + 1]
  return found


def _switch_arch(config, argv: list[str]) -> None:
  """When argv's --config.model.arch names another architecture than the
  config's, config.model becomes that one with its defaults, so that the
  other --config.model.* flags (applied after this) find its fields. Naming
  the config's own architecture changes nothing."""
  arch = _arch_flag(argv)
  if (arch is None or not isinstance(config, ml_collections.ConfigDict) or
      arch == config.model.get('arch')):
    return  # (Not a ConfigDict: a file that failed to load, reported later.)
  if arch not in archs.REGISTRY:
    raise ValueError(f'--{_ARCH_FLAG}={arch!r} names no architecture; choose '
                     f'one of {list(archs.names())}')
  with config.unlocked():
    config.model = ml_collections.ConfigDict(archs.get(arch).config())
  config.lock()


class _SwitchingArch(flags.ArgumentParser):
  """ml_collections' parser of --config=PATH[:VARIANT], then `_switch_arch`:
  it runs before ml_collections defines the --config.* override flags from
  the config's fields. Like ml_collections, it reads them from sys.argv."""

  def __init__(self, config_file_parser: flags.ArgumentParser):
    self._config_file_parser = config_file_parser

  def parse(self, argument):
    config = self._config_file_parser.parse(argument)
    _switch_arch(config, FLAGS.read_flags_from_files(sys.argv, force_gnu=False))
    return config

  def flag_type(self) -> str:
    return self._config_file_parser.flag_type()


FLAGS['config'].parser = _SwitchingArch(FLAGS['config'].parser)


def _unknown_field(flag: str, config) -> str:
  """For --config.a.b naming no field: where the path breaks, and the
  fields there are."""
  path = flag[len('config.'):].split('.')
  node = config
  for i, key in enumerate(path):
    if not hasattr(node, 'keys') or key not in node:
      where = 'config' + ''.join(f'.{k}' for k in path[:i])
      known = sorted(node.keys()) if hasattr(node, 'keys') else []
      return (f'--{flag} names no config field: {where} has no {key!r}' +
              (f'; its fields are {known}' if known else ''))
    node = node[key]
  return f'--{flag} is not a config field'


def _load_config(argv: list[str]):
  """The config that the last --config=PATH[:VARIANT] of argv names, with
  the architecture argv's --config.model.arch names."""
  spec = [a.split('=', 1)[1] for a in argv if a.startswith('--config=')][-1]
  path, _, variant = spec.partition(':')
  module_spec = importlib.util.spec_from_file_location('_config', path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  config = module.get_config(variant) if variant else module.get_config()
  _switch_arch(config, argv)
  return config


def _first_unknown_field(argv: list[str], config) -> Optional[str]:
  """The message for the first --config.a.b=v naming no field, if any."""
  for arg in argv:
    if arg.startswith('--config.'):
      flag = arg[2:].split('=', 1)[0]
      node = config
      for key in flag.split('.')[1:]:
        if not hasattr(node, 'keys') or key not in node:
          return _unknown_field(flag, config)
        node = node[key]
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing; a bad flag is one line naming what is allowed."""
  try:
    rest = FLAGS(argv)
    # Checked here, not by absl's mark_flags_as_required, whose check would
    # also refuse the other commands imported into the same process.
    cli.require(_CONFIG, _WORKDIR)
    return rest
  # ml_collections reports an override of a missing field as an
  # AttributeError or KeyError from inside the parse, absl as a flags.Error.
  except (flags.Error, AttributeError, KeyError, TypeError) as e:
    message = str(e)
    if 'Traceback' in message:
      # A config file that fails to load reports the traceback of the load;
      # its last line says what is wrong.
      lines = [l for l in message.splitlines() if l.strip()]
      message = f'{lines[0].split(":", 1)[0]}: {lines[-1]}'
    else:
      try:
        message = _first_unknown_field(argv, _load_config(argv)) or message
      except ValueError as unknown_arch:  # From _switch_arch.
        message = str(unknown_arch)
  print(f'error: {message}\nPass --helpfull to see every flag.', file=sys.stderr)
  sys.exit(2)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  handler = logging.get_absl_handler()
  handler.python_handler.stream = sys.stdout
  # The libraries' own reports (Orbax's tracebacks on a full disk...) go to
  # the workdir's details.log, not between our lines (--verbose: both).
  logs.divert(os.path.join(_WORKDIR.value, logs.FILENAME), cli.verbose())
  try:
    train.run(_CONFIG.value, _WORKDIR.value, _MODE.value, _DISTRIBUTED.value)
  except preemption.Preempted as e:
    logging.warning('%s', e)
    _exit(preemption.EXIT_STATUS)
  except errors.UserError as e:
    print(f'error: {e}{logs.pointer()}', file=sys.stderr)
    _exit(1)
  except Exception:  # A bug: its traceback.
    if jax.process_count() == 1:
      raise
    traceback.print_exc()
    _exit(1)


def _exit(status: int) -> None:
  """Ends the process. One of several leaves at once, without jax's
  shutdown barrier, which would wait for processes that go on (they find
  this one lost after its heartbeat timeout and stop too)."""
  if jax.process_count() > 1:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # pylint: disable=protected-access
  sys.exit(status)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
