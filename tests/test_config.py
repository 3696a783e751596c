"""Configs: variants, validation, and the command line's error messages."""

import json
import os
import re
import subprocess
import sys

import pytest

from ae_research import archs, config_lib, errors, main, train
from configs import colorize, compress, denoise, super_resolution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('module,variants', [
    (colorize, ['', 'smoke', 'photos', 'photos,smoke']),
    (denoise, ['', 'smoke', 'blind', 'salt_and_pepper', 'mask', 'crosshair,smoke']),
    (super_resolution, ['', 'smoke', 'x2', 'x4,smoke']),
    (compress, ['', 'smoke', 'bottleneck', 'bottleneck,smoke', 'hyperprior',
                'mean_scale,smoke', 'mean_scale,n128', 'hyperprior,n192']),
])
def test_every_config_and_variant_is_valid(module, variants):
  for variant in variants:
    config_lib.validate(module.get_config(variant), num_devices=8)


def test_unknown_variant_names_the_known_ones():
  with pytest.raises(ValueError, match="'tiny' is unknown; choose one of \\['classify', 'photos', 'smoke', 'unet'\\]"):
    colorize.get_config('tiny')


def test_locked_config_refuses_unknown_fields_and_wrong_types():
  config = colorize.get_config()
  config.lock()
  with pytest.raises(AttributeError):
    config.num_train_step = 10
  with pytest.raises(TypeError):
    config.num_train_steps = 'many'


@pytest.mark.parametrize('field,value,message', [
    ('num_train_steps', 0, 'config.num_train_steps=0 is not allowed: use a positive integer'),
    ('model.upsample', 'bicubic', "config.model.upsample='bicubic' is not allowed: use one of"),
    ('task', 'paint', "config.task='paint' is not allowed: use one of \\['colorize', 'compress'"),
    ('optimizer.learning_rate', -1.0, 'config.optimizer.learning_rate=-1.0'),
    ('model.features', (), 'config.model.features=\\(\\) is not allowed'),
    ('batch_size', 12, 'config.batch_size=12 must be divisible by the number of devices \\(8\\)'),
    ('optimizer.warmup_steps', 5000, 'warmup_steps=5000 must be smaller than config.num_train_steps'),
    ('shapes.image_size', 34, 'image_size=34 must be divisible by 4'),
    ('shapes.max_radius', 20, 'max_radius=20 does not fit'),
    ('compress.model', 'context', "config.compress.model='context' is not allowed: use one of \\['bottleneck', 'factorized', 'hyperprior', 'mean_scale'\\]"),
    ('compress.hyper_features', 0, 'config.compress.hyper_features=0 is not allowed: use a positive integer'),
    ('compress.lmbda', 0.0, 'config.compress.lmbda=0.0 is not allowed: use a number > 0'),
    ('compress.bits', 0, 'config.compress.bits=0 is not allowed'),
    ('eval_whole_images', False, 'compression is scored on the real files'),
    ('eval_classical', 'no', "config.eval_classical='no' is not allowed: use True or False"),
    ('model.upsample', 'nearest', "the factorized model upsamples with one of"),
    ('denoise.noise', 'speckle', "config.denoise.noise='speckle' is not allowed: use one of"),
    ('denoise.sigma_range', (30.0, 10.0), 'must be \\(low, high\\)'),
    ('sr.scale', 5, "config.sr.scale=5 is not allowed: use one of \\[2, 3, 4\\]"),
    ('patch_size', 50, 'patch_size=50 must be a multiple of config.sr.scale=3'),
])
def test_impossible_values_are_named(field, value, message):
  # Each task checks its own fields: the config of the task they belong to.
  module = {'compress': compress, 'eval_whole_images': compress, 'denoise': denoise,
            'sr': super_resolution, 'patch_size': super_resolution}.get(
                field.split('.')[0], colorize)
  if value == 'nearest':  # Allowed for the Autoencoder, not the codec.
    module = compress
  config = module.get_config()
  *parents, leaf = field.split('.')
  node = config
  for p in parents:
    node = node[p]
  with node.ignore_type():
    node[leaf] = value
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(config, num_devices=8)


def test_hyperprior_patches_must_be_multiples_of_its_hyper_latent():
  config = compress.get_config('mean_scale')  # 3 levels: z is 32x smaller.
  config.patch_size = 48
  with pytest.raises(config_lib.ConfigError, match=re.escape(
      'config.patch_size=48: the mean_scale model with 3 levels needs patches '
      'whose side is a multiple of 32')):
    config_lib.validate(config, num_devices=8)


def _run(*args, workdir):
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  return subprocess.run(
      [sys.executable, '-m', 'ae_research.main',
       '--config=configs/colorize.py:smoke', f'--workdir={workdir}', *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
@pytest.mark.parametrize('args,message', [
    (['--config.num_train_step=5'],
     "--config.num_train_step names no config field: config has no 'num_train_step'"),
    (['--config.model.width=5'],
     "config.model has no 'width'; its fields are \\['activation'"),
    (['--config.num_train_steps=abc'], "--config.num_train_steps=abc: invalid literal for int"),
    (['--config.num_train_steps=-1'], 'config.num_train_steps=-1 is not allowed'),
    (['--config.model.norm=instance'], "config.model.norm='instance' is not allowed: use one of"),
    (['--config=configs/colorize.py:tiny'], "config variant 'tiny' is unknown"),
    (['--config.dataset=folder:/nonexistent'], 'folder:/nonexistent is not a folder'),
    (['--config.model.arch=vdsr', '--config.model.depth=3'],
     "--config.model.arch='vdsr' names no architecture; choose one of "
     "\\['autoencoder'"),
    (['--config.model.arch=dncnn', '--config.model.features=(8,)'],
     "config.model has no 'features'; its fields are \\['arch', 'depth'"),
])
def test_command_line_errors_before_any_work(args, message, tmp_path):
  workdir = tmp_path / 'run'
  result = _run(*args, workdir=str(workdir))
  assert result.returncode != 0
  assert re.search(message, result.stderr), result.stderr[-2000:]
  assert 'Traceback' not in result.stderr
  assert not workdir.exists()  # Nothing was written.


def test_a_bug_shows_its_traceback_and_a_user_error_one_line(monkeypatch, capsys):
  """main turns only errors.UserError into one line; anything else is a bug."""
  main.FLAGS(['main', '--config=configs/colorize.py:smoke', '--workdir=unused'])

  def fails_with(error):
    def run(*args):
      raise error
    return run

  monkeypatch.setattr(train, 'run', fails_with(errors.DataError('no such data')))
  with pytest.raises(SystemExit) as exit_:
    main.main(['main'])
  assert exit_.value.code == 1
  assert capsys.readouterr().err == 'error: no such data\n'
  monkeypatch.setattr(train, 'run', fails_with(ValueError('a bug')))
  with pytest.raises(ValueError, match='a bug'):
    main.main(['main'])


def _parsed_model(config, *flags):
  """config.model after main's real command-line parse of these flags."""
  script = ('import json, sys\n'
            'from ae_research import main\n'
            'main._parse_flags(sys.argv)\n'
            'print(json.dumps(main._CONFIG.value.model.to_dict()))\n')
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-c', script, f'--config={config}', '--workdir=unused',
       *flags], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize('config,flags,arch,changes', [
    # Another architecture: its defaults, then the other flags, in any order.
    ('configs/denoise.py:smoke',
     ['--config.model.arch=dncnn', '--config.model.depth=5'], 'dncnn',
     dict(depth=5)),
    ('configs/super_resolution.py',
     ['--config.model.width=16', '--config.model.arch', 'edsr'], 'edsr',
     dict(width=16)),
    # The config's own architecture: the config's fields are kept (this
    # variant's FFDNet is residual, unlike the default one).
    ('configs/denoise.py:ffdnet', ['--config.model.arch=ffdnet'], 'ffdnet',
     dict(residual=True)),
])
def test_the_command_line_switches_architecture(config, flags, arch, changes):
  model = _parsed_model(config, *flags)
  want = archs.get(arch).config(**changes)
  assert model == json.loads(json.dumps(want))  # Tuples are lists in JSON.
