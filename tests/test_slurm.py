"""Against a real SLURM (slurm-wlm and munge, installed by the fixture if
missing): a sweep as a job array, one run across two processes (srun), and
preemption by SIGTERM.

Each training process uses one CPU device (several per process deadlock
XLA:CPU's collectives), so these runs do not use the 8 devices the other
tests force.
"""

import json
import os
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from ae_research import checkpointing, datasets
from ae_research import workdir as workdir_lib
from configs import colorize

import slurm_cluster  # pylint: disable=g-bad-import-order

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Steps of the runs compared with one process: float32 sums in another order
# drift apart by about 1e-6 per step, so 1e-5 holds for a few tens of steps.
SHORT = 20
# Steps of the preempted run: long enough to signal it mid-way.
LONG = 120

pytestmark = [pytest.mark.slow, pytest.mark.cluster(
    'runs a sweep as a job array, a run across two processes and a preemption')]


@pytest.fixture(scope='module')
def cluster(tmp_path_factory):
  # A short path: munge's socket path must fit in a sockaddr.
  c = slurm_cluster.LocalSlurm(tmp_path_factory.mktemp('slurm'))
  try:
    c.start()
  except slurm_cluster.Unavailable as e:
    pytest.skip(f'needs a SLURM cluster (slurmctld): {e}')
  except Exception:
    c.stop()
    raise
  yield c
  c.stop()


@pytest.fixture(scope='module')
def env(cluster, tmp_path_factory):
  """The environment of the jobs: one CPU device per process, the test data
  made once, and the project importable from any folder."""
  data_dir = str(tmp_path_factory.mktemp('data'))
  config = _config(data_dir)
  datasets.get_source(config, 'train')
  datasets.get_source(config, 'test')
  e = dict(cluster.env, JAX_PLATFORMS='cpu', PYTHONPATH=ROOT, DATA_DIR=data_dir)
  flags = e.pop('XLA_FLAGS', '').replace('--xla_force_host_platform_device_count=8', '')
  if flags.strip():
    e['XLA_FLAGS'] = flags.strip()
  return e


def _config(data_dir):
  config = colorize.get_config('smoke')
  config.data_dir = data_dir
  config.shapes.num_train, config.shapes.num_test = 128, 40
  return config


def _train_flags(env, workdir, steps_):
  return [sys.executable, '-m', 'ae_research.main', '--config=configs/colorize.py:smoke',
          f'--workdir={workdir}', f'--config.data_dir={env["DATA_DIR"]}',
          '--config.shapes.num_train=128', '--config.shapes.num_test=40',
          '--config.num_eval_examples=16', f'--config.num_train_steps={steps_}',
          '--config.log_every_steps=5', '--config.eval_every_steps=20',
          '--config.checkpoint_every_steps=1000', '--config.async_checkpoints=False']


def _sbatch(cluster, env, script: str, tmp_path, name: str) -> str:
  path = tmp_path / f'{name}.sbatch'
  path.write_text('#!/bin/bash\n' + textwrap.dedent(script))
  result = subprocess.run(['sbatch', '--parsable', str(path)], env=env, cwd=ROOT,
                          capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  return result.stdout.strip()


def _params(workdir):
  config = workdir_lib.load_config(workdir)
  state, step = workdir_lib.restore_latest(config, workdir)
  return jax.tree.map(np.asarray, state.params), step


@pytest.fixture(scope='module')
def reference(env, tmp_path_factory):
  """One process, one device: the parameters of SHORT steps."""
  workdir = str(tmp_path_factory.mktemp('ref') / 'run')
  result = subprocess.run(_train_flags(env, workdir, SHORT), env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return _params(workdir)


def test_sweep_as_a_job_array(cluster, env, tmp_path):
  study = tmp_path / 'two.py'
  study.write_text(textwrap.dedent(f'''
      from ae_research import sweep
      STUDY = sweep.Study(
          name='two', config='configs/colorize.py:smoke',
          points=sweep.grid({{'optimizer.learning_rate': [0.001, 0.004]}}),
          metrics=['model.psnr', 'model.shape_color_accuracy', 'baseline.psnr'],
          overrides={{'num_train_steps': 10, 'eval_every_steps': 100,
                     'num_eval_examples': 16, 'shapes.num_train': 128,
                     'shapes.num_test': 40, 'data_dir': {env["DATA_DIR"]!r}}})
  '''))
  root = tmp_path / 'sweep'
  result = subprocess.run(
      [sys.executable, '-m', 'launch.slurm', str(study), f'--root={root}',
       '--time=00:10:00', '--cpus_per_task=1'], env=env, cwd=ROOT,
      capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
  jobs = json.loads(result.stdout.strip().splitlines()[-1])
  states = cluster.wait(jobs['array'])
  assert sorted(states.values()) == ['COMPLETED', 'COMPLETED'], states
  cluster.wait(jobs['report'])
  rows = json.loads((root / 'results.json').read_text())
  assert [r['status'] for r in rows] == ['done', 'done']
  assert all(r['model.psnr'] > r['baseline.psnr'] - 5 and r['model.psnr'] > 0
             for r in rows)
  text = (root / 'results.md').read_text()
  assert '2 of 2 points done' in text and text.count('| done |') == 2
  assert (root / 'psnr.png').exists()


def _run_two_processes(cluster, env, tmp_path, workdir, name, steps_):
  flags = ' '.join(_train_flags(env, workdir, steps_))
  return _sbatch(cluster, env, f'''\
      #SBATCH --ntasks=2 --cpus-per-task=1 --time=00:10:00 --requeue
      #SBATCH --output={tmp_path}/{name}_%j.out
      srun --kill-on-bad-exit=1 {flags}
  ''', tmp_path, name)


def _two_process_run(cluster, env, tmp_path, name, steps_):
  workdir = str(tmp_path / name)
  job = _run_two_processes(cluster, env, tmp_path, workdir, name, steps_)
  states = cluster.wait(job)
  log = next(tmp_path.glob(f'{name}_*.out')).read_text()
  assert states == {job: 'COMPLETED'}, log[-3000:]
  return workdir, log


def test_two_processes_train_as_one(cluster, env, reference, tmp_path):
  workdir, log = _two_process_run(cluster, env, tmp_path, 'two', SHORT)
  params, step = _params(workdir)
  ref_params, ref_step = reference
  assert step == ref_step == SHORT
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5), params,
               ref_params)
  # Process 0 alone reports progress and writes summaries.
  assert log.count(f'step {SHORT}/{SHORT}') == 1
  assert len(os.listdir(os.path.join(workdir, 'tensorboard'))) == 1


def test_sigterm_saves_and_the_requeued_job_resumes(cluster, env, tmp_path):
  workdir = str(tmp_path / 'preempted')
  job = _run_two_processes(cluster, env, tmp_path, workdir, 'pre', LONG)
  log_path = None
  deadline = time.time() + 300
  while time.time() < deadline:  # Until training is under way.
    logs = list(tmp_path.glob('pre_*.out'))
    if logs and f'step 10/{LONG}' in logs[0].read_text():
      log_path = logs[0]
      break
    time.sleep(0.2)
  assert log_path, 'training did not start'
  subprocess.run(['scancel', '--signal=TERM', job], env=env, check=True)
  states = cluster.wait(job)
  log = log_path.read_text()
  assert 'SIGTERM' in log and 'preempted' in log, log[-3000:]
  assert states[job] == 'FAILED'  # Exit status 143: the run did not finish.
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'), async_save=False)
  saved = ckpt.all_steps()
  ckpt.close()
  assert len(saved) == 1 and 10 <= saved[0] < LONG  # Saved where it stopped.
  assert not os.path.exists(os.path.join(workdir, 'metrics.json'))
  # The requeued job starts again from the checkpoint and finishes...
  cluster.requeue(job)
  states = cluster.wait(job)
  log = log_path.read_text()
  assert states[job] == 'COMPLETED', log[-3000:]
  assert f'Resumed from step {saved[0]}' in log
  params, step = _params(workdir)
  assert step == LONG and os.path.exists(os.path.join(workdir, 'metrics.json'))
  # ... where the same run without the interruption ends.
  uninterrupted, _ = _two_process_run(cluster, env, tmp_path, 'whole', LONG)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), params,
               _params(uninterrupted)[0])
