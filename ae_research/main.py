"""Trains and evaluates one experiment.

  python -m ae_research.main --config=configs/colorize.py --workdir=runs/colorize \
      --config.optimizer.learning_rate=3e-4
"""

import sys

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ae_research import config_lib, parallel, preemption, train

FLAGS = flags.FLAGS
_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with a variant '
    '(configs/colorize.py:smoke).', lock_config=True)
_WORKDIR = flags.DEFINE_string(
    'workdir', None, 'Directory for checkpoints, summaries and results; a run '
    'in it is resumed.')
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
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries:
  """Drops INFO lines of Orbax and TFDS, which log every file they touch."""

  def filter(self, record) -> bool:
    noisy = ('/orbax/', '/tensorflow_datasets/', '/grain/')
    return record.levelno > 20 or not any(n in record.pathname for n in noisy)


def _unknown_override(argv: list[str], config) -> str | None:
  """The first --config.a.b=v naming no field, with the fields that exist."""
  for arg in argv:
    if not arg.startswith('--config.'):
      continue
    path = arg[len('--config.'):].split('=', 1)[0].split('.')
    node = config
    for i, key in enumerate(path):
      if not hasattr(node, 'keys') or key not in node:
        where = 'config' + ''.join(f'.{k}' for k in path[:i])
        known = sorted(node.keys()) if hasattr(node, 'keys') else []
        return (f'{arg.split("=")[0]} names no config field: {where} has no '
                f'{key!r}' + (f'; its fields are {known}' if known else ''))
      node = node[key]
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a clear message for an unknown config field."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}\nPass --helpfull to see every flag.', file=sys.stderr)
    sys.exit(2)
  except (AttributeError, KeyError, TypeError) as e:
    message = None
    try:
      config_arg = next(a.split('=', 1)[1] for a in argv
                        if a.startswith('--config='))
      config = config_flags.config_flags._LoadConfigModule(
          'config', config_arg.split(':', 1)[0]).get_config(
              *config_arg.split(':', 1)[1:])
      message = _unknown_override(argv, config)
    except Exception:  # pylint: disable=broad-except
      pass
    print(f'error: {message or e}', file=sys.stderr)
    sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  handler = logging.get_absl_handler()
  handler.python_handler.stream = sys.stdout
  handler.addFilter(_QuietLibraries())
  if parallel.initialize_distributed(_DISTRIBUTED.value) and jax.process_index():
    logging.set_verbosity(logging.WARNING)  # Process 0 reports progress.
  try:
    if _MODE.value == 'train':
      train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    else:
      train.evaluate_workdir(_CONFIG.value, _WORKDIR.value)
  except preemption.Preempted as e:
    logging.warning('%s', e)
    sys.exit(preemption.EXIT_STATUS)
  except (config_lib.ConfigError, train.WorkdirMismatch,
          train.TrainingDiverged, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main, flags_parser=_parse_flags)
