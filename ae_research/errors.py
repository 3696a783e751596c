"""The one kind of error the commands show as a single line.

A `UserError` is a problem with what the user gave (a config value, a
workdir, a data set, a file) that its message explains; `python -m
ae_research.main`, `apply` and `codec` print it without a traceback. Any
other exception is a bug and shows its traceback. A write that fails
because the disk is full or the place is read-only becomes a
`StorageError` naming the file and the cause (`writing(path)`).
"""

import contextlib
import errno
import os
from typing import Optional


class UserError(Exception):
  """A problem with the user's input, explained by the message."""


class DataError(UserError, ValueError):
  """A data set that cannot be opened or used as asked."""


# The causes of a failed write that the user can fix: (errno, what it means).
STORAGE_ERRNOS = {
    errno.ENOSPC: 'no space left on the device',
    errno.EDQUOT: 'the disk quota is exceeded',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'operation not permitted',
    errno.EROFS: 'the file system is read-only',
}


class StorageError(UserError, OSError):
  """A file that could not be written: the disk is full, or the place is
  read-only or not ours."""


def storage_cause(e: BaseException) -> Optional[str]:
  """'no space left on the device (ENOSPC)' when `e` is a failed write the
  user can fix (also as orbax and tensorstore report it: a message with
  the OS's text or os_error_code), else None."""
  if isinstance(e, StorageError):
    return None
  code = e.errno if isinstance(e, OSError) else None
  if code not in STORAGE_ERRNOS:
    text = str(e)
    code = next((c for c in STORAGE_ERRNOS
                 if f"os_error_code='{c}'" in text or os.strerror(c) in text),
                None)
  if code is None:
    return None
  return f'{STORAGE_ERRNOS[code]} ({errno.errorcode[code]})'


def out_of_memory(e: BaseException) -> bool:
  """True for a MemoryError, and for an allocation that failed on an
  accelerator as XLA reports it (RESOURCE_EXHAUSTED)."""
  if isinstance(e, MemoryError):
    return True
  return (type(e).__name__ in ('XlaRuntimeError', 'JaxRuntimeError')
          and 'RESOURCE_EXHAUSTED' in str(e))


@contextlib.contextmanager
def writing(path: str, then: str = ''):
  """Turns a failed write of `path` that the user can fix into a
  StorageError naming the path, the cause and `then` (what is kept, what
  to do)."""
  try:
    yield
  except Exception as e:  # pylint: disable=broad-except
    cause = storage_cause(e)
    if cause is None:
      raise
    raise StorageError(f'cannot write {path}: {cause}' +
                       (f'. {then}' if then else '')) from e
