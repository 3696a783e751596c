"""The rate-distortion sweep's runs (`ae_research.rd.lambdas`, which
experiments/compress_rd.py drives), and the training-curves plot."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from ae_research.rd import lambdas as rd_lambdas

_EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            'experiments')


def test_lambdas_and_their_starting_points():
  assert rd_lambdas.parse_lambdas('0.003,0.01@0.003,0.02@0.01') == [
      (0.003, None), (0.01, 0.003), (0.02, 0.01)]
  assert rd_lambdas.parse_lambdas(rd_lambdas.DEFAULT)


@pytest.mark.parametrize('text,message', [
    ('0.01@0.003', 'not listed before it'), ('x', 'VALUE or VALUE@FROM'),
    ('-1', 'must be > 0'), ('', 'no lambda')])
def test_bad_lambdas_are_named(text, message):
  with pytest.raises(ValueError, match=message):
    rd_lambdas.parse_lambdas(text)


def test_a_fine_tuned_run_keeps_its_own_steps_after_the_flags_for_every_run():
  extra = ['--config.num_train_steps=1100', '--config.patch_size=256']
  scratch = rd_lambdas.run_command('c.py', 'w', 0.003, None, 350, extra)
  tuned = rd_lambdas.run_command('c.py', 'w', 0.008, 0.003, 350, extra)
  steps = lambda cmd: [a for a in cmd if a.startswith('--config.num_train_steps=')][-1]
  assert steps(scratch) == '--config.num_train_steps=1100'
  assert steps(tuned) == '--config.num_train_steps=350'  # absl: the last wins.
  assert f'--config.init_from={rd_lambdas.run_dir("w", 0.003)}' in tuned
  assert '--config.patch_size=256' in tuned and '--config.compress.lmbda=0.008' in tuned


_CURVES = os.path.join(_EXPERIMENTS, 'training_curves.py')


def _history(workdir, records):
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'eval_history.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in records)


@pytest.mark.slow
def test_training_curves_plot_runs_beside_anchors(tmp_path):
  _history(tmp_path / 'a', [{'step': 10, 'train_minutes': 1.0, 'psnr_y': 31.0},
                            {'step': 20, 'train_minutes': 2.5, 'psnr_y': 32.0}])
  _history(tmp_path / 'b', [{'step': 10, 'train_minutes': 0.5, 'psnr_y': 30.5}])
  out = tmp_path / 'curves.png'
  env = dict(os.environ, PYTHONPATH=os.path.dirname(_EXPERIMENTS))
  done = subprocess.run(
      [sys.executable, _CURVES, '--metric=psnr_y', f'--out={out}',
       '--anchor=SRCNN=32.75', f'{tmp_path / "a"}=A', str(tmp_path / 'b')],
      capture_output=True, text=True, env=env)
  assert done.returncode == 0, done.stderr
  lines = done.stdout.splitlines()
  assert lines[0].split() == ['A', '32.00', 'after', '2.5', 'min']
  assert lines[1].split()[:2] == ['b', '30.50']
  assert lines[2].split() == ['SRCNN', '32.75']
  assert Image.open(out).size[0] > 100
  bad = subprocess.run([sys.executable, _CURVES, '--metric=psnr', str(tmp_path / 'a')],
                       capture_output=True, text=True, env=env)
  assert bad.returncode == 1 and "records no 'psnr'; it records" in bad.stderr
  assert 'psnr_y' in bad.stderr


def test_the_sweep_script_refuses_bad_lambdas_by_name():
  done = subprocess.run(
      [sys.executable, os.path.join(_EXPERIMENTS, 'compress_rd.py'), '--workdir=w',
       '--lambdas=0.01@0.003'], capture_output=True, text=True)
  assert done.returncode == 2
  assert "--lambdas: '0.01@0.003': lambda 0.003 is not listed before it" in done.stderr
