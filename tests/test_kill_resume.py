"""Killed for real (`ae_research.kill_resume`, a short run of what
benchmarks/kill_resume.py runs): a training killed with SIGKILL inside an
asynchronous checkpoint save and started again with the same command ends
bit-identical to an uninterrupted run. And the parts it is made of: the
phases read from a run's log, the comparison and the summary. A run of two
processes, one of them killed: the other stops within a minute, and the
rerun ends bit-identical to an uninterrupted run of two."""

import os
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from ae_research import kill_resume, parallel
from launch import processes

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_phase_of_a_run_is_read_from_its_log():
  log = ['I0101 train.py] Training batches made on the host (grain, 2 threads).',
         'step 4: loss 0.1', 'Evaluating step 8.', 'eval step 8 (0.1 min): psnr 20',
         'step 12: loss 0.1', 'Final report: scoring step 24 beside the baseline.',
         'eval step 24 (0.2 min): psnr 21']
  phases, phase = [], 'startup'
  for line in log:
    phase = kill_resume.next_phase(phase, line)
    phases.append(phase)
  assert phases == ['training', 'training', 'evaluation', 'training', 'training',
                    'final report', 'final report']


def test_a_launch_keeps_its_log_and_exit_status():
  script = 'print("Evaluating step 8."); raise SystemExit(3)'
  launch = kill_resume.Launch([sys.executable, '-c', script], dict(os.environ))
  assert launch.finish() == 3 and not launch.running()
  assert launch.lines == ['Evaluating step 8.\n'] and launch.phase == 'evaluation'


def test_states_are_compared_bit_for_bit_and_summarized():
  a = [np.zeros(3, np.float32), np.ones((2, 2), np.int32)]
  assert kill_resume.same(a, [x.copy() for x in a])
  b = [a[0].copy(), a[1].copy()]
  b[0][1] = np.float32(1e-30)
  assert not kill_resume.same(a, b)
  assert not kill_resume.same(a, [a[0], a[1].astype(np.int64)])
  assert not kill_resume.same(a, a[:1])
  results = {'identical': 1, 'runs': 2, 'failed': [('w/1', 'the last start exited '
                                                     'with 1', 'Traceback...')],
             'kills': [kill_resume.Kill('save', 3.0, 'inside the save of step 6'),
                       kill_resume.Kill('any', 1.0, 'startup'),
                       kill_resume.Kill('save', 4.0, 'inside the save of step 9')]}
  text = kill_resume.summary('SIGKILL', results)
  assert text.startswith('SIGKILL: 1/2 runs bit-identical; 3 kills: 2 inside a save, '
                         '1 startup')
  assert 'did not resume: w/1: the last start exited with 1' in text


@pytest.mark.slow
def test_killed_inside_a_save_resumes_bit_identical(tmp_path):
  root = str(tmp_path)
  cmd = kill_resume.command(root, 12, PROJECT)
  env = kill_resume.environment(root, PROJECT)
  config, reference, duration = kill_resume.reference_run(root, cmd, env,
                                                          timed=False)
  assert reference[0] == 12
  results = kill_resume.run_series(
      root, cmd, env, signal.SIGKILL, runs=1, plans=['save'], weights=[1.0],
      seed=0, reference=reference, duration=duration, config=config,
      max_kills=2, save_delay=0.0)
  assert not results['failed'], results['failed']
  assert results['identical'] == 1
  landed = [k.landed for k in results['kills']]
  assert any(w.startswith('inside the save of step') for w in landed), landed
  summary = kill_resume.summary('SIGKILL', results)
  assert summary.startswith('SIGKILL: 1/1 runs bit-identical')


@pytest.mark.slow
def test_one_of_two_processes_killed_the_other_stops_and_the_rerun_is_bit_identical(
    tmp_path):
  """The CI case of `benchmarks/kill_resume.py --processes=2`: plain
  processes with a coordinator on localhost, one SIGKILLed while training."""
  root = str(tmp_path)
  cmd = kill_resume.command(root, 12, PROJECT)
  env = kill_resume.environment(root, PROJECT)
  config, reference, duration = kill_resume.reference_run(root, cmd, env, timed=False,
                                                          processes=2)
  results = kill_resume.run_series(
      root, cmd, env, signal.SIGKILL, runs=1, plans=['training'], weights=[1.0],
      seed=0, reference=reference, duration=duration, config=config, max_kills=1,
      processes=2, stop_limit=60.0)
  assert not results['failed'], results['failed']
  assert results['identical'] == 1
  (kill,) = results['kills']
  ((other, seconds, rc, said),) = kill.stops
  assert other == 1 - kill.victim and seconds < 60
  how = kill_resume.how_it_stopped(kill.victim, rc, said)
  assert how is not None, (rc, said)
  if how == 'its line':
    assert said.startswith(f'error: process {other} of 2 stops at step ')
  assert '1/1 runs bit-identical' in kill_resume.summary('SIGKILL', results)


class _Client:
  """jax's distributed client as ProcessWatch sees it."""

  def __init__(self, answers):
    self.answers = list(answers)

  def get_live_nodes(self, everyone):
    answer = self.answers.pop(0) if self.answers else everyone
    if isinstance(answer, Exception):
      raise answer
    return {i: 0 for i in answer}


@pytest.mark.parametrize('answers,expected', [
    ([[0, 1], [0]], 'process 1 is lost (its heartbeats stopped)'),
    ([[0, 1], RuntimeError('UNAVAILABLE: Socket closed')],
     'the coordination service (process 0) is lost (UNAVAILABLE: Socket closed)'),
])
def test_the_process_watch_names_the_lost_process(answers, expected, monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  said = []
  stopped = threading.Event()
  def stop(cause):
    said.append(cause)
    stopped.set()
  watch = parallel.ProcessWatch(_Client(answers), poll_seconds=0.01, stop=stop).start()
  assert stopped.wait(10)
  watch.finished()
  assert said == [expected]


def test_a_finished_watch_says_nothing(monkeypatch):
  monkeypatch.setattr(jax, 'process_count', lambda: 2)
  said = []
  watch = parallel.ProcessWatch(_Client([]), poll_seconds=0.01, stop=said.append)
  watch.finished()
  watch.start()
  time.sleep(0.1)
  assert said == []


def test_each_local_process_is_told_its_place():
  envs = parallel.local_environments(3, 4321, base={'A': '1'}, gpus=['5', '6', '7'])
  assert [e[parallel.PROCESS_ID_VARIABLE] for e in envs] == ['0', '1', '2']
  assert {e[parallel.PROCESSES_VARIABLE] for e in envs} == {'3'}
  assert {e['JAX_COORDINATOR_ADDRESS'] for e in envs} == {'127.0.0.1:4321'}
  assert [e['CUDA_VISIBLE_DEVICES'] for e in envs] == ['5', '6', '7']
  assert all(e['A'] == '1' for e in envs)
  assert 'CUDA_VISIBLE_DEVICES' not in parallel.local_environments(2, 1, {}, ['0'])[0]
  assert processes.describe(-signal.SIGKILL) == 'ended by SIGKILL'
  assert processes.describe(parallel.LOST_EXIT) == 'stopped: another process was lost'


def test_the_launcher_waits_for_all_and_kills_one_that_does_not_stop(monkeypatch,
                                                                     tmp_path):
  monkeypatch.setattr(parallel, 'HEARTBEAT_SECONDS', 0)
  monkeypatch.setattr(processes, 'GRACE_SECONDS', 1)
  start = lambda code: subprocess.Popen([sys.executable, '-c', code])
  procs = [start('import os; os._exit(75)'), start('import time; time.sleep(60)'),
           start('raise SystemExit(0)')]
  said = []
  begun = time.monotonic()
  workdir = tmp_path / 'run'
  for step in ('6', '12', '15.orbax-checkpoint-tmp-1'):  # The last, cut short.
    (workdir / 'checkpoints' / step).mkdir(parents=True)
  assert processes.wait(procs, log=said.append, workdir=str(workdir)) == 75
  assert time.monotonic() - begun < 30
  assert said[0] == 'process 1 did not stop after another failed; killed'
  assert 'process 0: stopped: another process was lost' in said[-1]
  assert 'process 1: ended by SIGKILL' in said[-1]
  assert said[-1].endswith('it resumes from step 12, the newest checkpoint every '
                           'process completed')
