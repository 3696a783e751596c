"""What the commands (`main`, `apply`, `codec`, `rd`) share: their common
absl flags, written once here, and one way to parse and run them.

A command defines its flags when imported and runs under absl:

  _WORKDIR = cli.define_workdir('the training run to apply')
  ...
  if __name__ == '__main__':
    cli.run(main)

`main(argv)` gets the inputs that are not flags in argv[1:] and returns the
exit status. A problem with the command line (an unknown flag, a bad
value, a missing flag or input) is one line on stderr and exit status 2;
`--help` lists the command's flags, `--helpfull` every flag. `call` runs a
command in this process, as from the shell (tests, notebooks).
"""

import sys
from typing import Callable, NoReturn, Optional, Sequence

from absl import app, flags, logging

from ae_research import logs

FLAGS = flags.FLAGS

# The flags defined by the functions below belong to the command that calls
# them: its --help lists them.
flags.disclaim_key_flags()

# A flag that several commands take is the same flag (name, type, default);
# each command gives it its own help. Commands can be imported together
# (tests do), so the definition made last stands in for the others.


def define_workdir(help: str) -> flags.FlagHolder[Optional[str]]:
  """--workdir: the folder of a training run (required: see `require`)."""
  return flags.DEFINE_string('workdir', None, help, allow_override=True)


def define_pretrained(help: str) -> flags.FlagHolder[Optional[str]]:
  """--pretrained: a model shipped with the package, by name (instead of a
  --workdir; see `require_one`)."""
  return flags.DEFINE_string('pretrained', None, help, allow_override=True)


def define_zoo_dir(help: str) -> flags.FlagHolder[Optional[str]]:
  """--zoo_dir: a folder of pretrained weights and their manifest.json
  (None: the models shipped with the package)."""
  return flags.DEFINE_string('zoo_dir', None, help, allow_override=True)


def define_classical(help: str) -> flags.FlagHolder[bool]:
  """--classical: score the task's classical methods beside the model."""
  return flags.DEFINE_bool('classical', True, help, allow_override=True)


def define_output(help: str) -> flags.FlagHolder[Optional[str]]:
  """--output: where the command writes (required: see `require`)."""
  return flags.DEFINE_string('output', None, help, allow_override=True)


def define_overwrite(help: str) -> flags.FlagHolder[bool]:
  """--overwrite: replace outputs that exist (by default they are kept)."""
  return flags.DEFINE_bool('overwrite', False, help, allow_override=True)


_VERBOSE = flags.DEFINE_bool(
    'verbose', False, "Also show the libraries' own reports (Orbax's and "
    "tensorstore's errors from their threads, warnings) on the terminal; "
    'without it a training run writes them to WORKDIR/details.log and a '
    'command leaves them out, showing its own one-line message alone.')


def verbose() -> bool:
  return _VERBOSE.value


def usage_error(message: str) -> NoReturn:
  """Stops the command: `error: message` on stderr, exit status 2."""
  print(f'error: {message}\nPass --help to see the flags.', file=sys.stderr)
  sys.exit(2)


def require(*holders: flags.FlagHolder) -> None:
  """A usage error naming the first of these flags that was not given.

  (Not absl's mark_flags_as_required: its check is global, so it would
  refuse every other command imported into the same process.)"""
  for holder in holders:
    if holder.value is None:
      usage_error(f'--{holder.name} is required')


def require_one(*holders: flags.FlagHolder) -> None:
  """A usage error unless exactly one of these flags was given."""
  given = [h for h in holders if h.value is not None]
  if len(given) != 1:
    names = ' or '.join(f'--{h.name}' for h in holders)
    usage_error(f'give one of {names}' + (
        f', not {len(given)}' if given else ''))


def parse(argv: list[str]) -> list[str]:
  """absl's flag parsing; returns argv[0] and the inputs that are not flags.
  A bad flag is a usage error."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    usage_error(str(e))


def run(main: Callable[[list[str]], Optional[int]],
        flags_parser: Callable[[list[str]], list[str]] = parse) -> NoReturn:
  """Runs `main` as the command of this process: parses sys.argv, exits
  with main's status. The command prints what it does itself; the INFO
  lines of the libraries (Orbax logs every file it reads) show only with
  --verbosity=0."""

  def quiet_main(argv: list[str]) -> Optional[int]:
    if not FLAGS['verbosity'].present:
      logging.set_verbosity(logging.WARNING)
    logs.divert(None, verbose())  # The libraries' reports: --verbose only.
    return main(argv)

  app.run(quiet_main, flags_parser=flags_parser)


def call(main: Callable[[list[str]], Optional[int]], args: Sequence[str],
         flags_parser: Callable[[list[str]], list[str]] = parse) -> int:
  """Runs a command in this process as `python -m` would with these
  arguments (without the program's name) and returns its exit status.
  Every flag starts at its default, and is back at it afterwards."""
  FLAGS.unparse_flags()
  try:
    status = main(flags_parser([main.__module__, *args]))
  except SystemExit as e:
    status = e.code
  finally:
    FLAGS.unparse_flags()
  return 0 if status is None else status
