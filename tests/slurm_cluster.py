"""A real single-node SLURM cluster for the tests, on loopback.

  cluster = LocalSlurm(directory)   # installs slurm-wlm and munge if missing
  cluster.start()                   # munged, slurmctld, slurmd
  subprocess.run(['sbatch', ...], env=cluster.env)
  cluster.stop()                    # by their PIDs

Everything (config, keys, sockets, spool, logs) lives in `directory`, and
the daemons listen on 127.0.0.1 on ports picked free, so nothing of the
machine's own setup is touched. Installing needs root and Debian's packages.
"""

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time

PACKAGES = ('slurm-wlm', 'munge')
LOCK = '/tmp/ae_research_slurm_cluster.lock'
DAEMONS = ('munged', 'slurmctld', 'slurmd')


class Unavailable(RuntimeError):
  """SLURM is not installed and cannot be installed here."""


def _installed() -> bool:
  return all(shutil.which(d) for d in DAEMONS + ('sbatch', 'srun', 'scontrol'))


def unavailable() -> str | None:
  """Why this machine cannot run the cluster, or None where SLURM is
  installed or install() can install it."""
  if _installed() or (os.geteuid() == 0 and shutil.which('apt-get')):
    return None
  return ('SLURM is not installed and installing it needs root and apt-get: '
          'apt-get install slurm-wlm munge')


def install() -> None:
  """Debian's slurm-wlm and munge, unless they are installed (one test
  process at a time installs)."""
  if _installed():
    return
  why = unavailable()
  if why:
    raise Unavailable(why)
  env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
  with open('/tmp/ae_research_slurm_install.lock', 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if _installed():
      return
    for cmd in (['apt-get', 'update', '-qq'],
                ['apt-get', 'install', '-y', '-qq', '-o', 'DPkg::Lock::Timeout=600',
                 *PACKAGES]):
      result = subprocess.run(cmd, env=env, capture_output=True, text=True)
      if result.returncode:
        raise Unavailable(f'{" ".join(cmd)} failed:\n{result.stderr[-2000:]}')


def _free_ports(n: int) -> list[int]:
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _steps_alive(job_id: str) -> bool:
  """Whether a slurmstepd of the job runs (its title: 'slurmstepd: [JOB.STEP]')."""
  title = f'slurmstepd: [{job_id}.'.encode()
  for pid in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{pid}/cmdline', 'rb') as f:
        if f.read().startswith(title):
          return True
    except OSError:
      continue
  return False


class LocalSlurm:
  """munged + slurmctld + slurmd for this machine, all state in `directory`."""

  def __init__(self, directory: str, cpus: int | None = None):
    self.dir = os.path.abspath(directory)
    self.cpus = cpus or os.cpu_count() or 1
    self.node = socket.gethostname()
    self.pids: dict[str, int] = {}
    self.conf = os.path.join(self.dir, 'slurm.conf')
    self.munge_socket = os.path.join(self.dir, 'munge', 'munge.socket')
    self.env = dict(os.environ, SLURM_CONF=self.conf)
    self._lock = None

  def _path(self, *parts) -> str:
    path = os.path.join(self.dir, *parts)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path

  def _write_config(self) -> None:
    ctld_port, slurmd_port = _free_ports(2)
    memory_mb = os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**20
    for d in ('spool', 'state'):
      os.makedirs(os.path.join(self.dir, d), exist_ok=True)
    lines = [
        'ClusterName=ae',
        f'SlurmctldHost={self.node}(127.0.0.1)',
        f'SlurmctldPort={ctld_port}', f'SlurmdPort={slurmd_port}',
        'SlurmUser=root', 'SlurmdUser=root',
        'AuthType=auth/munge', 'CredType=cred/munge',
        f'AuthInfo=socket={self.munge_socket}',
        f'StateSaveLocation={self.dir}/state',
        f'SlurmdSpoolDir={self.dir}/spool',
        f'SlurmctldPidFile={self.dir}/slurmctld.pid',
        f'SlurmdPidFile={self.dir}/slurmd.pid',
        f'SlurmctldLogFile={self.dir}/slurmctld.log',
        f'SlurmdLogFile={self.dir}/slurmd.log',
        'ProctrackType=proctrack/linuxproc', 'TaskPlugin=task/none',
        'JobAcctGatherType=jobacct_gather/none',
        'AccountingStorageType=accounting_storage/none',
        'SchedulerType=sched/backfill',
        'SelectType=select/cons_tres', 'SelectTypeParameters=CR_CPU',
        'MpiDefault=none', 'ReturnToService=2', 'KillWait=30',
        'SlurmctldTimeout=30', 'SlurmdTimeout=30', 'InactiveLimit=0',
        'MinJobAge=3600', f'FirstJobId={1000 + os.getpid() % 50000}',
        f'NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} '
        f'RealMemory={memory_mb} State=UNKNOWN',
        f'PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE '
        'State=UP OverSubscribe=NO',
    ]
    with open(self.conf, 'w') as f:
      f.write('\n'.join(lines) + '\n')

  def _start(self, name: str, cmd: list[str], pid_file: str) -> None:
    log = open(self._path('logs', f'{name}.out'), 'w')  # pylint: disable=consider-using-with
    subprocess.run(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                   check=True)
    for _ in range(100):
      if os.path.exists(pid_file):
        with open(pid_file) as f:
          text = f.read().strip()
        if text:
          self.pids[name] = int(text)
          return
      time.sleep(0.1)
    raise RuntimeError(f'{name} did not start; see {self.dir}/logs and *.log')

  def start(self, timeout: float = 60.0) -> None:
    install()
    # One cluster at a time on this machine (test processes run side by
    # side): JAX derives its coordinator port from the job id, and two
    # clusters would number their jobs alike.
    self._lock = open(LOCK, 'w')  # pylint: disable=consider-using-with
    fcntl.flock(self._lock, fcntl.LOCK_EX)
    os.makedirs(self.dir, exist_ok=True)
    key = self._path('munge', 'munge.key')
    with open(key, 'wb') as f:
      f.write(os.urandom(128))
    os.chmod(key, 0o600)
    os.chmod(os.path.dirname(key), 0o700)
    self._start('munged', [
        'munged', '--force', f'--key-file={key}', f'--socket={self.munge_socket}',
        f'--pid-file={self.dir}/munge/munged.pid',
        f'--log-file={self.dir}/munge/munged.log',
        f'--seed-file={self.dir}/munge/munged.seed'], f'{self.dir}/munge/munged.pid')
    self._write_config()
    self._start('slurmctld', ['slurmctld', '-f', self.conf],
                f'{self.dir}/slurmctld.pid')
    self._start('slurmd', ['slurmd', '-f', self.conf, '-N', self.node],
                f'{self.dir}/slurmd.pid')
    deadline = time.time() + timeout
    while time.time() < deadline:
      out = subprocess.run(['sinfo', '-h', '-o', '%t'], env=self.env,
                           capture_output=True, text=True).stdout.strip()
      if out in ('idle', 'mix', 'alloc'):
        return
      time.sleep(0.5)
    raise RuntimeError(f'the node did not come up (sinfo: {out!r}); see '
                       f'{self.dir}/slurmctld.log and slurmd.log')

  def stop(self) -> None:
    self._stop_daemons()
    if self._lock is not None:
      self._lock.close()  # Releases the lock.
      self._lock = None

  def _stop_daemons(self) -> None:
    for name in reversed(DAEMONS):
      pid = self.pids.pop(name, None)
      if pid is None:
        continue
      try:
        os.kill(pid, signal.SIGTERM)
      except ProcessLookupError:
        continue
      for _ in range(100):
        try:
          os.kill(pid, 0)
        except ProcessLookupError:
          break
        time.sleep(0.1)
      else:
        os.kill(pid, signal.SIGKILL)

  def _job(self, job_id: str) -> dict[str, str]:
    out = subprocess.run(['scontrol', '-o', 'show', 'job', job_id], env=self.env,
                         capture_output=True, text=True).stdout
    return dict(f.split('=', 1) for f in out.split() if '=' in f)

  def requeue(self, job_id: str, timeout: float = 60.0) -> None:
    """Requeues a job that has ended, as SLURM does a preempted one, and
    returns once it is queued again. SLURM holds a requeued job for two
    minutes; it is released at once."""
    deadline = time.time() + timeout
    # Relaunched while a step of its last run is still being cleaned up, the
    # job would fail at once ("credential revoked"): SLURM's two minutes
    # cover that, the test waits for it instead.
    while _steps_alive(job_id):
      if time.time() > deadline:
        raise TimeoutError(f'the steps of job {job_id} did not end')
      time.sleep(0.2)
    restarts = int(self._job(job_id).get('Restarts', 0))
    subprocess.run(['scontrol', 'requeue', job_id], env=self.env, check=True)
    while int(self._job(job_id).get('Restarts', 0)) == restarts:
      if time.time() > deadline:
        raise TimeoutError(f'job {job_id} was not requeued')
      time.sleep(0.2)
    subprocess.run(['scontrol', 'update', f'JobId={job_id}', 'StartTime=now'],
                   env=self.env, check=True)

  def wait(self, job_id: str, timeout: float = 600.0) -> dict[str, str]:
    """Waits until every task of a job has left the queue; returns
    {job id: state} from scontrol for each."""
    deadline = time.time() + timeout
    while time.time() < deadline:
      queued = subprocess.run(['squeue', '-h', '-j', job_id, '-o', '%i'],
                              env=self.env, capture_output=True, text=True).stdout
      if not queued.strip():
        break
      time.sleep(1)
    else:
      raise TimeoutError(f'job {job_id} still queued after {timeout} s')
    out = subprocess.run(['scontrol', '-o', 'show', 'job', job_id], env=self.env,
                         capture_output=True, text=True).stdout
    states = {}
    for line in out.splitlines():
      fields = dict(f.split('=', 1) for f in line.split() if '=' in f)
      key = fields.get('JobId', '')
      if 'ArrayTaskId' in fields:
        key = f'{fields.get("ArrayJobId")}_{fields["ArrayTaskId"]}'
      states[key] = fields.get('JobState', '?')
    return states
