"""A compression run end to end: train, evaluate with the real codec, the
command line codec reproducing what evaluation scored, the RD report."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ae_research import datasets, rd
from configs import compress as compress_config


def _run(*args):
  return subprocess.run([sys.executable, '-m', *args], capture_output=True,
                        text=True, cwd=os.path.dirname(os.path.dirname(__file__)))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory, data_dir):
  workdir = str(tmp_path_factory.mktemp('compress'))
  config = compress_config.get_config('smoke')
  config.data_dir = data_dir
  config.num_eval_examples = 1  # JPEG's and WebP's curves cost the most.
  from ae_research import train  # pylint: disable=g-import-not-at-top
  train.train_and_evaluate(config, workdir)
  return workdir


@pytest.mark.slow
def test_run_writes_a_codec_evaluation(workdir):
  with open(os.path.join(workdir, 'metrics.json')) as f:
    summary = json.load(f)
  model = summary['model']
  for key in ('bpp', 'bpp_estimated', 'psnr', 'ms_ssim'):
    assert np.isfinite(model[key])
  assert summary['baseline'] == summary['jpeg']
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    results = json.load(f)
  assert set(results['curves']) == {'jpeg', 'webp'}
  for name in ('rd_psnr.png', 'rd_ms_ssim.png', 'results.md'):
    assert os.path.getsize(os.path.join(workdir, 'eval', name)) > 0
  for row in results['images']:
    size = os.path.getsize(os.path.join(workdir, 'eval', 'files', row['name'] + '.aec'))
    assert row['model']['bpp'] == pytest.approx(8 * size / (row['height'] * row['width']))


@pytest.mark.slow
def test_command_line_codec_reproduces_the_evaluation(workdir, data_dir, tmp_path):
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    row = json.load(f)['images'][0]
  name = row['name']
  aec = os.path.join(workdir, 'eval', 'files', name + '.aec')
  out = str(tmp_path / 'decoded.png')
  r = _run('ae_research.codec', 'decompress', f'--workdir={workdir}', aec, out)
  assert r.returncode == 0, r.stderr
  decoded = np.asarray(Image.open(out))
  scored = np.asarray(Image.open(os.path.join(workdir, 'eval', 'decoded', name + '.png')))
  np.testing.assert_array_equal(decoded, scored)
  config = compress_config.get_config('smoke')
  config.data_dir = data_dir
  source = datasets.get_source(config, 'test')
  original = next(np.asarray(source[i]['image']) for i in range(len(source))
                  if source[i]['name'].decode() == name)
  assert rd.quality(decoded, original)['psnr'] == pytest.approx(row['model']['psnr'], abs=1e-4)

  # Compressing the original again gives the very same file.
  png = str(tmp_path / 'original.png')
  Image.fromarray(original).save(png)
  again = str(tmp_path / 'again.aec')
  r = _run('ae_research.codec', 'compress', f'--workdir={workdir}', png, again)
  assert r.returncode == 0, r.stderr
  assert 'bpp' in r.stdout
  with open(again, 'rb') as a, open(aec, 'rb') as b:
    assert a.read() == b.read()

  # Nothing is overwritten without --overwrite; bad files are named.
  before = open(out, 'rb').read()
  r = _run('ae_research.codec', 'decompress', f'--workdir={workdir}', aec, out)
  assert r.returncode == 1 and 'exists' in r.stderr
  assert open(out, 'rb').read() == before
  r = _run('ae_research.codec', 'decompress', f'--workdir={workdir}', png,
           str(tmp_path / 'x.png'))
  assert r.returncode == 1 and 'not an ae_research compressed file' in r.stderr
  assert not os.path.exists(tmp_path / 'x.png')


@pytest.mark.slow
def test_rd_report(workdir, tmp_path):
  out = str(tmp_path / 'report')
  r = _run('ae_research.rd', f'--workdirs={workdir}', f'--output={out}',
           '--max_images=1', '--published=kodak')
  assert r.returncode == 0, r.stderr
  with open(os.path.join(out, 'results.json')) as f:
    report = json.load(f)
  assert 'learned factorized' in report['curves']
  assert 'learned factorized_vs_jpeg' in report['bd_rate']
  for name in rd.PUBLISHED['kodak']:  # Drawn, and compared on PSNR only.
    assert report['curves'][name] == rd.PUBLISHED['kodak'][name]
    assert report['bd_rate'][f'learned factorized_vs_{name}']['ms_ssim'] is None
  assert 'learned factorized_vs_learned factorized' not in report['bd_rate']
  assert os.path.getsize(os.path.join(out, 'rd_psnr.png')) > 0
  r = _run('ae_research.rd', f'--workdirs={workdir}', f'--output={out}')
  assert r.returncode == 1 and 'exists' in r.stderr


def test_config_errors_before_training(tmp_path):
  config = compress_config.get_config('smoke')
  config.eval_whole_images = False
  from ae_research import config_lib, train  # pylint: disable=g-import-not-at-top
  with pytest.raises(config_lib.ConfigError, match='eval_whole_images'):
    train.train_and_evaluate(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')
