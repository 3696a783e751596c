"""Whole-image evaluation of any size, with baselines and reports."""

import json
import os

import jax
import numpy as np
import optax
import pytest
from PIL import Image

from ae_research import evaluate, steps, summaries, tasks
from ae_research.tasks import denoise as denoise_task
from configs import denoise, super_resolution


def _folder(tmp_path, sizes):
  rng = np.random.default_rng(0)
  for i, (h, w) in enumerate(sizes):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(tmp_path / f'im{i}.png')
  return str(tmp_path)


def _state(config):
  task = tasks.get(config.task)
  model = task.make_model(config)
  return model, steps.create_train_state(model, optax.adam(1e-3), jax.random.key(0),
                                         (1, 8, 8, task.input_channels(config)))


@pytest.mark.slow
def test_apply_whole_keeps_any_size():
  config = denoise.get_config('smoke')
  model, state = _state(config)
  predict = jax.jit(steps.make_predict(model))
  for h, w in [(17, 23), (8, 8), (5, 40)]:
    x = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    assert evaluate.apply_whole(predict, state, x, 4).shape == (h, w, 3)


def test_denoise_evaluation_writes_reports(tmp_path):
  config = denoise.get_config('smoke')
  model, state = _state(config)
  source_dir = _folder(tmp_path / 'in' if os.makedirs(tmp_path / 'in') is None else None,
                       [(30, 41), (24, 24)])
  from ae_research.datasets import folder
  out = str(tmp_path / 'out')
  results = evaluate.evaluate_images(state, jax.jit(steps.make_predict(model)),
                                     tasks.get('denoise'), folder.FolderSource(source_dir),
                                     config, out_dir=out)
  assert [r['name'] for r in results['images']] == ['im0', 'im1']
  classical = ['nl_means'] + (['bm3d'] if denoise_task.bm3d else [])
  assert set(results['mean']) == {'model', 'noisy input', *classical}
  for r in results['images']:
    # Non-local means beats the noisy input on any image.
    assert r['nl_means']['psnr'] > r['noisy input']['psnr']
  with open(os.path.join(out, 'results.json')) as f:
    assert json.load(f)['mean']['nl_means']['psnr'] == results['mean']['nl_means']['psnr']
  table = open(os.path.join(out, 'results.md')).read()
  assert '| **mean** | nl_means |' in table
  grid = np.asarray(Image.open(os.path.join(out, 'images', 'im0.png')))
  # input | model | nl_means | target (the noisy-input baseline is the
  # input), each under its label.
  names = ['input', 'model', *classical, 'target']
  expected = summaries.labelled_row([(n, np.zeros((30, 41, 3))) for n in names])
  assert grid.shape == expected.shape
  body = grid.shape[0] - 30
  for i in range(len(names)):  # Dark label pixels above each column.
    assert grid[:body, i * 43:i * 43 + 30].min() < 128


@pytest.mark.slow
def test_the_same_seed_gives_the_same_noise(tmp_path):
  config = denoise.get_config('smoke')
  model, state = _state(config)
  os.makedirs(tmp_path / 'in')
  from ae_research.datasets import folder
  source = folder.FolderSource(_folder(tmp_path / 'in', [(16, 16)]))
  run = lambda: evaluate.evaluate_images(
      state, jax.jit(steps.make_predict(model)), tasks.get('denoise'), source,
      config, classical=False)['mean']
  assert run() == run()


@pytest.mark.slow
def test_super_resolution_scores_bicubic_on_y_for_both_designs(tmp_path):
  """The low-resolution model (the default) and the autoencoder on the
  bicubic input give outputs of the target's size, beside the same bicubic."""
  os.makedirs(tmp_path / 'in')
  from ae_research.datasets import folder
  source = folder.FolderSource(_folder(tmp_path / 'in', [(31, 40)]))
  results = {}
  for variant in ('smoke', 'autoencoder,smoke'):
    config = super_resolution.get_config(variant)
    model, state = _state(config)
    out = str(tmp_path / variant)
    results[variant] = evaluate.evaluate_images(
        state, jax.jit(steps.make_predict(model)), tasks.get('super_resolution'),
        source, config, out_dir=out)
    assert results[variant]['images'][0]['height'] == 30  # Mod-cropped.
    assert results[variant]['sample'][1].shape == (1, 30, 39, 3)
  assert model.upscale == 1 and config.model.arch == 'autoencoder'
  a, b = (results[v]['mean']['bicubic'] for v in results)
  assert set(a) == {'psnr_y', 'ssim_y', 'psnr_rgb'}
  assert a == b
  assert a != results['smoke']['mean']['model']


@pytest.mark.slow
def test_ffdnet_evaluation_shows_the_noisy_image_not_the_noise_map(tmp_path):
  config = denoise.get_config('ffdnet,smoke')
  model, state = _state(config)
  os.makedirs(tmp_path / 'in')
  from ae_research.datasets import folder
  source = folder.FolderSource(_folder(tmp_path / 'in', [(20, 22)]))
  results = evaluate.evaluate_images(state, jax.jit(steps.make_predict(model)),
                                     tasks.get('denoise'), source, config,
                                     classical=False)
  shown, output, target = (x[0] for x in results['sample'])
  assert shown.shape == output.shape == target.shape == (20, 22, 3)
  noisy = tasks.get('denoise').make_pair(
      {'image': np.zeros((20, 22, 3), np.uint8)}, np.random.default_rng(0), config)
  assert noisy['input'].shape[-1] == 4
  np.testing.assert_allclose(noisy['input'][..., 3], config.denoise.sigma / 255)
