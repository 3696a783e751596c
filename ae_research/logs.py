"""The libraries' own reports, kept off the terminal.

When a disk fills up, Orbax logs a traceback from each of its writer
threads, tensorstore's callbacks print "Event loop is closed" dozens of
times and tensorboardX's writer thread dies with its own traceback, all
before the one line in which a command says what happened and what to do.
`divert` sends those reports to a file instead, where a bug report can find
them, and leaves the terminal to this package's own lines:

  logs.divert('runs/x/details.log')   # training: the workdir's file
  logs.divert(None, verbose=True)     # a command's --verbose: as before

What is diverted: records of Python's logging (absl's too) made outside this
package, Python warnings, the exceptions that end a thread other than the
main one (`threading.excepthook`, and `sys.excepthook` when a library's C++
thread calls it), and the exceptions Python cannot raise
(`sys.unraisablehook`). The main thread's own uncaught exception is a bug
and still shows its traceback. The file is opened when there is something
to write and its folder exists (nothing is created for a run that never
starts); a file that cannot be written (the full disk itself) gives way to
one in the temporary folder, which `where()` names.
"""

import collections
import logging
import os
import sys
import tempfile
import threading
import traceback
from typing import Optional

FILENAME = 'details.log'  # In a training run's workdir.
_OURS = os.path.dirname(os.path.abspath(__file__)) + os.sep
_FORMAT = '%(asctime)s %(levelname)s %(pathname)s:%(lineno)d] %(message)s'


def ours(record: logging.LogRecord) -> bool:
  """A record made by this package's code."""
  return os.path.abspath(record.pathname).startswith(_OURS)


class _Sink:
  """The file the reports go to; see the module's docstring."""

  def __init__(self, path: Optional[str]):
    self.path = path  # None: reports wait in memory until `where`.
    self.failed = False  # The path could not be written (a full disk).
    self.fallback: Optional[str] = None  # The temporary file, once made.
    self.file = None
    self.pending: collections.deque = collections.deque(maxlen=5000)
    self.lock = threading.Lock()

  def _target(self) -> Optional[str]:
    if self.fallback is not None:
      return self.fallback
    if self.path is None or self.failed:
      return None
    # Not before the run has made its workdir: nothing for a run that never
    # starts.
    return self.path if os.path.isdir(os.path.dirname(self.path) or '.') else None

  def _drain(self) -> None:
    """What waits, into the file to write to now (called with the lock)."""
    target = self._target()
    if target is None:
      return
    try:
      if self.file is None or self.file.name != target:
        self._close()
        self.file = open(target, 'a', encoding='utf-8')  # pylint: disable=consider-using-with
      self.file.writelines(self.pending)
      self.file.flush()
      self.pending.clear()  # Only once written: a failed write keeps them.
    except OSError:
      self._close()
      if target == self.fallback:
        self.fallback = None
      self.failed = True

  def _close(self) -> None:
    if self.file is not None:
      try:
        self.file.close()
      except OSError:
        pass
      self.file = None

  def write(self, text: str) -> None:
    with self.lock:
      self.pending.append(text)
      self._drain()

  def where(self) -> Optional[str]:
    """The file holding the reports, if there were any: the one asked for,
    or (it could not be written, or there was none) one in the temporary
    folder, where the reports made after this call go too."""
    with self.lock:
      if self.fallback is None and not self.pending:
        return self.path if self.file is not None else None
      if self.fallback is None:
        try:
          fd, self.fallback = tempfile.mkstemp(prefix='ae_research-', suffix='.log')
          os.close(fd)
        except OSError:
          return None
      self._drain()
      return self.fallback


class _ToSink(logging.Handler):
  """Every record (of any logger) into the sink."""

  def __init__(self, sink: _Sink):
    super().__init__(logging.DEBUG)
    self.sink = sink
    self.setFormatter(logging.Formatter(_FORMAT))

  def emit(self, record: logging.LogRecord) -> None:
    try:
      self.sink.write(self.format(record) + '\n')
    except Exception:  # pylint: disable=broad-except
      pass  # Never "--- Logging error ---" on the terminal.

  def handleError(self, record: logging.LogRecord) -> None:
    pass


class _OursOnly(logging.Filter):
  """What the terminal's handler shows: this package's records."""

  def filter(self, record: logging.LogRecord) -> bool:
    return ours(record)


_state: dict = {}


def divert(path: Optional[str], verbose: bool = False) -> None:
  """Sends the libraries' reports to `path` (None: nowhere but `where()`'s
  temporary file) instead of the terminal; with `verbose`, to the terminal
  as well, as without this. Calling it again replaces the file."""
  undo()
  sink = _Sink(path)
  handler = _ToSink(sink)
  root = logging.getLogger()
  root.addHandler(handler)
  terminal = [h for h in root.handlers if h is not handler]
  only = _OursOnly()
  if not verbose:
    for h in terminal:
      h.addFilter(only)
  logging.captureWarnings(True)

  def report(text: str) -> None:
    sink.write(text)
    if verbose:
      sys.stderr.write(text)

  def thread_hook(args) -> None:
    if args.exc_type is SystemExit:
      return
    name = args.thread.name if args.thread is not None else '?'
    report(f'Exception in thread {name}:\n' + ''.join(traceback.format_exception(
        args.exc_type, args.exc_value, args.exc_traceback)))

  main_hook = sys.excepthook

  def except_hook(exc_type, value, tb) -> None:
    if threading.current_thread() is threading.main_thread():
      main_hook(exc_type, value, tb)  # A bug of the command: its traceback.
    else:
      report(f'Exception in thread {threading.current_thread().name}:\n'
             + ''.join(traceback.format_exception(exc_type, value, tb)))

  def unraisable_hook(unraisable) -> None:
    report(f'Exception ignored in: {unraisable.object!r}\n' + ''.join(
        traceback.format_exception(unraisable.exc_type, unraisable.exc_value,
                                   unraisable.exc_traceback)))

  _state.update(sink=sink, handler=handler, only=only, terminal=terminal, report=report,
                hooks=(threading.excepthook, sys.excepthook, sys.unraisablehook))
  threading.excepthook = thread_hook
  sys.excepthook = except_hook
  sys.unraisablehook = unraisable_hook


def detail(message: str) -> None:
  """A line of ours that belongs with the details (a second error met while
  stopping after the first, which the user's message is about): into the
  file (and, with --verbose, the terminal); a warning when not diverted."""
  if 'report' not in _state:
    logging.getLogger(__name__).warning('%s', message)
    return
  _state['report'](message + '\n')


def where() -> Optional[str]:
  """The file holding the libraries' reports since `divert`, if any were
  made (None otherwise)."""
  sink = _state.get('sink')
  return sink.where() if sink is not None else None


def pointer() -> str:
  """' (the libraries' reports: PATH)' to end an error line with, when
  there were any; else ''."""
  path = where()
  return f" (the libraries' own reports: {path})" if path else ''


def per_process(index: int) -> None:
  """Process `index` (> 0) of a multi-process run writes its own file:
  details.log becomes details.process<index>.log."""
  sink = _state.get('sink')
  if sink is not None and sink.path and index:
    with sink.lock:
      if sink.file is None and sink.fallback is None:
        root, ext = os.path.splitext(sink.path)
        sink.path = f'{root}.process{index}{ext}'


def undo() -> None:
  """Back to how it was before `divert`."""
  if not _state:
    return
  logging.getLogger().removeHandler(_state['handler'])
  for h in _state['terminal']:
    h.removeFilter(_state['only'])
  threading.excepthook, sys.excepthook, sys.unraisablehook = _state['hooks']
  logging.captureWarnings(False)
  with _state['sink'].lock:
    _state['sink']._close()  # pylint: disable=protected-access
  _state.clear()
