"""One writer per workdir: a training run claims its workdir while it writes it.

  claim = claim.hold('runs/x')    # WorkdirHeld if another live run holds it
  ...                             # write checkpoints, logs, metrics
  claim.release()

The claim is an exclusive advisory lock (`fcntl.flock`) on the file
`<workdir>/writer.lock`, held by an open file for as long as the run
writes. The file also records the holder (host, process id, since when, the
command), so a second run that finds the workdir held stops before any work
with a message naming the holder.

A holder that dies, even by SIGKILL, cannot keep the workdir: the kernel
drops its lock with its last file descriptor (on NFSv4 the server drops it
when the dead client's lease expires, a minute or two). A released claim
leaves the file empty, so a run that takes the lock and finds a holder
recorded knows that holder ended without releasing it (killed, or its node
lost): the claim was stale, and it says so in the log.

Only writers claim: evaluation (`--mode=eval`, which writes only its own
`eval_*` folder), `apply` and the codec read a workdir while a training
writes it. A run of several processes claims once, in process 0 (the one
that writes files; see `train._start`).

Where the file system refuses locks (some parallel file systems mount
without them), the run goes on unprotected, with a warning.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from typing import Any, Optional

from absl import logging

from ae_research import errors

FILENAME = 'writer.lock'


class WorkdirHeld(errors.UserError, RuntimeError):
  """Another live run writes this workdir."""


def _holder() -> dict[str, Any]:
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'since': datetime.datetime.now(datetime.timezone.utc).isoformat(
              timespec='seconds'),
          'command': ' '.join(sys.argv)[:500]}


def _read(fd: int) -> Optional[dict[str, Any]]:
  """The holder recorded in the open claim file; None if it records none
  (released, or a holder that has not written it yet)."""
  data = os.pread(fd, 4096, 0)
  if not data.strip():
    return None
  try:
    holder = json.loads(data)
  except ValueError:
    return {'host': '?', 'pid': '?', 'since': '?',
            'command': f'(unreadable claim: {data[:80]!r})'}
  return holder if isinstance(holder, dict) else None


def describe(holder: Optional[dict[str, Any]]) -> str:
  """'process 123 on node7 since 2026-...' for a recorded holder."""
  if holder is None:
    return 'a run that is just starting'
  return (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} "
          f"since {holder.get('since', '?')} ({holder.get('command', '?')})")


class Claim:
  """A held claim (or, on a file system without locks, none); `release()`
  it when the run stops writing, or let the process end."""

  def __init__(self, path: str, fd: Optional[int]):
    self.path = path
    self._fd = fd

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    """Empties the claim file (the mark of a clean release) and unlocks it."""
    if self._fd is None:
      return
    fd, self._fd = self._fd, None
    try:
      os.ftruncate(fd, 0)
    finally:
      os.close(fd)  # Closing the last descriptor drops the lock.

  def __enter__(self) -> 'Claim':
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def hold(workdir: str) -> Claim:
  """Claims `workdir` (created if missing) for this process; raises
  WorkdirHeld, naming the holder, if another live process holds it."""
  path = os.path.join(workdir, FILENAME)
  with errors.writing(path, 'A run writes its workdir; give it one where it '
                      'can write (copy this one there to resume it)'):
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      os.close(fd)  # No locks on this file system: go on without a claim.
      logging.warning('%s cannot be locked (%s): nothing stops a second run '
                      'from writing %s at the same time.', path, e, workdir)
      return Claim(path, None)
    holder = _read(fd)
    os.close(fd)
    pid = holder.get('pid', 'PID') if holder else 'PID'
    host = holder.get('host', 'its host') if holder else 'its host'
    raise WorkdirHeld(
        f'{workdir} is being written by another run: {describe(holder)}. '
        f'Wait for it to finish, stop it (kill {pid} on {host}; it keeps its '
        'last checkpoint) and launch again to resume, or use another '
        '--workdir. Evaluation (--mode=eval), apply and the codec may read '
        'the workdir meanwhile.') from None
  previous = _read(fd)
  if previous is not None:
    logging.warning('%s: took over the claim of a run that ended without '
                    'releasing it (%s); training goes on from its last '
                    'checkpoint, if it saved one.',
                    workdir, describe(previous))
  data = json.dumps(_holder()).encode()
  try:
    with errors.writing(path, 'Nothing else was written'):
      os.ftruncate(fd, 0)
      os.pwrite(fd, data, 0)
      os.fsync(fd)
  except errors.StorageError:
    os.close(fd)
    raise
  return Claim(path, fd)
