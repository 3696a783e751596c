"""The one kind of error the commands show as a single line.

A `UserError` is a problem with what the user gave (a config value, a
workdir, a data set, a file) that its message explains; `python -m
ae_research.main`, `apply` and `codec` print it without a traceback. Any
other exception is a bug and shows its traceback.
"""


class UserError(Exception):
  """A problem with the user's input, explained by the message."""


class DataError(UserError, ValueError):
  """A data set that cannot be opened or used as asked."""
