"""Killed for real (benchmarks/kill_resume.py, a short run): a training
killed with SIGKILL inside an asynchronous checkpoint save and started
again with the same command ends bit-identical to an uninterrupted run."""

import importlib.util
import os
import signal

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     'benchmarks', 'kill_resume.py')
_spec = importlib.util.spec_from_file_location('kill_resume', _PATH)
kill_resume = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kill_resume)


def test_killed_inside_a_save_resumes_bit_identical(tmp_path):
  root = str(tmp_path)
  cmd, env = kill_resume.command(root, steps=12), kill_resume.environment(root)
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
  summary = kill_resume._summary('SIGKILL', results)
  assert summary.startswith('SIGKILL: 1/1 runs bit-identical')
