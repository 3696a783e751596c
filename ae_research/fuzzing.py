"""One harness for the fuzzers: inputs checked in worker subprocesses under a
watchdog, counted into a report.

  report = fuzzing.fuzz(target, inputs=10000, workers=2, time_limit=10)
  print(fuzzing.summary(report))

A target (`fuzz_aec.Target`, `fuzz_images.Target`) is a picklable object with

  make(index)     input `index`, the same on every call: an object with
                  `data` (bytes), `group` (its kind, a row of the report)
                  and `what` (how it was made, for a failure's report)
  check(input)    a Result: 'decoded' or 'refused' (the contract held),
                  'wrong' (it did not); an exception escaping is a crash
  start(folder)   (optional) once in each worker, before its first check,
                  with a folder of its own
  again(index)    the command that runs input `index` again, alone

The parent makes the target, pickles it and hands it to `workers`
subprocesses, then chunks of input indices. A worker answers one JSON line
per input: its outcome, seconds, and memory (its peak resident memory is
reset before each input, so the growth while checking it is measured). A
worker that goes quiet for longer than `time_limit` on an input is killed,
the input counted as a hang, and a new worker goes on from the next input;
a worker that dies counts its input as a crash. A Result may bound the
memory its input may take (`max_growth`): past it, it is wrong.
"""

import collections
import dataclasses
import json
import os
import pickle
import re
import resource
import selectors
import subprocess
import sys
import tempfile
import time
import traceback
from typing import Any, Callable, Optional, Union

OUTCOMES = ('decoded', 'refused', 'crash', 'hang', 'wrong')
FAILURES = ('crash', 'hang', 'wrong')
SABOTAGE = ('crash', 'hang', 'wrong', 'die')  # Inputs broken on purpose.
_CHECKED = ('decoded', 'refused', 'crash', 'wrong')  # What a target's check says.
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_MiB = 2**20


@dataclasses.dataclass
class Result:
  """What checking one input found."""
  outcome: str  # One of OUTCOMES.
  detail: str = ''  # The refusal's message, or what went wrong.
  facts: dict = dataclasses.field(default_factory=dict)  # {name: number}.
  max_growth: Optional[int] = None  # Bytes the worker may grow by on it.


def reason(message: str, words: int = 7) -> str:
  """The first words of a refusal, numbers, paths and ids masked: its kind."""
  message = re.sub(r'\bmodel [0-9a-f]{16}\b', 'model ID', message)
  message = re.sub(r'/\S+', 'PATH', message)
  message = re.sub(r'-?\d[\d,]*', 'N', message)
  return ' '.join(message.split()[:words])


# -- memory ------------------------------------------------------------------


def _status_kb(field: str, pid: str = 'self') -> Optional[int]:
  try:
    with open(f'/proc/{pid}/status') as f:
      for line in f:
        if line.startswith(field + ':'):
          return int(line.split()[1])
  except OSError:
    pass
  return None


def peak_memory_bytes(pid: str = 'self') -> int:
  """A process's peak resident memory (VmHWM: its own; ru_maxrss also counts
  the parent it was forked from), since its last reset; 0 if unknown."""
  kb = _status_kb('VmHWM', pid)
  if kb is None and pid == 'self':
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return (kb or 0) * 1024


def _reset_peak() -> bool:
  """VmHWM back to the resident memory now; False where it cannot be."""
  try:
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
  except OSError:
    return False
  return True


def check_one(target: Any, index: int, sabotage: str = '') -> dict:
  """Makes input `index` and checks it here: a message of its outcome ('o'),
  group ('g'), seconds ('s'), peak memory and growth in bytes ('p', 'm'),
  the refusal or what went wrong ('d'; a refusal's kind 'r', `reason`), how
  it was made ('w') and its facts ('f')."""
  case = target.make(index)
  measured = _reset_peak()
  before = (_status_kb('VmRSS') or 0) * 1024
  start = time.perf_counter()
  try:
    if sabotage == 'hang':
      time.sleep(10**6)
    if sabotage == 'die':
      os._exit(3)  # pylint: disable=protected-access
    if sabotage == 'crash':
      raise ZeroDivisionError('sabotaged')
    result = target.check(case)
  except Exception:  # pylint: disable=broad-except
    result = Result('crash', traceback.format_exc())
  if not isinstance(result, Result) or result.outcome not in _CHECKED:
    result = Result('crash', f'the target returned {result!r}, not a Result with '
                    f'an outcome of {_CHECKED}')
  seconds = time.perf_counter() - start
  peak = peak_memory_bytes()
  growth = max(0, peak - before) if measured else 0  # 0: not known.
  if sabotage == 'wrong':
    result = Result('wrong', 'sabotaged: counted as a wrong result')
  if (measured and result.max_growth is not None and growth > result.max_growth
      and result.outcome in ('decoded', 'refused')):
    result = Result('wrong', f'{result.outcome} only after the worker grew by '
                    f'{growth / _MiB:.0f} MiB (at most {result.max_growth / _MiB:.0f} '
                    f'MiB allowed): {result.detail}', result.facts)
  message = {'i': index, 'o': result.outcome, 'g': case.group, 's': seconds,
             'p': peak, 'm': growth}
  if measured and result.max_growth:  # How close it came to its bound.
    result.facts = {**(result.facts or {}), 'bound_used': growth / result.max_growth}
  if result.outcome == 'refused':
    message.update(d=result.detail, r=reason(result.detail))
  elif result.outcome != 'decoded':
    message.update(d=result.detail, w=case.what)
  if result.facts:
    message['f'] = result.facts
  return message


# -- the worker side -----------------------------------------------------------


def serve() -> None:
  """A worker: reads the path of the setup pickle, then 'START STOP' lines;
  writes a JSON line per input (check_one), and one at each chunk's end."""
  with open(sys.stdin.readline().strip(), 'rb') as f:
    setup = pickle.load(f)
  target, sabotage = setup['target'], setup['sabotage']
  if hasattr(target, 'start'):
    target.start(tempfile.mkdtemp(dir=setup['tmp']))
  if setup['memory_limit']:
    resource.setrlimit(resource.RLIMIT_AS,
                       (setup['memory_limit'], resource.RLIM_INFINITY))
  out = sys.stdout

  def send(message):
    out.write(json.dumps(message) + '\n')
    out.flush()

  send({'ready': peak_memory_bytes()})
  for line in sys.stdin:
    start, stop = map(int, line.split())
    for i in range(start, stop):
      send(check_one(target, i, sabotage.get(i, '')))
    send({'done': stop})


class _Worker:
  """A worker subprocess and the chunk of inputs it is on."""

  def __init__(self, tmp: str, number: int, env: dict):
    self.log_path = os.path.join(tmp, f'worker{number}.log')
    path = os.pathsep.join([_PACKAGE_ROOT] + [p for p in [env.get('PYTHONPATH')] if p])
    with open(self.log_path, 'ab') as log:
      self.proc = subprocess.Popen(
          [sys.executable, '-c', 'from ae_research import fuzzing; fuzzing.serve()'],
          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=tmp,
          env=dict(env, PYTHONPATH=path, PYTHONUNBUFFERED='1'))
    self.number = number
    self.buffer = b''
    self.ready = False
    self.started = self.last = time.monotonic()
    self.chunk: Optional[tuple[int, int]] = None
    self.next = 0  # The input in flight.

  def send(self, line: str) -> None:
    self.proc.stdin.write(f'{line}\n'.encode())
    self.proc.stdin.flush()

  def assign(self, start: int, stop: int) -> bool:
    """Hands it inputs start to stop - 1; False if it is gone."""
    try:
      self.send(f'{start} {stop}')
    except BrokenPipeError:
      return False
    self.chunk, self.next, self.last = (start, stop), start, time.monotonic()
    return True

  def busy(self) -> bool:
    """On an input of its chunk (not past its last)."""
    return self.chunk is not None and self.next < self.chunk[1]

  def lines(self) -> Optional[list[bytes]]:
    """Complete lines read now; None at the end of its output."""
    data = os.read(self.proc.stdout.fileno(), 1 << 16)
    if not data:
      return None
    self.buffer += data
    *done, self.buffer = self.buffer.split(b'\n')
    return done

  def log_tail(self, n: int = 3000) -> str:
    with open(self.log_path, 'rb') as f:
      return f.read()[-n:].decode(errors='replace')

  def stop(self, kill: bool = False) -> int:
    """Ends it: at once (kill), or after its chunk (its input closed)."""
    if kill and self.proc.poll() is None:
      self.proc.kill()
    for stream in (self.proc.stdin, self.proc.stdout):
      try:
        stream.close()
      except OSError:  # A pipe it no longer reads.
        pass
    return self.proc.wait()


# -- the report ----------------------------------------------------------------


@dataclasses.dataclass
class Tally:
  """The inputs of one group: counts by outcome, and their cost."""
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  seconds: float = 0.0  # Of the workers' time checking them.
  peak: int = 0  # Bytes: the largest resident memory of a worker on one.
  growth: tuple = (0, -1)  # (bytes, input): the most a worker grew by on one.
  slowest: tuple = (0.0, -1)  # (seconds, input).

  @property
  def inputs(self) -> int:
    return sum(self.counts.values())

  def merge(self, other: 'Tally') -> None:
    self.counts.update(other.counts)
    self.seconds += other.seconds
    self.peak = max(self.peak, other.peak)
    self.growth = max(self.growth, other.growth)
    self.slowest = max(self.slowest, other.slowest)


@dataclasses.dataclass
class Fact:
  """A number the inputs reported (e.g. the pixels a decoded file states)."""
  n: int = 0
  low: float = float('inf')
  high: float = float('-inf')
  high_index: int = -1  # The input of the highest.

  def add(self, value: float, index: int) -> None:
    self.n += 1
    self.low = min(self.low, value)
    if value > self.high:
      self.high, self.high_index = value, index


@dataclasses.dataclass
class Report:
  """What a run found."""
  groups: dict = dataclasses.field(default_factory=dict)  # {group: Tally}.
  reasons: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)  # Refusals by kind.
  facts: dict = dataclasses.field(default_factory=dict)  # {name: Fact}.
  # {'index', 'outcome', 'group', 'what', 'detail'}, in the order found.
  failures: list = dataclasses.field(default_factory=list)
  workers: int = 0
  restarts: int = 0
  worker_peak: int = 0  # Bytes.
  parent_peak: int = 0
  seconds: float = 0.0  # All of it.
  setup_seconds: float = 0.0  # The target made, the workers started.
  target: Any = None  # The parent's copy.

  def total(self) -> Tally:
    out = Tally()
    for tally in self.groups.values():
      out.merge(tally)
    return out

  def count(self, outcome: str) -> int:
    return sum(t.counts[outcome] for t in self.groups.values())

  @property
  def inputs(self) -> int:
    return sum(t.inputs for t in self.groups.values())

  @property
  def failed(self) -> bool:
    return bool(self.failures)

  @property
  def rate(self) -> float:
    """Inputs a second, after the setup."""
    return self.inputs / max(self.seconds - self.setup_seconds, 1e-9)

  def failed_at(self, outcome: str) -> list[int]:
    """The inputs of one kind of failure, in order."""
    return sorted(f['index'] for f in self.failures if f['outcome'] == outcome)

  def add(self, message: dict) -> None:
    """Counts one input's message (check_one's)."""
    i, outcome = message['i'], message['o']
    tally = self.groups.setdefault(message['g'], Tally())
    tally.counts[outcome] += 1
    tally.seconds += message.get('s', 0.0)
    tally.peak = max(tally.peak, message.get('p', 0))
    tally.growth = max(tally.growth, (message.get('m', 0), i))
    tally.slowest = max(tally.slowest, (message.get('s', 0.0), i))
    self.worker_peak = max(self.worker_peak, message.get('p', 0))
    for name, value in message.get('f', {}).items():
      self.facts.setdefault(name, Fact()).add(value, i)
    if outcome == 'refused':
      self.reasons[message['r']] += 1
    elif outcome in FAILURES:
      self.failures.append({'index': i, 'outcome': outcome, 'group': message['g'],
                            'what': message['w'], 'detail': message['d']})


def duration(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}'


def progress(report: Report, inputs: int) -> str:
  eta = (inputs - report.inputs) / max(report.rate, 1e-9)
  return (f'{report.inputs:,}/{inputs:,} inputs ({100 * report.inputs / inputs:.1f}%) '
          f'in {duration(report.seconds)}, {report.rate:,.0f}/s, ETA {duration(eta)}: '
          + ', '.join(f'{report.count(o):,} {o}' for o in OUTCOMES))


def table(report: Report, rows: Optional[dict[str, list[str]]] = None,
          name: str = 'group') -> str:
  """Outcomes by group (or by `rows`, {row: its groups}), then all: inputs,
  each outcome, inputs a second of a worker's time, the most resident memory
  of a worker on one input and the most it grew by on one."""
  rows = rows or {g: [g] for g in sorted(report.groups)}
  header = (name, 'inputs') + OUTCOMES + ('inputs/s', 'peak MiB', 'growth MiB')
  lines = []
  for row, groups in list(rows.items()) + [('all', list(report.groups))]:
    t = Tally()
    for g in groups:
      t.merge(report.groups.get(g, Tally()))
    lines.append((row, f'{t.inputs:,}', *(f'{t.counts[o]:,}' for o in OUTCOMES),
                  f'{t.inputs / max(t.seconds, 1e-9):,.0f}', f'{t.peak / _MiB:,.0f}',
                  f'{t.growth[0] / _MiB:,.1f}'))
  widths = [max(len(r[k]) for r in lines + [header]) for k in range(len(header))]
  return '\n'.join('  '.join(v.rjust(w) if k else v.ljust(w)
                             for k, (v, w) in enumerate(zip(r, widths)))
                   for r in [header] + lines)


def summary(report: Report, show: int = 3, rows: Optional[dict] = None,
            name: str = 'group') -> str:
  """The harness's part of a report: the table, refusals by kind, failures,
  time and memory, then the first `show` failures of each kind in full."""
  total = report.total()
  lines = [table(report, rows, name), 'refused, by the first words of the message:']
  lines += [f'  {n:>11,}  {key}' for key, n in report.reasons.most_common()]
  for outcome, label in zip(FAILURES, ('crashes:', 'hangs:', 'wrong results:')):
    found = report.failed_at(outcome)
    lines.append(f'{label:<14} {len(found)}' +
                 (f' (inputs {", ".join(map(str, found[:20]))})' if found else ''))
  lines += [
      f'time:          {duration(report.seconds)} ({report.seconds:,.1f} s, of which '
      f'{report.setup_seconds:.1f} s setup), {report.rate:,.0f} inputs/s with '
      f'{report.workers} workers ({report.restarts} restarted); inputs/s in the '
      'table: of one worker\'s time checking',
      f'slowest input: {total.slowest[1]} ({total.slowest[0]:.2f} s); most memory: '
      f'input {total.growth[1]} (its worker grew by {total.growth[0] / _MiB:,.0f} MiB)',
      f'peak memory:   {report.worker_peak / _MiB:,.0f} MiB (resident, of a worker), '
      f'{report.parent_peak / _MiB:,.0f} MiB (of the parent)',
  ]
  for outcome in FAILURES:
    for item in sorted((f for f in report.failures if f['outcome'] == outcome),
                       key=lambda f: f['index'])[:show]:
      i = item['index']
      lines += [f'--- {outcome} at input {i} ({item["group"]}: {item["what"]})',
                f'    again: {report.target.again(i)}' if report.target else '',
                item['detail']]
  return '\n'.join(line for line in lines if line)


# -- the parent side ---------------------------------------------------------------


class _Pool:
  """The workers, the chunks left, and what they reported."""

  def __init__(self, tmp: str, workers: int, indices: range, chunk: int,
               report: Report, env: dict):
    self.tmp, self.report, self.env = tmp, report, env
    self.setup_path: Optional[str] = None
    self.target = None
    self.pending = collections.deque(indices[i:i + chunk]
                                     for i in range(0, len(indices), chunk))
    self.selector = selectors.DefaultSelector()
    self.workers = [self._start(n) for n in range(workers)]

  def _start(self, number: int) -> _Worker:
    worker = _Worker(self.tmp, number, self.env)
    self.selector.register(worker.proc.stdout, selectors.EVENT_READ, worker)
    if self.setup_path:
      worker.send(self.setup_path)
    return worker

  def set_up(self, path: str, target: Any) -> None:
    """Hands the workers the setup."""
    self.setup_path, self.target = path, target
    for worker in self.workers:
      try:
        worker.send(path)
      except BrokenPipeError:  # Failed to start: its end is read in step.
        pass

  def _replace(self, worker: _Worker, kill: bool) -> None:
    """A new worker in its place, on the rest of its chunk after the input
    in flight."""
    self.selector.unregister(worker.proc.stdout)
    worker.stop(kill=kill)
    if worker.chunk and worker.next + 1 < worker.chunk[1]:
      self.pending.appendleft(range(worker.next + 1, worker.chunk[1]))
    self.workers[self.workers.index(worker)] = self._start(worker.number)
    self.report.restarts += 1

  def _lost(self, worker: _Worker, outcome: str, detail: str) -> None:
    case = self.target.make(worker.next)
    self.report.add({'i': worker.next, 'o': outcome, 'g': case.group,
                     'w': case.what, 'd': detail})

  def running(self) -> bool:
    return bool(self.pending) or any(w.chunk for w in self.workers)

  def step(self, time_limit: float, startup_limit: float,
           log: Callable[[str], None]) -> None:
    """Hands out chunks, reads what the workers say (half a second at most),
    and replaces a worker that died or hung."""
    for worker in self.workers:
      if worker.ready and worker.chunk is None and self.pending:
        chunk = self.pending.popleft()
        if not worker.assign(chunk.start, chunk.stop):  # Gone: read below.
          self.pending.appendleft(chunk)
    for key, _ in self.selector.select(timeout=0.5):
      worker = key.data
      worker.last = time.monotonic()
      lines = worker.lines()
      if lines is None:  # It died.
        code = worker.proc.wait()
        if not worker.ready:
          raise RuntimeError(f'a fuzz worker failed to start (exit status {code}); '
                             f'its log ends:\n{worker.log_tail()}')
        if worker.busy():
          self._lost(worker, 'crash', f'the worker process died (exit status {code}); '
                     f'its log ends:\n{worker.log_tail()}')
        self._replace(worker, kill=False)
        continue
      for line in lines:
        message = json.loads(line)
        if 'ready' in message:
          worker.ready = True
          self.report.worker_peak = max(self.report.worker_peak, message['ready'])
        elif 'done' in message:
          worker.chunk = None
        else:
          worker.next = message['i'] + 1
          self.report.add(message)
    now = time.monotonic()
    for worker in list(self.workers):
      if not worker.ready and self.setup_path and now - worker.started > startup_limit:
        raise RuntimeError(f'a fuzz worker was not ready after {startup_limit:.0f} s; '
                           f'its log ends:\n{worker.log_tail()}')
      if worker.busy() and now - worker.last > time_limit:
        self._lost(worker, 'hang', f'still running after {time_limit:g} s')
        case = self.target.make(worker.next)
        log(f'hang: input {worker.next} ({case.group}: {case.what}) ran past '
            f'{time_limit:g} s; its worker is killed and a new one goes on from the '
            'next input')
        self._replace(worker, kill=True)

  def close(self) -> None:
    for worker in self.workers:
      worker.stop(kill=worker.chunk is not None)
    self.selector.close()


def fuzz(target: Union[Any, Callable[[], Any]], inputs: int, first: int = 0,
         workers: int = 2, time_limit: float = 10.0, chunk: int = 100,
         memory_limit: int = 0, progress_every: float = 30.0,
         log: Callable[[str], None] = print, sabotage: Optional[dict[int, str]] = None,
         environment: Optional[Callable[[str], dict]] = None,
         startup_limit: float = 300.0) -> Report:
  """Checks inputs first to first + inputs - 1 of `target` in `workers`
  subprocesses.

  Args:
    target: the target, or a function that makes it (called while the
      workers start, which takes seconds).
    inputs: how many inputs.
    first: the first input's index.
    workers: worker subprocesses.
    time_limit: seconds an input may run before it counts as a hang.
    chunk: inputs handed to a worker at a time.
    memory_limit: a worker's address space in bytes (0: no limit).
    progress_every: seconds between progress lines.
    log: where progress lines go.
    sabotage: {index: one of SABOTAGE}: inputs broken on purpose, to test
      this harness.
    environment: gives the workers' environment variables beyond this
      process's, from the run's temporary folder (e.g. a cache they share).
    startup_limit: seconds a worker may take to start, once set up.

  Returns:
    The Report.
  """
  bad = {i: s for i, s in (sabotage or {}).items() if s not in SABOTAGE}
  if bad:
    raise ValueError(f'sabotage {bad}: expected one of {SABOTAGE}')
  begin = time.monotonic()
  report = Report(workers=workers)
  with tempfile.TemporaryDirectory(prefix='fuzz_') as tmp:
    # The workers import while the target is made.
    env = dict(os.environ, **(environment(tmp) if environment else {}))
    pool = _Pool(tmp, workers, range(first, first + inputs), chunk, report, env)
    try:
      target = target if hasattr(target, 'check') else target()
      report.target = target
      path = os.path.join(tmp, 'setup.pickle')
      with open(path, 'wb') as f:
        pickle.dump({'target': target, 'sabotage': dict(sabotage or {}), 'tmp': tmp,
                     'memory_limit': memory_limit}, f)
      pool.set_up(path, target)
      while not all(w.ready for w in pool.workers):
        pool.step(time_limit, startup_limit, log)
      report.setup_seconds = time.monotonic() - begin
      next_progress = time.monotonic() + progress_every
      while pool.running():
        pool.step(time_limit, startup_limit, log)
        now = time.monotonic()
        if now >= next_progress:
          next_progress = now + progress_every
          report.seconds = now - begin
          log(progress(report, inputs))
    finally:
      pool.close()
  report.parent_peak = peak_memory_bytes()
  report.seconds = time.monotonic() - begin
  return report


def reproduce(target: Any, index: int, save: str = '') -> int:
  """Makes input `index` again and checks it in this process; prints what
  happened (a crash with its whole traceback), keeps its file in `save` if
  given. 1 if it failed."""
  case = target.make(index)
  print(f'input {index}: {case.group}: {case.what}')
  print(f'{len(case.data)} bytes: {case.data[:64].hex()}'
        f'{"..." if len(case.data) > 64 else ""}')
  if save:
    os.makedirs(save, exist_ok=True)
    path = os.path.join(save, f'{index}{getattr(case, "extension", "")}')
    with open(path, 'wb') as f:
      f.write(case.data)
    print(f'kept in {path}')
  with tempfile.TemporaryDirectory() as folder:
    if hasattr(target, 'start'):
      target.start(folder)
    message = check_one(target, index)
  print(f'{message["o"]}: {message.get("d") or message.get("f") or ""}')
  return 1 if message['o'] in FAILURES else 0
