"""The prepared GPU script (benchmarks/device_check.sh), dry-run on the CPU:
every step runs, tiny, and writes what the GPU run reports."""

import json
import math
import os
import subprocess

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_check_dry_run_passes_every_step(tmp_path):
  out = tmp_path / 'out'
  env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / 'tfds'), PYTHON='python')
  run = subprocess.run(['bash', 'benchmarks/device_check.sh', '--dry_run', str(out)],
                       cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=1200)
  assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
  assert 'device_check: every step passed' in run.stdout
  for name in ('tests', 'train_speed', 'pipeline_speed', 'dncnn', 'dncnn_result'):
    assert f'=== {name}: rc 0' in run.stdout
  with open(out / 'dncnn.json') as f:
    result = json.load(f)
  assert result['steps'] == 6 and math.isfinite(result['psnr'])
  assert [h[0] for h in result["history"]] == [3, 6]
  assert '| denoise:dncnn |' in (out / 'train_speed.md').read_text()
  assert '| denoise |' in (out / 'pipeline_speed.md').read_text()
