"""The fast tier's floor (`pytest -m "not slow"`): every module of the
package imports, and one tiny run goes through the paths that the slow
tests (test_train, test_apply, the subprocess runs) cover at length: train,
checkpoint, resume, score a folder, apply to a file. The compression task,
whose runs are all slow, is scored here on a made-up prediction."""

import importlib
import json
import os
import pkgutil

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import ae_research
from ae_research import apply, cli, image_io, parallel, tasks, train
from configs import compress, denoise

MODULES = sorted(m.name for m in pkgutil.walk_packages(
    [os.path.dirname(ae_research.__file__)], 'ae_research.'))


def test_the_package_has_its_modules():
  assert {'ae_research.train', 'ae_research.rd.__main__', 'ae_research.tasks.denoise',
          'ae_research.datasets.shapes'} <= set(MODULES)


@pytest.mark.parametrize('name', MODULES)
def test_every_module_imports(name):
  assert importlib.import_module(name).__name__ == name


class _Crash(Exception):
  pass


def test_a_tiny_run_trains_resumes_scores_a_folder_and_applies(
    data_dir, tmp_path, monkeypatch, caplog, capsys):
  # One test, not several sharing a fixture: under -n 2 a shared run would
  # be trained once per worker.
  config = denoise.get_config('smoke')
  config.update(data_dir=data_dir, num_train_steps=4, eval_every_steps=4,
                checkpoint_every_steps=2, log_every_steps=2, num_eval_examples=2,
                num_sample_images=1, eval_classical=False)
  workdir = str(tmp_path / 'run')
  # Stopped after step 3, past the checkpoint of step 2...
  real, calls = parallel.jit_train_step, []
  def crashing(step_fn, mesh):
    jitted = real(step_fn, mesh)
    def step(*args):
      calls.append(1)
      if len(calls) > 3:
        raise _Crash()
      return jitted(*args)
    return step
  with monkeypatch.context() as m:
    m.setattr(parallel, 'jit_train_step', crashing)
    with pytest.raises(_Crash):
      train.train_and_evaluate(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'metrics.json'))
  # ... and started again: it goes on from step 2 and finishes.
  caplog.set_level('INFO', logger='absl')
  assert int(train.train_and_evaluate(config, workdir).step) == 4
  assert 'Resumed from step 2 ' in caplog.text
  with open(os.path.join(workdir, 'metrics.json')) as f:
    metrics = json.load(f)
  assert np.isfinite(metrics['model']['psnr']) and set(metrics['model']) == set(
      metrics['baseline'])
  assert [r['step'] for r in train.read_history(workdir)] == [4]

  # Scored on a folder of one's own images, whole.
  folder = tmp_path / 'Mine'
  folder.mkdir()
  pixels = np.random.default_rng(0).integers(0, 256, (20, 28, 3), np.uint8)
  Image.fromarray(pixels).save(folder / 'a.png')
  config.eval_dataset = f'folder:{folder}'
  results = train.evaluate_workdir(config, workdir)
  assert [(r['height'], r['width']) for r in results['images']] == [(20, 28)]

  # Applied to the same file from the command.
  out = tmp_path / 'out'
  assert cli.call(apply.main, [f'--workdir={workdir}', f'--output={out}',
                               str(folder / 'a.png')]) == 0, capsys.readouterr().err
  assert image_io.read(str(out / 'a.png')).pixels.shape == (20, 28, 3)


def test_the_compression_task_scores_rate_and_distortion_without_a_model():
  """The rate is the likelihoods' bits per pixel; the loss is
  lmbda * 255^2 * MSE + bpp, per example."""
  config = compress.get_config('smoke')
  task = tasks.get('compress')
  assert task.check_config(config) == []
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (16, 16, 3), np.uint8)
  pair = task.make_pair({'image': image}, rng, config)
  np.testing.assert_allclose(pair['input'], image / 255.0, rtol=1e-6)
  np.testing.assert_array_equal(pair['input'], pair['target'])
  target = np.stack([pair['target'], pair['target'][::-1]])
  output = np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1).astype(np.float32)
  likelihoods = {'y': rng.uniform(0.05, 1, (2, 4, 4, 8)).astype(np.float32),
                 'z': rng.uniform(0.05, 1, (2, 2, 2, 4)).astype(np.float32)}
  pred = {'output': jnp.asarray(output),
          'likelihoods': {k: jnp.asarray(v) for k, v in likelihoods.items()}}
  batch = {'target': jnp.asarray(target), 'mask': jnp.ones(2)}
  bpp = sum(-np.log2(v).reshape(2, -1).sum(1) for v in likelihoods.values()) / 256
  mse = ((output - target) ** 2).reshape(2, -1).mean(1)
  loss = task.loss(pred, batch, config)
  np.testing.assert_allclose(loss['bpp'], bpp, rtol=1e-5)
  np.testing.assert_allclose(loss['loss'], config.compress.lmbda * 255 ** 2 * mse + bpp,
                             rtol=1e-5)
  total, count = task.metrics(pred, batch, config)['bpp_estimated']
  np.testing.assert_allclose(total, bpp.sum(), rtol=1e-5)
  assert count == 2
