"""One writer per workdir: a second launch stops naming the first; a killed
holder does not block the next run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from ae_research import claim, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_for_claim(workdir: str, proc: subprocess.Popen, seconds: float = 120):
  """Until `proc` has written its claim to workdir/writer.lock."""
  path = os.path.join(workdir, claim.FILENAME)
  deadline = time.monotonic() + seconds
  while time.monotonic() < deadline:
    if proc.poll() is not None:
      raise AssertionError(f'the holder exited ({proc.returncode}): '
                           f'{proc.stdout.read() if proc.stdout else ""}')
    if os.path.exists(path) and os.path.getsize(path) > 0:
      return
    time.sleep(0.1)
  raise AssertionError(f'no claim in {path} after {seconds} s')


def _kill(proc: subprocess.Popen) -> None:
  proc.kill()
  proc.wait(timeout=60)


def test_a_claim_is_refused_while_held_and_free_once_released(tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  caplog.set_level('WARNING')
  held = claim.hold(workdir)
  with pytest.raises(claim.WorkdirHeld) as e:
    claim.hold(workdir)
  message = str(e.value)
  assert f'process {os.getpid()} on ' in message and 'another --workdir' in message
  held.release()
  with claim.hold(workdir) as again:  # Released cleanly: no stale claim.
    assert again.held
  assert 'took over' not in caplog.text
  assert os.path.getsize(os.path.join(workdir, claim.FILENAME)) == 0


@pytest.mark.slow
def test_a_second_launch_stops_before_any_work_naming_the_first(
    smoke_config, data_dir, tmp_path):
  workdir = str(tmp_path / 'run')
  steps = 100_000  # The first launch is still training when the second comes.
  first = subprocess.Popen(
      [sys.executable, '-m', 'ae_research.main', '--config=configs/colorize.py:smoke',
       f'--workdir={workdir}', f'--config.data_dir={data_dir}',
       '--config.shapes.num_train=128', '--config.shapes.num_test=40',
       '--config.num_eval_examples=40', f'--config.num_train_steps={steps}'],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for_claim(workdir, first)
    smoke_config.num_train_steps = steps
    with pytest.raises(claim.WorkdirHeld, match=f'process {first.pid} on '):
      train.train_and_evaluate(smoke_config, workdir)
    assert first.poll() is None  # The first run goes on.
  finally:
    _kill(first)


@pytest.mark.slow
def test_a_killed_holder_does_not_block_the_next_run(smoke_config, tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  holder = subprocess.Popen(
      [sys.executable, '-c', 'import sys, time\nfrom ae_research import claim\n'
       'claim.hold(sys.argv[1])\ntime.sleep(600)', workdir],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    _wait_for_claim(workdir, holder)
    with pytest.raises(claim.WorkdirHeld, match=f'process {holder.pid} on '):
      claim.hold(workdir)
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
  caplog.set_level('WARNING')
  smoke_config.num_train_steps = 4
  smoke_config.optimizer.warmup_steps = 2
  train.train_and_evaluate(smoke_config, workdir)
  assert f'took over the claim of a run that ended without releasing it (process {holder.pid} ' in caplog.text
  assert os.path.exists(os.path.join(workdir, 'metrics.json'))
  assert os.path.getsize(os.path.join(workdir, claim.FILENAME)) == 0  # Released.
