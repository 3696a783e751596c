"""Studies (experiments/) and the local launcher (launch/local.py)."""

import glob
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import types

import numpy as np
import pytest

from ae_research import config_lib, datasets, sweep
from configs import colorize
from launch import local, slurm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = sorted(glob.glob(os.path.join(ROOT, 'experiments', '*.py')))
STUDIES = [p for p in STUDIES if 'STUDY = ' in open(p).read()]


def test_grid_and_random_search():
  points = sweep.grid({'a': [1, 2], 'b.c': ['x', 'y', 'z']})
  assert len(points) == 6 and {'a': 2, 'b.c': 'y'} in points
  space = {'lr': sweep.log_uniform(1e-4, 1e-2), 'w': sweep.choice([(8,), (16,)])}
  draws = sweep.random_search(space, 20, seed=3)
  assert draws == sweep.random_search(space, 20, seed=3)
  assert draws != sweep.random_search(space, 20, seed=4)
  assert all(1e-4 <= p['lr'] <= 1e-2 and p['w'] in [(8,), (16,)] for p in draws)
  assert len({p['w'] for p in draws}) == 2


def test_point_names_and_commands():
  study = sweep.Study('s', 'configs/sr.py', [{'sr.scale': 3, 'model.features': (32, 64)}],
                      ['model.psnr'], overrides={'num_train_steps': 10})
  point = study.points[0]
  assert sweep.point_name(point) == 'scale_3-features_32_64'
  argv = sweep.command(study, point, 'runs/x/p', ['--config.seed=1'])
  assert argv[1:] == ['-m', 'ae_research.main', '--config=configs/sr.py',
                      '--workdir=runs/x/p', '--config.num_train_steps=10',
                      '--config.sr.scale=3', '--config.model.features=(32, 64)',
                      '--config.seed=1']
  assert sweep.command(study, {'model.features': (64,)}, 'w')[-1] == '--config.model.features=(64,)'


@pytest.mark.parametrize('path', STUDIES, ids=os.path.basename)
def test_every_study_names_valid_configs(path):
  """Each point's overrides name config fields and pass validation."""
  module = sweep.load(path)
  study = module.STUDY
  assert study.points and study.metrics
  config_path, _, variant = study.config.partition(':')
  for point in study.points:
    name = os.path.splitext(os.path.basename(config_path))[0]
    config = importlib.import_module(f'configs.{name}').get_config(variant)
    for key, value in {**study.overrides, **point}.items():
      node = config
      *parents, leaf = key.split('.')
      for p in parents:
        node = node[p]
      assert leaf in node, f'{path}: config has no field {key}'
      node[leaf] = value
    config_lib.validate(config, num_devices=1)
  for metric in study.metrics:
    assert '.' in metric


def _fake_study(tmp_path):
  path = tmp_path / 'fake_study.py'
  path.write_text(textwrap.dedent('''
      from ae_research import sweep
      STUDY = sweep.Study(
          name='fake', config='configs/colorize.py',
          points=sweep.grid({'optimizer.learning_rate': [0.001, 0.01],
                             'model.features': [(8,), (16,)]}),
          metrics=['model.psnr', 'baseline.psnr'])
      def analyze(rows, root):
        open(root + '/analyzed.txt', 'w').write(str(len(rows)))
  '''))
  return str(path)


def test_report_collects_finished_points(tmp_path):
  module = sweep.load(_fake_study(tmp_path))
  root = tmp_path / 'runs'
  for i, point in enumerate(module.STUDY.points[:3]):
    workdir = root / sweep.point_name(point)
    workdir.mkdir(parents=True)
    (workdir / 'metrics.json').write_text(json.dumps(
        {'model': {'psnr': 20.0 + i}, 'baseline': {'psnr': 10.0}}))
  rows = sweep.write_report(module, str(root))
  assert [r['status'] for r in rows] == ['done', 'done', 'done', 'new']
  assert [r['model.psnr'] for r in rows] == [20.0, 21.0, 22.0, None]
  text = (root / 'results.md').read_text()
  assert '3 of 4 points done' in text
  assert '| 0.001 | (8,) | 20 | 10 | done |' in text
  assert '| 0.01 | (16,) | - | - | new |' in text
  assert (root / 'psnr.png').stat().st_size > 1000
  assert (root / 'analyzed.txt').read_text() == '3'
  assert json.loads((root / 'results.json').read_text())[2]['model.psnr'] == 22.0


@pytest.mark.slow
def test_local_launcher_runs_skips_and_resumes(tmp_path, data_dir, capsys):
  study = tmp_path / 'tiny.py'
  study.write_text(textwrap.dedent('''
      from ae_research import sweep
      STUDY = sweep.Study(
          name='tiny', config='configs/colorize.py:smoke',
          points=sweep.grid({'optimizer.learning_rate': [0.001, 0.003]}),
          metrics=['model.psnr', 'baseline.psnr'],
          overrides={'num_train_steps': 6, 'checkpoint_every_steps': 3,
                     'eval_every_steps': 100, 'num_eval_examples': 16,
                     'shapes.num_train': 128, 'shapes.num_test': 40})
  '''))
  extra = [f'--config.data_dir={data_dir}']
  module = sweep.load(str(study))
  # The data is generated once, before two runs could race to make it.
  config = colorize.get_config('smoke')
  config.data_dir, config.shapes.num_train, config.shapes.num_test = data_dir, 128, 40
  datasets.get_source(config, 'train')
  root = tmp_path / 'runs'
  assert local.main([str(study), f'--root={root}', '--parallel=2', *extra]) == 0
  out = capsys.readouterr().out
  assert out.count('started') == 2 and '2/2 points done' in out
  rows = json.loads((root / 'results.json').read_text())
  assert all(r['status'] == 'done' and r['model.psnr'] > 0 for r in rows)
  # Again: nothing to do.
  assert local.main([str(study), f'--root={root}', *extra]) == 0
  assert capsys.readouterr().out.count('done, skipped') == 2
  # An interrupted point (checkpoints, no metrics) resumes.
  name = sweep.point_name(module.STUDY.points[1])
  os.remove(root / name / 'metrics.json')
  assert sweep.status(str(root / name)) == 'started'
  assert local.main([str(study), f'--root={root}', *extra]) == 0
  out = capsys.readouterr().out
  assert f'{name}: resumed' in out and f'{name}: finished' in out
  assert 'Resumed from step 6' in (root / f'{name}.log').read_text()


def test_slurm_job_files(tmp_path):
  module = sweep.load(_fake_study(tmp_path))
  root = tmp_path / 'runs'
  done = root / sweep.point_name(module.STUDY.points[1])
  done.mkdir(parents=True)
  (done / 'metrics.json').write_text('{}')
  args = slurm.main.__globals__['argparse'].Namespace(
      study=str(tmp_path / 'fake_study.py'), time='01:00:00', cpus_per_task=4,
      mem='8G', gpus=1, nodes=0, ntasks_per_point=2, partition='gpu', account='')
  todo = slurm.write_job_files(module, str(root), args, ['--config.seed=3'])
  assert todo == [0, 2, 3]
  script = (root / 'array.sbatch').read_text()
  for line in ('#SBATCH --time=01:00:00', '#SBATCH --cpus-per-task=4',
               '#SBATCH --ntasks=2', '#SBATCH --gpus-per-task=1', '#SBATCH --mem=8G',
               '#SBATCH --partition=gpu', '#SBATCH --requeue',
               'srun --kill-on-bad-exit=1'):
    assert line in script
  points = json.loads((root / 'sweep.json').read_text())['points']
  assert points[3]['argv'][-1] == '--config.seed=3'
  assert points[3]['argv'][0] == sys.executable
  assert 'launch.report' in (root / 'report.sbatch').read_text()
  assert np.all([p['workdir'].startswith(str(root)) for p in points])


@pytest.mark.slow
def test_sigterm_in_one_process_saves_and_resumes(tmp_path, data_dir):
  config = colorize.get_config('smoke')
  config.data_dir, config.shapes.num_train, config.shapes.num_test = data_dir, 128, 40
  datasets.get_source(config, 'train')
  workdir = tmp_path / 'run'
  argv = [sys.executable, '-m', 'ae_research.main', '--config=configs/colorize.py:smoke',
          f'--workdir={workdir}', f'--config.data_dir={data_dir}',
          '--config.shapes.num_train=128', '--config.shapes.num_test=40',
          '--config.num_eval_examples=16', '--config.num_train_steps=400',
          '--config.log_every_steps=5', '--config.eval_every_steps=20',
          '--config.checkpoint_every_steps=1000']
  log = tmp_path / 'log.txt'
  with open(log, 'w') as f:
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while 'step 10/400' not in log.read_text() and time.time() < deadline:
      assert proc.poll() is None, log.read_text()[-3000:]
      time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143, log.read_text()[-3000:]
  steps_saved = sorted(int(d) for d in os.listdir(workdir / 'checkpoints') if d.isdigit())
  assert len(steps_saved) == 1 and 10 <= steps_saved[0] < 400
  assert 'preempted (SIGTERM)' in log.read_text()
  assert not (workdir / 'metrics.json').exists()
  result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  assert f'Resumed from step {steps_saved[0]}' in result.stdout
  assert (workdir / 'metrics.json').exists()


# -- Points on the host's GPUs ------------------------------------------------

_CHILD = r'''
import json, os, sys, time
record, x = sys.argv[1], int(sys.argv[2])
start = time.time()
time.sleep(0.6)
with open(record, 'a') as f:
  f.write(json.dumps({'x': x, 'start': start, 'end': time.time(),
                      'devices': os.environ.get('CUDA_VISIBLE_DEVICES'),
                      'fraction': os.environ.get('XLA_PYTHON_CLIENT_MEM_FRACTION')}) + '\n')
sys.exit(3 if x == 1 else 0)  # Point 1 dies; its GPUs go to the next.
'''


def _gpu_study(points):
  return types.SimpleNamespace(STUDY=sweep.Study(
      name='gpus', config='configs/denoise.py', metrics=['model.psnr'],
      points=[{'x': i} for i in range(points)]))


def _launch(tmp_path, points, devices, parallel):
  record = tmp_path / 'record.jsonl'
  command = lambda study, point, workdir, extra: [
      sys.executable, '-c', _CHILD, str(record), str(point['x'])]
  results = local.run(_gpu_study(points), str(tmp_path / 'root'), parallel, [],
                      poll=0.05, devices=devices, command=command)
  rows = [json.loads(l) for l in record.read_text().splitlines()]
  return results, sorted(rows, key=lambda r: r['start'])


def _most_at_once(rows, devices=None):
  """The most points that ran at the same moment (on `devices`)."""
  rows = [r for r in rows if devices is None or r['devices'] == devices]
  return max(sum(o['start'] <= r['start'] < o['end'] for o in rows) for r in rows)


def test_each_point_gets_its_own_gpus_and_the_rest_wait(tmp_path, capsys):
  devices = local.Devices(['0', '1', '2', '3', '4'], per_point=2)
  assert devices.groups == [('0', '1'), ('2', '3')] and devices.unused == ['4']
  results, rows = _launch(tmp_path, 5, devices, parallel=4)
  out = capsys.readouterr().out
  assert results == {f'x_{i}': (3 if i == 1 else 0) for i in range(5)}
  assert {r['devices'] for r in rows} == {'0,1', '2,3'}
  assert all(r['fraction'] is None for r in rows)  # A group of its own: all of it.
  assert _most_at_once(rows) == 2  # --parallel=4, but two groups.
  assert _most_at_once(rows, '0,1') == 1 and _most_at_once(rows, '2,3') == 1
  # The point that died freed its group: the next point started on it.
  died = next(r for r in rows if r['x'] == 1)
  after = [r for r in rows if r['start'] >= died['end'] - 0.01]
  assert died['devices'] in {r['devices'] for r in after}
  assert 'but 2 group(s) of GPUs x 1 point(s) each: 2 at once' in out
  assert 'GPU(s) 4 left unused' in out
  assert 'x_0: started on GPUs 0,1' in out and 'x_1: FAILED (exit 3)' in out
  logged = (tmp_path / 'root' / 'x_0.log').read_text()
  assert logged.startswith('CUDA_VISIBLE_DEVICES=0,1 $ ')


def test_points_share_a_gpu_with_their_share_of_its_memory(tmp_path, capsys):
  devices = local.Devices(['7'], share=2)
  _, rows = _launch(tmp_path, 4, devices, parallel=8)
  assert {(r['devices'], r['fraction']) for r in rows} == {('7', f'{0.9 / 2:.3f}')}
  assert _most_at_once(rows) == 2
  assert 'x_0: started on GPU 7' in capsys.readouterr().out


def test_without_gpus_points_share_the_host(tmp_path):
  _, rows = _launch(tmp_path, 3, local.Devices([]), parallel=3)
  assert {r['devices'] for r in rows} == {None} and _most_at_once(rows) == 3


def test_the_hosts_gpus_are_found_without_starting_jax():
  assert local.visible_gpus({'CUDA_VISIBLE_DEVICES': '2, 5'}) == ['2', '5']
  assert local.visible_gpus({'CUDA_VISIBLE_DEVICES': ''}) == []
  assert local.visible_gpus({}, smi=lambda: '0\n1\n') == ['0', '1']
  assert local.visible_gpus({}, smi=lambda: None) == []
  with pytest.raises(ValueError, match='devices_per_point=3, but this host has 2'):
    local.Devices(['0', '1'], per_point=3)
