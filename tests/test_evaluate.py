"""Whole-image evaluation of any size, with baselines and reports."""

import json
import os

import jax
import numpy as np
import optax
from PIL import Image

from ae_research import evaluate, models, steps, tasks
from configs import denoise, super_resolution


def _folder(tmp_path, sizes):
  rng = np.random.default_rng(0)
  for i, (h, w) in enumerate(sizes):
    Image.fromarray(rng.integers(0, 256, (h, w, 3), np.uint8)).save(tmp_path / f'im{i}.png')
  return str(tmp_path)


def _state(config, channels=3):
  model = models.from_config(config.model, 3)
  return model, steps.create_train_state(model, optax.adam(1e-3), jax.random.key(0),
                                         (1, 8, 8, channels))


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
  assert set(results['mean']) == {'model', 'noisy input', 'nl_means'}
  for r in results['images']:
    # Non-local means beats the noisy input on any image.
    assert r['nl_means']['psnr'] > r['noisy input']['psnr']
  with open(os.path.join(out, 'results.json')) as f:
    assert json.load(f)['mean']['nl_means']['psnr'] == results['mean']['nl_means']['psnr']
  table = open(os.path.join(out, 'results.md')).read()
  assert '| **mean** | nl_means |' in table
  grid = np.asarray(Image.open(os.path.join(out, 'images', 'im0.png')))
  # input | output | nl_means | target (the noisy-input baseline is the input).
  assert grid.shape[0] == 30 and 4 * 41 < grid.shape[1] < 5 * 41


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


def test_super_resolution_scores_bicubic_on_y(tmp_path):
  config = super_resolution.get_config('smoke')
  model, state = _state(config)
  os.makedirs(tmp_path / 'in')
  from ae_research.datasets import folder
  source = folder.FolderSource(_folder(tmp_path / 'in', [(31, 40)]))
  results = evaluate.evaluate_images(state, jax.jit(steps.make_predict(model)),
                                     tasks.get('super_resolution'), source, config)
  assert set(results['mean']['bicubic']) == {'psnr_y', 'ssim_y', 'psnr_rgb'}
  assert results['images'][0]['height'] == 30  # Mod-cropped to the scale.
