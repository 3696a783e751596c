"""The libraries' reports kept off the terminal (`ae_research.logs`): what
goes to the details file, what still reaches the terminal, and where the
reports go when the file cannot be written."""

import logging
import os
import sys
import threading
import warnings

import pytest

from ae_research import logs


@pytest.fixture
def diverted():
  yield logs.divert
  logs.undo()


def _library_record(message, level=logging.ERROR):
  """A record as a library outside the package makes it."""
  return logging.LogRecord('orbax', level, '/site-packages/orbax/checkpoint/x.py', 7,
                           message, None, None)


def _our_record(message):
  """A record as the package's training loop makes it."""
  path = os.path.join(os.path.dirname(logs.__file__), 'train.py')
  return logging.LogRecord('absl', logging.INFO, path, 7, message, None, None)


class _Terminal(logging.Handler):
  def __init__(self):
    super().__init__()
    self.seen = []

  def emit(self, record):
    self.seen.append(record.getMessage())


@pytest.fixture
def terminal():
  handler = _Terminal()
  logging.getLogger().addHandler(handler)
  yield handler
  logging.getLogger().removeHandler(handler)


def test_library_reports_go_to_the_file_ours_to_the_terminal(diverted, terminal, tmp_path):
  path = tmp_path / 'run' / logs.FILENAME
  diverted(str(path))
  logging.getLogger().handle(_library_record('a writer thread failed'))
  assert not path.exists()  # The run has not made its workdir yet.
  (tmp_path / 'run').mkdir()
  logging.getLogger().handle(_our_record('our own line'))
  thread = threading.Thread(target=lambda: 1 / 0, name='writer')
  thread.start()
  thread.join()
  with warnings.catch_warnings():
    warnings.simplefilter('always')
    warnings.warn('a library warning')
  logs.detail('While closing after an error: the second one')
  text = path.read_text()
  assert terminal.seen == ['our own line']
  for expected in ('a writer thread failed', 'Exception in thread writer',
                   'ZeroDivisionError', 'a library warning', 'the second one'):
    assert expected in text, expected
  assert logs.where() == str(path) and logs.pointer().endswith(f'{path})')


def test_verbose_shows_them_on_the_terminal_too(diverted, terminal, tmp_path, capsys):
  diverted(str(tmp_path / logs.FILENAME), verbose=True)
  logging.getLogger().handle(_library_record('a writer thread failed'))
  logs.detail('the second one')
  assert terminal.seen == ['a writer thread failed']
  assert 'the second one' in capsys.readouterr().err
  assert 'a writer thread failed' in (tmp_path / logs.FILENAME).read_text()


def test_an_unwritable_file_gives_way_to_a_temporary_one(diverted, terminal, tmp_path,
                                                       monkeypatch):
  path = tmp_path / logs.FILENAME
  diverted(str(path))
  logging.getLogger().handle(_library_record('first'))
  real_open = open
  def full(name, *args, **kwargs):  # The disk fills up.
    if str(name) == str(path):
      raise OSError(28, 'No space left on device')
    return real_open(name, *args, **kwargs)
  monkeypatch.setattr('builtins.open', full)
  logs._state['sink']._close()  # pylint: disable=protected-access
  logging.getLogger().handle(_library_record('second'))
  monkeypatch.undo()
  where = logs.where()
  assert where != str(path) and os.path.dirname(where) != str(tmp_path)
  logging.getLogger().handle(_library_record('third, after the message'))
  text = open(where).read()
  assert 'second' in text and 'third, after the message' in text
  assert 'first' in path.read_text() and terminal.seen == []
  os.remove(where)


def test_a_command_without_reports_names_no_file(diverted):
  diverted(None)
  assert logs.where() is None and logs.pointer() == ''
  logging.getLogger().handle(_library_record('dropped unless asked'))
  where = logs.where()  # Asked: a temporary file holds it.
  assert 'dropped unless asked' in open(where).read()
  os.remove(where)


def test_each_process_of_a_run_has_its_own_file(diverted, tmp_path):
  diverted(str(tmp_path / logs.FILENAME))
  logs.per_process(2)
  logging.getLogger().handle(_library_record('from process 2'))
  assert (tmp_path / 'details.process2.log').exists()
  assert not (tmp_path / logs.FILENAME).exists()


def test_the_main_threads_exception_is_still_a_traceback(diverted, capsys):
  diverted(None)
  try:
    raise KeyError('a bug')
  except KeyError:
    sys.excepthook(*sys.exc_info())
  assert "KeyError: 'a bug'" in capsys.readouterr().err


def test_undo_puts_everything_back(terminal, tmp_path):
  hooks = (threading.excepthook, sys.excepthook, sys.unraisablehook)
  logs.divert(str(tmp_path / logs.FILENAME))
  logs.undo()
  assert (threading.excepthook, sys.excepthook, sys.unraisablehook) == hooks
  logging.getLogger().handle(_library_record('seen again'))
  assert terminal.seen == ['seen again']
