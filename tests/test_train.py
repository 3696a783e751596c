"""The shared loop end to end: outputs, exact resume, failed saves, NaN."""

import json
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_accumulator

from ae_research import config_lib, errors, parallel, steps, tasks, train
from ae_research import workdir as workdir_lib


def _short(config):
  config.num_train_steps = 12
  config.checkpoint_every_steps = 4
  config.eval_every_steps = 8
  config.log_every_steps = 4
  return config


def _params(state):
  return jax.tree.map(np.asarray, state.params)


@pytest.mark.slow
def test_smoke_run_writes_everything(smoke_config, tmp_path):
  workdir = str(tmp_path / 'run')
  state = train.train_and_evaluate(smoke_config, workdir)
  assert int(state.step) == smoke_config.num_train_steps
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  for who in ('model', 'baseline'):
    assert set(metrics[who]) == {'psnr', 'ssim', 'shape_color_accuracy'}
    assert all(np.isfinite(v) for v in metrics[who].values())
  assert metrics['baseline']['shape_color_accuracy'] == 0.0  # Gray is neither.
  assert sorted(os.listdir(os.path.join(workdir, 'samples'))) == [
      'step_0000010.png', 'step_0000020.png']
  events = event_accumulator.EventAccumulator(os.path.join(workdir, 'tensorboard'))
  events.Reload()
  assert {'train/loss', 'train/images_per_sec', 'eval/psnr'} <= set(events.Tags()['scalars'])
  assert [e.step for e in events.Scalars('eval/psnr')] == [10, 20]
  assert events.Tags()['images'] == ['samples/input_output_target']
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['model']['features'] == list(smoke_config.model.features)
  history = train.read_history(workdir)
  assert [r['step'] for r in history] == [10, 20]
  assert 0 < history[0]['train_minutes'] < history[1]['train_minutes']
  assert history[-1]['psnr'] == metrics['model']['psnr']


class _Crash(Exception):
  pass


def _crash_after(monkeypatch, num_steps):
  """Makes the next run's train step raise once it ran `num_steps` times."""
  real = parallel.jit_train_step

  def crashing(step_fn, mesh):
    jitted, calls = real(step_fn, mesh), [0]

    def step(*args):
      calls[0] += 1
      if calls[0] > num_steps:
        raise _Crash()
      return jitted(*args)
    return step

  monkeypatch.setattr(parallel, 'jit_train_step', crashing)


@pytest.mark.slow
def test_interrupted_run_resumes_to_identical_parameters(smoke_config, tmp_path,
                                                          monkeypatch, caplog):
  config = _short(smoke_config)
  straight = _params(train.train_and_evaluate(config, str(tmp_path / 'a')))

  workdir = str(tmp_path / 'b')
  with monkeypatch.context() as m:
    _crash_after(m, 6)  # Dies two steps after the checkpoint at step 4.
    with pytest.raises(_Crash):
      train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4']
  caplog.set_level('INFO')
  resumed = train.train_and_evaluate(config, workdir)
  assert 'Resumed from step 4 ' in caplog.text
  assert int(resumed.step) == 12
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(_params(resumed))):
    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_nan_loss_stops_the_run_and_keeps_the_checkpoint(smoke_config, tmp_path):
  config = _short(smoke_config)
  config.optimizer.learning_rate = 1e20
  config.optimizer.grad_clip_norm = 0.0
  config.checkpoint_every_steps = 1
  workdir = str(tmp_path / 'run')
  with pytest.raises(train.TrainingDiverged, match='(loss|grad_norm) is (nan|inf)') as e:
    train.train_and_evaluate(config, workdir)
  ckpts = os.path.join(workdir, 'checkpoints')
  saved = sorted(int(s) for s in os.listdir(ckpts) if s.isdigit())
  assert (f'up to step {saved[-1]} ' in str(e.value) if saved
          else 'no checkpoint' in str(e.value))
  assert not os.path.exists(os.path.join(workdir, 'metrics.json'))
  if saved:  # The kept checkpoint holds finite parameters and restores.
    mngr = ocp.CheckpointManager(ckpts)
    raw = mngr.restore(saved[-1], args=ocp.args.Composite(
        state=ocp.args.StandardRestore()))
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(raw['state']['params']))
    mngr.close()


@pytest.mark.slow
def test_resuming_with_another_model_is_refused(smoke_config, tmp_path):
  workdir = str(tmp_path / 'run')
  config = _short(smoke_config)
  config.num_train_steps = 4
  train.train_and_evaluate(config, workdir)
  before = sorted(os.listdir(os.path.join(workdir, 'checkpoints')))
  config.model.latent_features = 7
  with pytest.raises(workdir_lib.WorkdirMismatch, match='config.model'):
    train.train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == before


@pytest.mark.slow
def test_init_from_starts_with_another_runs_parameters(smoke_config, tmp_path):
  source = str(tmp_path / 'source')
  config = _short(smoke_config)
  config.num_train_steps = 4
  trained = _params(train.train_and_evaluate(config, source))
  config.init_from = source
  mesh = parallel.make_mesh()
  task, model, tx = workdir_lib.build(config)
  fresh = steps.create_train_state(model, tx, jax.random.key(1),
                                   workdir_lib.init_shape(task, config, model))
  started = workdir_lib.warm_start(config, fresh, parallel.replicated(mesh))
  assert int(started.step) == 0
  jax.tree.map(np.testing.assert_array_equal, _params(started), trained)
  # A run of another model shape is refused, naming config.model.
  config.model.latent_features = 7
  _, model, tx = workdir_lib.build(config)
  other = steps.create_train_state(model, tx, jax.random.key(1), (1, 4, 4, 1))
  with pytest.raises(workdir_lib.WorkdirMismatch, match='config.model'):
    workdir_lib.warm_start(config, other, parallel.replicated(mesh))
  # A missing run is named before anything runs.
  config.init_from = str(tmp_path / 'nothing')
  with pytest.raises(config_lib.ConfigError, match='init_from'):
    train.train_and_evaluate(config, str(tmp_path / 'new'))
  assert not os.path.exists(tmp_path / 'new')


@pytest.mark.slow
@pytest.mark.parametrize('module,variant,fields', [
    ('denoise', 'smoke', {}), ('denoise', 'crosshair,smoke', {}),
    ('denoise', 'dncnn,smoke', {}), ('denoise', 'ffdnet,blind,smoke', {}),
    ('super_resolution', 'smoke', {'compute_dtype': 'bfloat16'}),
    ('super_resolution', 'autoencoder,smoke', {}),
    ('super_resolution', 'edsr,x4,smoke', {}),
    ('colorize', 'photos,smoke', {}), ('colorize', 'photos,unet,smoke', {})])
def test_photo_experiments_train_and_score_whole_images(module, variant, fields,
                                                        data_dir, tmp_path):
  import importlib
  config = importlib.import_module(f'configs.{module}').get_config(variant)
  config.update(data_dir=data_dir, **fields)
  config.num_train_steps = 6
  config.eval_every_steps = 6
  config.checkpoint_every_steps = 6
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  task = tasks.get(config.task)
  assert metrics['baseline'] == metrics[task.baseline_name(config)]
  assert set(metrics['model']) == set(metrics['baseline'])
  with open(os.path.join(workdir, 'eval', 'results.json')) as f:
    results = json.load(f)
  assert len(results['images']) == 3  # The held-out photos, whole.
  assert os.path.exists(os.path.join(workdir, 'eval', 'results.md'))


def _photo_config(module, variant, data_dir, **fields):
  import importlib
  config = importlib.import_module(f'configs.{module}').get_config(variant)
  config.update(data_dir=data_dir, num_train_steps=12, checkpoint_every_steps=4,
                eval_every_steps=100, log_every_steps=4, eval_classical=False,
                num_eval_examples=1, num_sample_images=0, **fields)
  return config


def _image_folder(path, sizes):
  from PIL import Image
  path.mkdir()
  rng = np.random.default_rng(len(sizes))
  for i, size in enumerate(sizes):
    Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(path / f'{i}.png')
  return f'folder:{path}'


@pytest.mark.slow
def test_device_pipeline_run_resumes_to_identical_parameters(
    data_dir, tmp_path, monkeypatch, caplog):
  # (The host pipeline's exact resume: test_interrupted_run_resumes_...)
  config = _photo_config(
      'denoise', 'smoke', data_dir,
      dataset=_image_folder(tmp_path / 'train', [(40, 48), (30, 36), (52, 28)]),
      eval_dataset=_image_folder(tmp_path / 'test', [(24, 32)]))
  caplog.set_level('INFO')
  straight = _params(train.train_and_evaluate(config, str(tmp_path / 'a')))
  assert 'Training batches made on the device' in caplog.text
  workdir = str(tmp_path / 'b')
  with monkeypatch.context() as m:
    _crash_after(m, 6)
    with pytest.raises(_Crash):
      train.train_and_evaluate(config, workdir)
  resumed = train.train_and_evaluate(config, workdir)
  assert 'Resumed from step 4 ' in caplog.text
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(_params(resumed))):
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
  # The run keeps its pipeline: asking for the other one is refused.
  other = config.copy_and_resolve_references()
  other.input_pipeline = 'host'
  with pytest.raises(errors.UserError, match='written by the device pipeline'):
    train.train_and_evaluate(other, workdir)


def test_device_pipeline_refuses_data_it_cannot_hold(smoke_config, tmp_path):
  smoke_config.input_pipeline = 'device'  # Generated shapes, whole images.
  with pytest.raises(config_lib.ConfigError, match="input_pipeline='device'"):
    train.train_and_evaluate(smoke_config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.slow
def test_eval_mode_scores_a_workdir_on_a_folder(data_dir, tmp_path):
  from configs import super_resolution
  from PIL import Image
  config = super_resolution.get_config('smoke')
  config.data_dir = data_dir
  config.num_train_steps = 4
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  folder = tmp_path / 'Mine'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i, size in enumerate([(33, 45), (30, 30)]):
    Image.fromarray(rng.integers(0, 256, size + (3,), np.uint8)).save(folder / f'{i}.png')
  config.eval_dataset = f'folder:{folder}'
  results = train.evaluate_workdir(config, workdir)
  assert [r['height'] for r in results['images']] == [33, 30]
  assert os.path.exists(os.path.join(workdir, 'eval_Mine', 'results.md'))
  config.num_eval_examples = 1  # The first image only.
  assert [r['height'] for r in train.evaluate_workdir(config, workdir)['images']] == [33]
  with pytest.raises(workdir_lib.WorkdirMismatch, match='holds no run'):
    train.evaluate_workdir(config, str(tmp_path / 'empty'))


@pytest.mark.slow
def test_eval_mode_scores_another_noise_level_in_its_own_folder(data_dir, tmp_path):
  from configs import denoise
  config = denoise.get_config('ffdnet,blind,smoke')
  config.data_dir = data_dir
  config.num_train_steps = 4
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  scores = {}
  for sigma in (15.0, 50.0):
    at = config.copy_and_resolve_references()
    at.denoise.sigma, at.denoise.sigma_range = sigma, (0.0, 0.0)
    at.eval_classical = sigma == 15.0
    scores[sigma] = train.evaluate_workdir(at, workdir)['mean']
    assert os.path.exists(os.path.join(
        workdir, f'eval_photos_sigma{sigma:g}_sigma_range0-0', 'results.json'))
  assert 'nl_means' in scores[15.0] and 'nl_means' not in scores[50.0]
  # More noise: a noisier input.
  assert scores[50.0]['noisy input']['psnr'] < scores[15.0]['noisy input']['psnr']
  # What the parameters mean may not change.
  config.model.width = 16
  with pytest.raises(workdir_lib.WorkdirMismatch, match='config.model'):
    train.evaluate_workdir(config, workdir)
