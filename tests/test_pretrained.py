"""ae_research.pretrained: the shipped models (loading, integrity, their
check scores measured again), and the commands and runs that take them."""

import json
import os
import shutil
import subprocess
import sys

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ae_research import apply, checkpointing, cli, codec, config_lib, image_io
from ae_research import parallel, pretrained, steps
from ae_research import workdir as workdir_lib
from ae_research.pretrained import __main__ as pretrained_main
from configs import colorize, compress
from experiments import zoo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = pretrained.names()


def test_the_package_ships_models():
  assert SHIPPED, 'the manifest lists no model'


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_model_scores_its_check_image_as_stored(name):
  now, stored = pretrained.recheck(name)
  assert abs(now - stored) <= 0.05, (name, now, stored)


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_variables_have_the_names_and_shapes_of_the_model(name):
  # A refactor that renames a module or parameter orphans the weights: the
  # file's names and shapes must be the ones the entry's config builds.
  got = pretrained._paths(pretrained.load_variables(name))
  want = pretrained.expected_variables(pretrained.get_config(name))
  assert got == want
  model, variables = pretrained.load(name)
  config = pretrained.get_config(name)
  task, _, _ = workdir_lib.build(config)
  side = 2 * model.downsampling * max(1, 8 // model.downsampling)
  x = jnp.zeros((1, side, side, task.input_channels(config)))
  out = model.apply(variables, x, train=False)
  if isinstance(out, dict):  # A codec: the image, its likelihoods, ...
    out = out['output']
  assert out.shape[0] == 1 and np.all(np.isfinite(np.asarray(out)))


@pytest.mark.parametrize('name', SHIPPED)
def test_shipped_model_is_trained_by_its_recipe(name):
  # The manifest's reproduce command is the recipe's, as experiments.zoo
  # writes it today.
  recipe = zoo.BY_NAME[name].resolve('../shared')
  want = [zoo.shown(c) for c in zoo.budget_commands(
      recipe, 'cpu', os.path.join(zoo.RUNS, name))]
  assert pretrained.entry(name).commands[:len(want)] == want


def test_weights_are_all_listed_checked_and_small():
  files = set(os.listdir(pretrained.WEIGHTS_DIR)) - {pretrained.MANIFEST}
  listed = {pretrained.entry(n).file for n in SHIPPED}
  assert files == listed
  total = sum(os.path.getsize(os.path.join(pretrained.WEIGHTS_DIR, f))
              for f in files)
  assert total < 60e6
  for name in SHIPPED:
    e = pretrained.entry(name)
    assert pretrained.sha256(os.path.join(pretrained.WEIGHTS_DIR, e.file)) == e.sha256


def test_list_command_shows_every_model(capsys):
  assert cli.call(pretrained_main.main, []) == 0
  out = capsys.readouterr().out
  for name in SHIPPED:
    assert f'| {name} |' in out


# ---------------------------------------------------------------------------
# A zoo of our own, in a temporary folder.


def _make_run(workdir, config, seed=1):
  """A run with one checkpoint (random parameters) at step 1."""
  task, model, tx = workdir_lib.build(config)
  workdir_lib.check_workdir(config, workdir)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  state = steps.create_train_state(model, tx, jax.random.key(seed),
                                   workdir_lib.init_shape(task, config, model))
  ckpt.save(1, state, {}, jax.random.key(0))
  ckpt.close()
  return state


@pytest.fixture(scope='module')
def own_zoo(tmp_path_factory):
  """A zoo folder with a colorization model and a compression model."""
  root = tmp_path_factory.mktemp('zoo')
  c = compress.get_config('smoke')
  c.model.features = (8, 8, 8)
  for name, config in (('shapes', colorize.get_config('smoke')), ('codec', c)):
    workdir = str(root / 'runs' / name)
    _make_run(workdir, config)
    pretrained.export(workdir, name, str(root / 'weights'), summary=name,
                      data='none', commands=['python -m ...'],
                      progress=lambda _: None)
  return str(root / 'weights')


@pytest.fixture
def zoo_copy(own_zoo, tmp_path, monkeypatch):
  """A copy of the zoo, standing in for the package's."""
  folder = str(tmp_path / 'weights')
  shutil.copytree(own_zoo, folder)
  monkeypatch.setattr(pretrained, 'WEIGHTS_DIR', folder)
  return folder


def test_export_writes_entry_that_loads_as_the_run(own_zoo, tmp_path):
  e = pretrained.entry('shapes', own_zoo)
  assert e.task == 'colorize' and e.parameters > 0
  config, state = pretrained.load_state('shapes', own_zoo)
  as_json = lambda c: json.loads(c.to_json_best_effort())
  assert as_json(config.model) == as_json(colorize.get_config('smoke').model)
  # The weights are the checkpoint's.
  workdir = os.path.join(os.path.dirname(own_zoo), 'runs', 'shapes')
  restored, _ = workdir_lib.restore_latest(workdir_lib.load_config(workdir), workdir)
  for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(restored.params)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # A second export of that name is refused, nothing changed.
  before = open(os.path.join(own_zoo, pretrained.MANIFEST)).read()
  with pytest.raises(pretrained.PretrainedError, match='already holds'):
    pretrained.export(workdir, 'shapes', own_zoo, summary='', data='',
                      commands=[], progress=lambda _: None)
  assert open(os.path.join(own_zoo, pretrained.MANIFEST)).read() == before


def test_altered_weights_are_refused_naming_the_file(zoo_copy):
  path = os.path.join(zoo_copy, pretrained.entry('shapes').file)
  data = bytearray(open(path, 'rb').read())
  data[len(data) // 2] ^= 1
  open(path, 'wb').write(bytes(data))
  with pytest.raises(pretrained.PretrainedError, match='SHA-256') as e:
    pretrained.load('shapes')
  assert path in str(e.value) and 'reinstall' in str(e.value)


def test_missing_weights_are_refused_naming_the_file(zoo_copy):
  path = os.path.join(zoo_copy, pretrained.entry('shapes').file)
  os.remove(path)
  with pytest.raises(pretrained.PretrainedError, match='missing') as e:
    pretrained.load_state('shapes')
  assert path in str(e.value)


def test_renamed_parameters_are_refused_naming_them(zoo_copy):
  # Weights written before a module was renamed: the checksum holds, the
  # names do not.
  e = pretrained.entry('shapes')
  path = os.path.join(zoo_copy, e.file)
  variables = flax.serialization.msgpack_restore(open(path, 'rb').read())
  first = sorted(variables['params'])[0]
  variables['params']['Renamed_0'] = variables['params'].pop(first)
  open(path, 'wb').write(flax.serialization.msgpack_serialize(variables))
  manifest_path = os.path.join(zoo_copy, pretrained.MANIFEST)
  data = json.load(open(manifest_path))
  data['models'][0]['sha256'] = pretrained.sha256(path)
  json.dump(data, open(manifest_path, 'w'))
  with pytest.raises(pretrained.PretrainedError) as err:
    pretrained.load('shapes')
  message = str(err.value)
  assert f'missing params/{first}' in message
  assert 'unexpected params/Renamed_0' in message


def test_unknown_name_lists_the_models(zoo_copy):
  with pytest.raises(pretrained.PretrainedError, match="'shapes'"):
    pretrained.load('nope')


def _image(path, h=40, w=48):
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(path)
  return path


def test_apply_takes_a_pretrained_model(zoo_copy, tmp_path):
  src = _image(str(tmp_path / 'in.png'))
  out = str(tmp_path / 'out')
  assert cli.call(apply.main, ['--pretrained=shapes', f'--output={out}',
                               '--compare', src]) == 0
  result = np.asarray(Image.open(os.path.join(out, 'in.png')))
  assert result.shape == (40, 48, 3)
  # The same as the Python API's output.
  applier = apply.Applier.pretrained('shapes')
  again = applier(image_io.read(src)).image.pixels
  np.testing.assert_allclose(result / 255.0, again, atol=1 / 255 + 1e-6)


def test_apply_needs_exactly_one_source(zoo_copy, tmp_path, capsys):
  src = _image(str(tmp_path / 'in.png'))
  args = [f'--output={tmp_path / "out"}', src]
  assert cli.call(apply.main, args) == 2
  assert cli.call(apply.main, ['--pretrained=shapes', '--workdir=x', *args]) == 2
  assert cli.call(apply.main, ['--pretrained=shapes', '--step=3', *args]) == 2
  assert 'one set of weights' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'out')


def test_codec_takes_a_pretrained_model(zoo_copy, tmp_path):
  src = _image(str(tmp_path / 'in.png'), 32, 32)
  aec_path, png_path = str(tmp_path / 'x.aec'), str(tmp_path / 'x.png')
  assert cli.call(codec.main, ['--pretrained=codec', 'compress', src,
                               aec_path]) == 0
  assert cli.call(codec.main, ['--pretrained=codec', 'decompress', aec_path,
                               png_path]) == 0
  assert np.asarray(Image.open(png_path)).shape == (32, 32, 3)


def test_codec_refuses_a_model_that_makes_none(zoo_copy, tmp_path, capsys):
  src = _image(str(tmp_path / 'in.png'), 32, 32)
  assert cli.call(codec.main, ['--pretrained=shapes', 'compress', src,
                               str(tmp_path / 'x.aec')]) == 1
  assert 'makes no codec' in capsys.readouterr().err
  assert not os.path.exists(tmp_path / 'x.aec')


def test_score_command_measures_a_folder(zoo_copy, tmp_path, capsys):
  folder = tmp_path / 'images'
  folder.mkdir()
  _image(str(folder / 'a.png'), 32, 32)
  out = str(tmp_path / 'scores')
  assert cli.call(pretrained_main.main, ['score', 'shapes',
                                         f'--images={folder}',
                                         f'--output={out}']) == 0
  printed = capsys.readouterr().out
  assert '| model |' in printed and '| gray |' in printed
  results = json.load(open(os.path.join(out, 'results.json')))
  assert len(results['images']) == 1
  # The folder is not scored into again.
  assert cli.call(pretrained_main.main, ['score', 'shapes',
                                         f'--images={folder}',
                                         f'--output={out}']) == 1


def test_check_command_reports_a_damaged_model(zoo_copy, capsys):
  assert cli.call(pretrained_main.main, ['check']) == 0
  path = os.path.join(zoo_copy, pretrained.entry('codec').file)
  with open(path, 'ab') as f:
    f.write(b'x')
  assert cli.call(pretrained_main.main, ['check']) == 1
  assert 'codec: error' in capsys.readouterr().err


# ---------------------------------------------------------------------------
# Fine-tuning from a pretrained model.


def test_warm_start_takes_the_shipped_variables(zoo_copy):
  config = colorize.get_config('smoke')
  config.init_from = 'pretrained:shapes'
  task, model, tx = workdir_lib.build(config)
  fresh = steps.create_train_state(model, tx, jax.random.key(7),
                                   workdir_lib.init_shape(task, config, model))
  rep = parallel.replicated(parallel.make_mesh())
  started = pretrained.warm_start(config, fresh, rep)
  _, shipped = pretrained.load('shapes')
  for a, b in zip(jax.tree.leaves(started.params),
                  jax.tree.leaves(shipped['params'])):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert int(started.step) == 0
  # Another model size is refused, naming the model's config.
  config.model.latent_features = 4
  task, model, tx = workdir_lib.build(config)
  other = steps.create_train_state(model, tx, jax.random.key(7),
                                   workdir_lib.init_shape(task, config, model))
  with pytest.raises(pretrained.PretrainedError, match='other shapes'):
    pretrained.warm_start(config, other, rep)


def test_config_check_refuses_an_unknown_pretrained_name(zoo_copy):
  config = colorize.get_config('smoke')
  config.init_from = 'pretrained:nope'
  with pytest.raises(config_lib.ConfigError, match="'shapes'"):
    config_lib.validate(config, 1)


@pytest.mark.slow
def test_a_run_fine_tunes_a_shipped_model(tmp_path):
  # Two steps from the shipped shapes colorizer score about as it does;
  # from scratch they score far lower.
  name = 'colorize-shapes'
  stored = pretrained.score_of(pretrained.entry(name), 'shapes test')['mean']['model']['psnr']
  common = [sys.executable, '-m', 'ae_research.main',
            '--config=configs/colorize.py', '--config.num_train_steps=2',
            '--config.optimizer.warmup_steps=1',
            # Fine-tuning's small steps (the default warmup ramps up from 0).
            '--config.optimizer.learning_rate=1e-5', '--config.eval_every_steps=2',
            '--config.num_eval_examples=64', '--config.shapes.num_train=256',
            '--config.shapes.num_test=64']
  scores = {}
  for label, extra in (('tuned', [f'--config.init_from=pretrained:{name}']),
                       ('fresh', [])):
    workdir = str(tmp_path / label)
    subprocess.run(common + [f'--workdir={workdir}'] + extra, cwd=ROOT,
                   check=True, capture_output=True)
    with open(os.path.join(workdir, 'eval_history.jsonl')) as f:
      scores[label] = json.loads(f.readlines()[-1])['psnr']
  assert scores['tuned'] > stored - 1.0
  assert scores['fresh'] < scores['tuned'] - 5.0


# ---------------------------------------------------------------------------
# Every recipe runs, at smoke size.


@pytest.mark.slow
@pytest.mark.parametrize('name', [r.name for r in zoo.RECIPES])
def test_recipe_runs_at_smoke_size(name, tmp_path):
  out = str(tmp_path / 'zoo')
  subprocess.run([sys.executable, '-m', 'experiments.zoo', 'all',
                  '--budget=smoke', f'--only={name}', f'--out={out}',
                  '--noclassical', '--nospeed'], cwd=ROOT, check=True, capture_output=True)
  e = pretrained.entry(name, os.path.join(out, 'weights'))
  assert e.check['value'] == pytest.approx(
      pretrained.recheck(name, os.path.join(out, 'weights'))[0], abs=0.05)
  assert os.path.isfile(os.path.join(out, 'zoo.md'))
  # A recipe of stages: each trained, each in the entry's budget.
  assert len(e.training.get('before', [])) == len(zoo.BY_NAME[name].stages)


def test_each_stage_of_a_recipe_starts_from_the_one_before():
  staged = [r for r in zoo.RECIPES if r.stages]
  assert staged
  for recipe in staged:
    commands = zoo.budget_commands(recipe, 'cpu', 'runs/zoo/x')
    assert len(commands) == len(recipe.stages) + 1
    assert not any(a.startswith('--config.init_from') for a in commands[0])
    for stage, command, after in zip(recipe.stages, commands, commands[1:]):
      workdir = f'runs/zoo/x-{stage.name}'
      assert f'--workdir={workdir}' in command
      assert f'--config.num_train_steps={stage.cpu_steps}' in command
      assert f'--config.init_from={workdir}' in after
    assert '--workdir=runs/zoo/x' in commands[-1]


def test_the_gpu_budget_leaves_out_recipes_without_gpu_steps(tmp_path):
  cpu_only = [r.name for r in zoo.RECIPES if not r.gpu_steps]
  assert cpu_only
  r = subprocess.run([sys.executable, '-m', 'experiments.zoo', 'all', '--budget=gpu',
                      f'--only={",".join(cpu_only)}', f'--out={tmp_path}'],
                     cwd=ROOT, capture_output=True, text=True)
  assert r.returncode == 0, r.stderr[-2000:]
  assert all(f'{n}: no GPU steps' in r.stdout for n in cpu_only)
  assert not os.path.exists(tmp_path / 'runs')


@pytest.mark.slow
def test_gpu_script_dry_run_leaves_weights_and_tables(tmp_path):
  out = str(tmp_path / 'out')
  subprocess.run(['bash', 'benchmarks/zoo_gpu.sh', '--dry_run', out], cwd=ROOT,
                 check=True, capture_output=True,
                 env={**os.environ, 'ONLY': 'sr-x4', 'PYTHON': sys.executable})
  assert pretrained.names(os.path.join(out, 'weights')) == ('sr-x4',)
  for name in ('zoo.md', 'train_speed.md', 'log.txt'):
    assert os.path.isfile(os.path.join(out, name)), name


def test_adopt_copies_a_checked_model(own_zoo, tmp_path):
  target = str(tmp_path / 'target')
  e = pretrained.adopt('shapes', own_zoo, target)
  assert pretrained.entry('shapes', target) == e
  assert pretrained.recheck('shapes', target)[0] == pytest.approx(
      e.check['value'], abs=0.05)
  # A damaged source is refused before anything is written.
  source = str(tmp_path / 'source')
  shutil.copytree(own_zoo, source)
  with open(os.path.join(source, pretrained.entry('codec', source).file), 'ab') as f:
    f.write(b'x')
  with pytest.raises(pretrained.PretrainedError, match='SHA-256'):
    pretrained.adopt('codec', source, target)
  assert pretrained.names(target) == ('shapes',)
