"""One codec for every rate: the gain units, the training loss, the file's
rate setting, the search for a target rate, and what older files keep."""

import json
import os
import struct
import subprocess
import sys
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from ae_research import aec, compression, config_lib, errors, tasks, train
from configs import compress as compress_config
from experiments import codec_budget

import test_codec

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**compress):
  return test_codec._config('variable,smoke', **compress)


def _params():
  """The parameters of one small variable-rate model, made once."""
  return test_codec._params(0, (), 'variable,smoke')


@pytest.fixture(scope='module')
def codec():
  return aec.Codec.from_config(_config(), _params())


def test_gains_interpolate_between_levels_and_start_at_the_lambda_ratio():
  module = compression.RateGains(levels=4, features=3, lmbda_range=(0.001, 0.1))
  variables = module.init(jax.random.key(0), jnp.zeros((1,)))
  log_gain = np.asarray(variables['params']['log_gain'])
  # Initialised to sqrt(lambda / geometric mean): steps shrink as lambda grows.
  lmbdas = np.geomspace(0.001, 0.1, 4)
  np.testing.assert_allclose(log_gain[:, 0], 0.5 * np.log(lmbdas / 0.01), atol=1e-6)
  gain, inverse = module.apply(variables, jnp.array([0.0, 100.0, 50.0]))
  np.testing.assert_allclose(np.log(gain[0]), log_gain[0], atol=1e-6)
  np.testing.assert_allclose(np.log(gain[1]), log_gain[-1], atol=1e-6)
  # Halfway between levels 1 and 2: the geometric mean of their gains.
  np.testing.assert_allclose(np.log(gain[2]), (log_gain[1] + log_gain[2]) / 2, atol=1e-6)
  np.testing.assert_allclose(gain * inverse, 1.0, atol=1e-5)
  # The host computes the same numbers in numpy.
  host = compression.interpolate_levels(log_gain.astype(np.float64),
                                        np.array([0.0, 100.0, 50.0]), np)
  np.testing.assert_allclose(host, gain, rtol=1e-5)


def test_training_draws_a_quality_per_example_and_its_lambda_weighs_the_loss():
  config = _config()
  model = compression.from_config(config)
  x = jnp.full((4, 32, 32, 3), 0.4)
  variables = {'params': _params()}
  out = model.apply(variables, x, train=True, rngs={'noise': jax.random.key(3)})
  q = np.asarray(out['quality'])
  assert q.shape == (4,) and len(set(q.tolist())) == 4
  assert (q >= 0).all() and (q <= compression.MAX_QUALITY).all()
  task = tasks.get('compress')
  terms = task.loss(out, {'target': x}, config)
  mse = np.mean(np.square(np.asarray(out['output']) - 0.4), axis=(1, 2, 3))
  lo, hi = config.compress.lmbda_range
  lmbda = lo * (hi / lo) ** (q / 100)
  np.testing.assert_allclose(terms['loss'], lmbda * 255 ** 2 * mse + terms['bpp'],
                             rtol=1e-4)
  # Told a quality, every example has it; evaluation defaults to config's.
  told = model.apply(variables, x, quality=80.0)
  np.testing.assert_array_equal(told['quality'], 80.0)
  np.testing.assert_array_equal(model.apply(variables, x)['quality'],
                                config.compress.quality)


def test_the_file_records_the_quality_and_decodes_at_it(codec):
  image = test_codec._image(45, 60)
  rates, decoded = [], []
  for quality in (0, 37.5, 100):
    data = codec.encode(image, quality=quality)
    assert codec.quality_of(data) == quality
    assert codec.parse(data)['setting'] == round(quality * 10)
    out = codec.decode(data)
    assert out.shape == image.shape
    rates.append(len(data))
    decoded.append(out)
    # The decoder's latent is the encoder's, and the picture the model's
    # reconstruction of it at that quality's inverse gain.
    symbols = codec.latent(image, codec.setting(quality))
    _, y_hat = codec.decode_latent(data)
    np.testing.assert_array_equal(
        y_hat, (symbols['y'] + symbols['means']).astype(np.float32))
    _, inverse = codec.gains(codec.setting(quality))
    want = codec.model.apply(codec.variables, jnp.asarray((y_hat * inverse)[None]),
                             method='synthesis')
    want = np.round(np.clip(np.asarray(want)[0], 0, 1)[:45, :60] * 255)
    np.testing.assert_array_equal(out, want.astype(np.uint8))
  assert rates[0] < rates[1] < rates[2]
  assert codec.encode(image) == codec.encode(image, quality=codec.model.default_quality)


def test_qualities_out_of_range_and_foreign_settings_are_refused(codec):
  image = test_codec._image(20, 20)
  for bad in (-1, 100.5, 'high', True):
    with pytest.raises(aec.CodecError, match='quality'):
      codec.encode(image, quality=bad)
  data = codec.encode(image, quality=10)
  # A setting past 100 behind a valid checksum.
  header = codec.parse(data)
  name, start, stop, _ = [f for f in header['fields'] if f[0] == 'rate setting'][0]
  body = data[:start] + aec.varint(1001) + data[stop:-4]
  with pytest.raises(aec.CodecError, match='rate setting 1001'):
    codec.decode(body + struct.pack('<I', zlib.crc32(body)))
  with pytest.raises(aec.CodecError, match='writes format versions 4'):
    codec.encode(image, version=3)


def test_a_model_of_one_rate_refuses_a_quality_and_writes_setting_0():
  fixed = test_codec._codec(model='mean_scale')
  image = test_codec._image(20, 24)
  with pytest.raises(aec.CodecError, match='one rate'):
    fixed.encode(image, quality=50)
  with pytest.raises(aec.CodecError, match='variable-rate'):
    fixed.encode_to_bpp(image, 1.0)
  data = fixed.encode(image)
  assert data[3] == aec.VERSION and fixed.parse(data)['setting'] == 0
  assert fixed.quality_of(data) is None
  header = fixed.parse(data)
  _, start, stop, _ = [f for f in header['fields'] if f[0] == 'rate setting'][0]
  body = data[:start] + aec.varint(3) + data[stop:-4]
  with pytest.raises(aec.CodecError, match='one rate'):
    fixed.decode(body + struct.pack('<I', zlib.crc32(body)))


@pytest.mark.parametrize('model', ['factorized', 'mean_scale'])
def test_version_3_files_still_decode_and_differ_only_by_the_setting(model):
  fixed = test_codec._codec(model=model)
  image = test_codec._image(30, 40, seed=5)
  new, old = fixed.encode(image, version=4), fixed.encode(image, version=3)
  assert old[3] == 3 and new[3] == 4
  np.testing.assert_array_equal(fixed.decode(old), fixed.decode(new))
  # Version 4 is version 3 with the rate setting (0) after the count byte.
  count = [f for f in fixed.parse(new)['fields'] if f[0] == 'number of latents'][0]
  at = count[2]
  assert new[at:at + 1] == b'\x00'
  assert old[4:-4] == new[4:at] + new[at + 1:-4]


@pytest.mark.parametrize('model', ['factorized', 'mean_scale'])
def test_version_4_files_decode_to_the_latent_their_hyper_synthesis_gave(model):
  """Version 5 derives a hyperprior's tables and means otherwise (8-bit
  integers through XLA, not float64 on the host) and codes with ANS, not a
  range coder: a version 4 file still decodes to the latent its encoder
  coded; a factorized model's two files to the same image."""
  fixed = test_codec._codec(model=model)
  image = test_codec._image(30, 40, seed=6)
  new, old = fixed.encode(image), fixed.encode(image, version=4)
  assert new[3] == 5 and old[3] == 4
  for data, version in ((new, 5), (old, 4)):
    symbols = fixed.latent(image, version=version)
    _, y_hat = fixed.decode_latent(data)
    want = symbols['y'] if not fixed.hyper else symbols['y'] + symbols['means']
    np.testing.assert_array_equal(y_hat, want.astype(np.float32))
  assert new[4:] != old[4:]
  if not fixed.hyper:
    np.testing.assert_array_equal(fixed.decode(new), fixed.decode(old))


def test_a_variable_rate_model_refuses_files_without_a_setting(codec):
  data = codec.encode(test_codec._image(20, 20))
  count = [f for f in codec.parse(data)['fields'] if f[0] == 'number of latents'][0]
  body = data[:3] + b'\x03' + data[4:count[2]] + data[count[2] + 1:-4]
  with pytest.raises(aec.CodecError, match='no rate setting'):
    codec.decode(body + struct.pack('<I', zlib.crc32(body)))


@pytest.mark.parametrize('fraction', [0.02, 0.3, 0.55, 0.8, 0.97])
def test_a_target_rate_is_reached_in_at_most_8_encodes(codec, fraction):
  image = test_codec._image(48, 64, seed=2)
  pixels = 48 * 64
  lowest = 8 * len(codec.encode(image, quality=0)) / pixels
  highest = 8 * len(codec.encode(image, quality=100)) / pixels
  target = lowest + fraction * (highest - lowest)
  settings = []
  write = codec._file
  codec._file = lambda *a: (settings.append(a[2]), write(*a))[1]
  try:
    data, quality = codec.encode_to_bpp(image, target)
  finally:
    del codec._file
  assert len(settings) <= aec.MAX_SEARCH_ENCODES
  assert codec.quality_of(data) == quality and data == codec.encode(image, quality=quality)
  assert 8 * len(data) / pixels <= target
  # The next tenth of quality is over the target, or codes to a file of the
  # same size (files grow by 32-bit words: a plateau): no more rate to gain.
  if quality < 100:
    after = len(codec.encode(image, quality=quality + 0.1))
    assert 8 * after / pixels > target or after == len(data)


def test_targets_beyond_the_range_give_its_ends(codec):
  image = test_codec._image(32, 32, seed=3)
  data, quality = codec.encode_to_bpp(image, 1000.0)
  assert quality == 100
  data, quality = codec.encode_to_bpp(image, 1e-4)
  assert quality == 0 and data == codec.encode(image, quality=0)
  with pytest.raises(aec.CodecError, match='bits per pixel'):
    codec.encode_to_bpp(image, -1.0)


def test_the_ids_of_models_of_one_rate_stay_what_they_were():
  params = {'w': np.ones(3, np.float32)}
  config = compress_config.get_config('mean_scale,smoke')
  before = config.compress.to_dict()
  for k in ('rate_levels', 'lmbda_range', 'quality', 'eval_qualities'):
    del config.compress[k]
  old_id = aec.model_id(config, params)
  config = compress_config.get_config('mean_scale,smoke')
  assert aec.model_id(config, params) == old_id
  config.compress.quality = 10.0  # How it is used, not which model it is.
  assert aec.model_id(config, params) == old_id
  variable = compress_config.get_config('mean_scale,variable,smoke')
  assert aec.model_id(variable, params) != old_id
  assert set(before) >= {'rate_levels', 'lmbda_range', 'quality'}
  # A model built apart from any config: its description as before.
  model = compression.ScaleHyperprior(mean_scale=True)
  assert 'rate_levels' not in aec._description(model)
  assert 'rate_levels' in aec._description(compression.ScaleHyperprior(rate_levels=4))


@pytest.mark.parametrize('field,value,message', [
    ('rate_levels', 1, 'at least 2'),
    ('lmbda_range', (0.1, 0.01), 'low < high'),
    ('quality', 120.0, 'from 0 to 100'),
    ('eval_qualities', (), 'non-empty')])
def test_bad_variable_rate_fields_are_refused(field, value, message):
  config = compress_config.get_config('variable,smoke')
  config.compress[field] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config, 1)


def test_variable_rate_is_for_the_hyperprior_models():
  config = compress_config.get_config('smoke')
  config.compress.rate_levels = 4
  with pytest.raises(config_lib.ConfigError, match='variable rate is for'):
    config_lib.validate(config, 1)


# ---------------------------------------------------------------------------
# End to end: a variable-rate run, its evaluation, the commands.


def _main(*args):
  return subprocess.run([sys.executable, '-m', *args], capture_output=True,
                        text=True, cwd=_ROOT)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  runs = str(tmp_path_factory.mktemp('budget'))
  for command in ('train', 'per_lambda'):
    r = _main('experiments.codec_budget', command, '--only=small', '--budget=smoke',
              f'--runs={runs}')
    assert r.returncode == 0, r.stderr[-3000:]
  return runs


@pytest.mark.slow
def test_a_run_scores_its_whole_curve_and_the_commands_use_it(run_dir, tmp_path):
  workdir = os.path.join(run_dir, 'small')
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    results = json.load(f)
  curve = results['model_curve']
  assert [p['quality'] for p in curve] == [0, 25, 50, 75, 100]
  assert curve[0]['bpp'] < curve[-1]['bpp']
  assert set(results['bd_rate']) == {'jpeg', 'webp'}
  history = train.read_history(workdir)
  assert 'psnr_q50' in history[-1] and 'bpp_q100' in history[-1]
  # The codec at a quality and at a target rate; decompress needs neither.
  image = test_codec._image(64, 80, seed=11)
  png = str(tmp_path / 'in.png')
  Image.fromarray(image).save(png)
  sizes = {}
  for flag in ('--quality=20', '--quality=90', '--bpp=1.0'):
    out = str(tmp_path / f'{flag[2:].replace("=", "_")}.aec')
    r = _main('ae_research.codec', 'compress', f'--workdir={workdir}', flag, png, out)
    assert r.returncode == 0, r.stderr[-2000:]
    sizes[flag] = os.path.getsize(out)
    assert 'quality' in r.stdout
    back = str(tmp_path / f'{flag[2:].replace("=", "_")}.png')
    r = _main('ae_research.codec', 'decompress', f'--workdir={workdir}', out, back)
    assert r.returncode == 0, r.stderr[-2000:]
    assert np.asarray(Image.open(back)).shape == image.shape
  assert sizes['--quality=20'] < sizes['--quality=90']
  assert 8 * sizes['--bpp=1.0'] <= 1.0 * 64 * 80
  r = _main('ae_research.codec', 'decompress', f'--workdir={workdir}', '--quality=3',
            out, str(tmp_path / 'x.png'))
  assert r.returncode != 0 and 'for compress' in r.stderr
  # The RD report draws the one model's curve at the asked qualities.
  r = _main('ae_research.rd', f'--workdirs={workdir}', '--qualities=0,100',
            '--max_images=1', f'--output={tmp_path / "rd"}')
  assert r.returncode == 0, r.stderr[-2000:]
  with open(tmp_path / 'rd' / 'results.json') as f:
    report = json.load(f)
  (label, points), = [(k, v) for k, v in report['curves'].items() if 'one model' in k]
  assert [p['quality'] for p in points] == [0, 100]
  # The budget study's report: its plot and table.
  r = _main('experiments.codec_budget', 'report', '--only=small', '--budget=smoke',
            f'--runs={run_dir}', f'--out={tmp_path / "docs"}')
  assert r.returncode == 0, r.stderr[-2000:]
  assert os.path.getsize(tmp_path / 'docs' / 'codec_budget.png') > 1000
  table = (tmp_path / 'docs' / 'codec_budget.md').read_text()
  assert 'small' in table and 'three fixed-rate models' in table


@pytest.mark.slow
def test_the_budget_report_is_made_again_from_its_record(run_dir, tmp_path):
  docs = tmp_path / 'docs'
  report = lambda runs: _main('experiments.codec_budget', 'report', '--only=small',
                              '--budget=smoke', f'--runs={runs}', f'--out={docs}')
  # Nothing to draw: no run, no record.
  r = report(tmp_path / 'none')
  assert r.returncode == 1 and 'train it first' in r.stderr
  assert not docs.exists()
  r = report(run_dir)
  assert r.returncode == 0, r.stderr[-2000:]
  record = json.loads((docs / codec_budget.RECORD).read_text())['runs']
  history = train.read_history(os.path.join(run_dir, 'small'))
  assert [h['step'] for h in record['small']['history']] == [h['step'] for h in history]
  assert record['small']['history'][-1]['psnr_q50'] == history[-1]['psnr_q50']
  table = (docs / 'codec_budget.md').read_text()
  # Without the runs, the record draws the same table; an architecture
  # the record lacks is named.
  os.remove(docs / 'codec_budget.md')
  r = report(tmp_path / 'none')
  assert r.returncode == 0, r.stderr[-2000:]
  assert (docs / 'codec_budget.md').read_text().splitlines()[:3] == table.splitlines()[:3]
  r = _main('experiments.codec_budget', 'report', '--only=small,mid', '--budget=smoke',
            f'--runs={tmp_path / "none"}', f'--out={docs}')
  assert r.returncode == 1 and 'keeps none of mid' in r.stderr


def test_a_fixed_rate_codec_refuses_quality_flags(tmp_path):
  r = _main('ae_research.codec', 'compress', '--pretrained=sr-x3', '--quality=5',
            'missing.png', str(tmp_path / 'x.aec'))
  assert r.returncode == 1 and 'error:' in r.stderr
  r = _main('ae_research.codec', 'compress', '--workdir=x', '--quality=5', '--bpp=1',
            'a.png', 'b.aec')
  assert r.returncode == 2 and 'not both' in r.stderr


def test_the_budget_study_names_its_runs_and_refuses_unknown_ones():
  args = codec_budget.train_args(codec_budget.BY_NAME['small'], 'w', '../shared')
  assert '--config=configs/compress.py:variable' in args
  assert any(a.startswith('--config.dataset=folder:../shared/trainsets/T91') for a in args)
  runs = codec_budget.per_lambda_runs(codec_budget.BY_NAME['small'])
  lo, hi = codec_budget.BY_NAME['small'].lmbda_range
  assert f'--config.compress.lmbda_range={(lo, hi)}' in args
  assert [round(l, 4) for _, l in runs] == [lo, round(np.sqrt(lo * hi), 4), hi]
  # An architecture without its own range trains over the variant's.
  mid = codec_budget.BY_NAME['mid']
  assert mid.lmbda_range is None
  assert mid.lambdas() == tuple(
      compress_config.get_config(mid.variant).compress.lmbda_range)
  assert not any('lmbda_range' in a for a in codec_budget.train_args(
      mid, 'w', '../shared'))
  fixed = codec_budget.train_args(codec_budget.BY_NAME['small'], 'w', '../shared',
                                  lmbda=0.01, fraction=1 / 3)
  assert '--config.compress.rate_levels=0' in fixed
  assert f'--config.num_train_steps={codec_budget.BY_NAME["small"].steps // 3}' in fixed
  with pytest.raises(errors.UserError, match='no architecture'):
    codec_budget.archs(['huge'])


@pytest.mark.slow
def test_the_budget_study_measures_an_architectures_steps_per_second():
  r = _main('experiments.codec_budget', 'rate', '--only=small', '--budget=smoke')
  assert r.returncode == 0, r.stderr[-2000:]
  row, = [line for line in r.stdout.splitlines() if line.startswith('| small |')][:1]
  assert float(row.split('|')[2]) > 0
