"""Contracts of the registries: every task and every denoising corruption,
each list on its own. A new task or corruption is covered by registering it.

- every corruption makes its pair on the host (numpy, reproducible from the
  seed) and, where it says it can, in batches made on the device (jax key,
  under jit and vmap), the two paths agreeing;
- one that cannot is refused by the config check for the device pipeline
  and sends 'auto' to the host;
- each has its classical methods (images of the target's size) or declares
  none; `apply` runs with it;
- every task's methods take the interface's parameters.
"""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ae_research import checks, color, config_lib, image_io, input_pipeline, steps
from ae_research import tasks, tiling, zoo
from ae_research import workdir as workdir_lib
from ae_research.tasks import base, colorize, denoise
from configs import colorize as colorize_config
from configs import denoise as denoise_config

CORRUPTIONS = sorted(denoise.CORRUPTIONS)
TASK = tasks.get('denoise')


def _config(noise: str, variant: str = 'smoke'):
  config = denoise_config.get_config(variant)
  config.denoise.noise = noise
  return config


def _images(n: int, size: int = 48, seed: int = 0) -> np.ndarray:
  """n smooth color images in [0, 1] (noise-free, so corruptions show)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:size, 0:size] / size
  out = []
  for _ in range(n):
    a, b, c = rng.uniform(1, 6, 3)
    out.append(np.stack([0.5 + 0.3 * np.sin(a * x + k * b * y + c)
                         for k in range(3)], -1))
  return np.asarray(out, np.float32)


def _changed(pair) -> tuple[float, float]:
  """(fraction of pixels changed, mean absolute change) of a pair or batch."""
  diff = np.abs(np.asarray(pair['input'])[..., :3] - np.asarray(pair['target']))
  return float(np.mean(diff.max(-1) > 1e-6)), float(np.mean(diff))


@pytest.mark.parametrize('noise', CORRUPTIONS)
def test_host_pair_is_reproducible_and_corrupted(noise):
  config = _config(noise)
  image = (_images(1)[0] * 255).round().astype(np.uint8)
  make = lambda seed: TASK.make_pair({'image': image}, np.random.default_rng(seed),
                                     config)
  first, again, other = make(0), make(0), make(1)
  assert set(first) >= {'input', 'target'}
  for k, v in first.items():
    assert isinstance(v, np.ndarray), (k, type(v))
    np.testing.assert_array_equal(v, again[k])
  assert first['input'].dtype == np.float32
  assert first['input'].shape[:2] == first['target'].shape[:2] == (48, 48)
  assert _changed(first)[0] > 0, f'{noise} changed nothing'
  assert not np.array_equal(first['input'], other['input']), (
      f'{noise}: the seed does not reach the corruption')


def _device_pairs(config, images: np.ndarray, seed: int = 0):
  keys = jax.random.split(jax.random.key(seed), len(images))
  fn = jax.jit(jax.vmap(lambda x, k: TASK.make_pair({'image': x}, k, config)))
  return jax.tree.map(np.asarray, fn(jnp.asarray(images), keys))


@pytest.mark.parametrize('noise', [n for n in CORRUPTIONS
                                   if denoise.CORRUPTIONS[n].on_device])
def test_device_pairs_agree_with_host_pairs(noise):
  """Same keys, same shapes and dtypes; the same corruption in distribution
  (fraction of pixels hit, mean change) over 64 images."""
  config = _config(noise)
  images = _images(64)
  device = _device_pairs(config, images)
  host = [TASK.make_pair({'image': x}, np.random.default_rng(i), config)
          for i, x in enumerate(images)]
  assert set(device) == set(host[0])
  for k in device:
    assert device[k].shape[1:] == host[0][k].shape, k
    assert device[k].dtype == host[0][k].dtype, k
  host_batch = {k: np.stack([p[k] for p in host]) for k in host[0]}
  (hit_d, mean_d), (hit_h, mean_h) = _changed(device), _changed(host_batch)
  assert hit_d == pytest.approx(hit_h, rel=0.25, abs=0.01), (noise, hit_d, hit_h)
  assert mean_d == pytest.approx(mean_h, rel=0.25, abs=0.002), (noise, mean_d, mean_h)
  if 'damage' in device:  # The damage map marks exactly what changed.
    changed = np.abs(device['input'] - device['target']).max(-1) > 0
    assert np.all(device['damage'][..., 0][changed] == 1)


@pytest.mark.parametrize('noise', [n for n in CORRUPTIONS
                                   if not denoise.CORRUPTIONS[n].on_device])
def test_a_host_only_corruption_picks_the_host(noise):
  config = _config(noise)
  config.input_pipeline = 'device'
  with pytest.raises(checks.ConfigError, match=f"noise.*{noise}"):
    config_lib.validate(config, num_devices=8)
  config.input_pipeline = 'auto'
  config_lib.validate(config, num_devices=8)

  class Fits:
    def decoded_bytes(self):
      return 1

  assert input_pipeline.choose(config, Fits(), on_device=TASK.on_device(config)) == 'host'
  with pytest.raises(TypeError, match='Generator'):
    TASK.make_pair({'image': _images(1)[0]}, jax.random.key(0), config)


@pytest.mark.parametrize('noise', CORRUPTIONS)
def test_classical_methods_or_none_declared(noise):
  config = _config(noise)
  pair = TASK.make_pair({'image': _images(1, size=32)[0]},
                        np.random.default_rng(0), config)
  out = TASK.classical(pair, config)
  assert isinstance(out, dict)
  declared = denoise.CORRUPTIONS[noise].classical is not denoise._no_classical
  assert bool(out) == declared
  for name, image in out.items():
    assert image.shape == pair['target'].shape, name
    assert np.all(np.isfinite(image)), name
  assert TASK.baseline_name(config)


@pytest.mark.parametrize('noise', CORRUPTIONS)
def test_apply_runs_with_every_corruption(noise):
  """`apply` (the applier of an untrained smoke model) on a user's image,
  with the comparison beside the baseline."""
  config = _config(noise)
  task, model, tx = workdir_lib.build(config)
  state = steps.create_train_state(model, tx, jax.random.key(0),
                                   workdir_lib.init_shape(task, config, model))
  apply = task.make_applier(config, state, tiling.Tiling())
  image = image_io.Image(_images(1, size=40)[0], None, 8)
  result = apply(image, compare=True)
  assert result.image.pixels.shape == (40, 40, 3)
  labels = [label for label, _ in result.compare]
  assert labels[:2] == ['input', 'model']


def test_every_corruption_field_is_in_the_config_group():
  group = TASK.group_defaults()
  for c in denoise.CORRUPTIONS.values():
    assert set(c.fields) <= set(group), c.name
  assert set(denoise_config.get_config().denoise) == set(group)


def test_two_corruptions_declaring_one_field_differently_are_refused(monkeypatch):
  other = denoise.Corruption('other', lambda clean, rng, c: {'input': clean},
                             fields={'amount': (0.3, checks.fraction)})
  monkeypatch.setitem(denoise.CORRUPTIONS, 'other', other)
  with pytest.raises(TypeError, match='amount'):
    denoise._fields()


def test_jpeg_pairs_are_pillow_files_at_a_quality_of_the_range():
  config = _config('jpeg')
  config.denoise.quality_range = (20, 20)
  image = _images(1, size=64)[0]
  pair = TASK.make_pair({'image': image}, np.random.default_rng(0), config)
  from ae_research import corruptions
  np.testing.assert_array_equal(
      pair['input'], corruptions.jpeg_roundtrip(corruptions.quantize(image), 20))
  config.denoise.quality_range = (95, 95)
  better = TASK.make_pair({'image': image}, np.random.default_rng(0), config)
  assert _changed(better)[1] < _changed(pair)[1]
  for bad in [(0, 10), (40, 10), (10.5, 20)]:
    config.denoise.quality_range = bad
    with pytest.raises(checks.ConfigError, match='quality_range'):
      config_lib.validate(config, num_devices=8)


@pytest.mark.parametrize('name', sorted(tasks.TASKS))
def test_every_task_passes_the_interface_check(name):
  task = tasks.get(name)
  tasks.check_task(task)
  assert isinstance(task, base.Task) and task.name == name
  if task.group:
    assert set(task.group_defaults()), name


def test_a_method_with_another_signature_is_refused():
  class Wrong(base.Task):
    name = 'wrong'

    def make_pair(self, example, config):  # No rng.
      return {}

  with pytest.raises(TypeError, match=r'Wrong.make_pair.*tasks.base.Task.make_pair'):
    tasks.check_task(Wrong())


def test_a_task_without_a_name_is_refused():
  with pytest.raises(TypeError, match='no name'):
    tasks.check_task(base.Task())


# ---------------------------------------------------------------------------
# Models for destroyed pixels: told where they are, or learning where.


def _inpaint_config(mode):
  config = denoise_config.get_config('crosshair,unet,smoke')
  config.denoise.inpaint = mode
  return config


def test_a_told_model_changes_only_the_damaged_pixels():
  config = _inpaint_config('told')
  config_lib.validate(config, 1)
  task, model, _ = workdir_lib.build(config)
  image = np.random.default_rng(0).integers(1, 256, (32, 32, 3), np.uint8)
  pair = task.make_pair({'image': image}, np.random.default_rng(1), config)
  assert pair['input'].shape == (32, 32, 4)
  np.testing.assert_array_equal(pair['input'][..., 3:], pair['damage'])
  variables = model.init(jax.random.key(0), jnp.asarray(pair['input'][None]))
  out = np.asarray(model.apply(variables, jnp.asarray(pair['input'][None])))[0]
  keep = pair['damage'][..., 0] == 0
  np.testing.assert_allclose(out[keep], pair['input'][..., :3][keep], atol=1e-6)
  assert np.abs(out[~keep] - pair['input'][..., :3][~keep]).max() > 0


def test_a_gated_model_is_not_told():
  config = _inpaint_config('gated')
  config_lib.validate(config, 1)
  task, model, _ = workdir_lib.build(config)
  assert task.input_channels(config) == 3
  x = jnp.zeros((1, 16, 16, 3))
  variables = model.init(jax.random.key(0), x)
  assert model.apply(variables, x).shape == (1, 16, 16, 3)


def test_inpaint_modes_are_for_destroyed_pixels_only():
  config = denoise_config.get_config('smoke')
  config.denoise.inpaint = 'told'
  with pytest.raises(config_lib.ConfigError, match='inpaint'):
    config_lib.validate(config, 1)
  config = _inpaint_config('guess')
  with pytest.raises(config_lib.ConfigError, match='inpaint'):
    config_lib.validate(config, 1)


def test_apply_tells_a_told_model_the_detected_pixels():
  config = _inpaint_config('told')
  task = tasks.get('denoise')
  image = np.full((16, 16, 3), 0.5, np.float32)
  image[5] = 0.0  # A drawn line.
  pair = task.apply_pair(image, config)
  assert pair['input'].shape == (16, 16, 4)
  assert pair['input'][5, :, 3].min() == 1 and pair['input'][4, :, 3].max() == 0


def test_biharmonic_beside_both_kinds_of_model():
  config = _inpaint_config('')
  task = tasks.get('denoise')
  image = np.random.default_rng(0).random((24, 24, 3)).astype(np.float32) * 0.9 + 0.05
  pair = task.make_pair({'image': image}, np.random.default_rng(1), config)
  out = task.classical(pair, config)
  assert set(out) == {'biharmonic', 'biharmonic_detected'}
  # Nothing in this image is black but the cross: the guess is the truth.
  np.testing.assert_allclose(out['biharmonic'], out['biharmonic_detected'])


# ---------------------------------------------------------------------------
# Colorization as a distribution over chroma bins.


def _classify_config(**fields):
  config = colorize_config.get_config('photos,unet,classify,smoke')
  for k, v in fields.items():
    config.colorize[k] = v
  return config


def test_soft_bins_are_a_distribution_whose_mean_is_the_chroma():
  bins, top = 9, 0.4
  cbcr = jnp.asarray(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 5, 6, 2)),
                     jnp.float32)
  q = colorize.soft_bins(cbcr, bins, top)
  assert q.shape == (2, 5, 6, bins * bins)
  assert float(q.min()) >= 0
  np.testing.assert_allclose(np.asarray(q.sum(-1)), 1.0, atol=1e-5)
  mean = q @ zoo.chroma_bin_centers(bins, top)
  np.testing.assert_allclose(np.asarray(mean), np.clip(np.asarray(cbcr), -top, top),
                             atol=1e-5)
  assert int(jnp.sum(q > 0, -1).max()) <= 4  # Its four nearest centres.


def test_the_classifier_keeps_the_luma_and_gives_logits_in_training():
  config = _classify_config()
  config_lib.validate(config, 1)
  task, model, _ = workdir_lib.build(config)
  gray = jnp.asarray(np.random.default_rng(0).uniform(0.2, 0.8, (2, 32, 32, 1)),
                     jnp.float32)
  variables = model.init(jax.random.key(0), gray)
  rgb = np.asarray(model.apply(variables, gray))
  assert rgb.shape == (2, 32, 32, 3)
  np.testing.assert_allclose(color.luma(rgb), np.asarray(gray), atol=1e-5)
  out = model.apply(variables, gray, train=True, mutable=list(
      k for k in variables if k != 'params'))
  out = out[0] if isinstance(out, tuple) else out
  assert out.shape == (2, 32, 32, 3 + config.colorize.chroma_bins ** 2)
  np.testing.assert_allclose(np.asarray(out[..., :3]), rgb, atol=1e-5)


def test_the_classification_loss_rewards_the_true_bins_and_rebalances():
  config = _classify_config(chroma_bins=5, rebalance=1.0)
  target = np.random.default_rng(1).random((2, 8, 8, 3)).astype(np.float32)
  q = colorize.soft_bins(color.chroma(jnp.asarray(target)), 5, 0.4)
  rgb = jnp.zeros_like(target)
  def loss(logits):
    return colorize.classification_loss(
        jnp.concatenate([rgb, logits], -1), {'target': jnp.asarray(target)}, config)
  right, flat = loss(jnp.log(q + 1e-6)), loss(jnp.zeros_like(q))
  assert right['loss'].shape == (2,) and right['mse'].shape == (2,)
  assert float(right['loss'].mean()) < float(flat['loss'].mean())
  # Without reweighting it is the plain cross-entropy.
  np.testing.assert_allclose(flat['loss'], np.log(25.0), rtol=1e-5)
  # Reweighting: a rare colour's pixels weigh more than a common one's.
  config.colorize.rebalance = 0.5
  target = np.full((1, 8, 8, 3), 0.5, np.float32)
  target[0, 0, 0] = (0.9, 0.1, 0.1)  # One red pixel in gray.
  ce = -np.sum(np.asarray(colorize.soft_bins(
      color.chroma(jnp.asarray(target)), 5, 0.4)) * np.log(1 / 25), -1)
  got = colorize.classification_loss(
      jnp.concatenate([jnp.zeros_like(target), jnp.zeros((1, 8, 8, 25))], -1),
      {'target': jnp.asarray(target)}, config)['loss']
  assert float(got[0]) > 0 and np.allclose(ce, np.log(25))
  weights = float(got[0]) / np.log(25) * 64  # The summed pixel weights: 64.
  np.testing.assert_allclose(weights, 64, rtol=1e-4)


@pytest.mark.parametrize('field,value', [('chroma_bins', 1), ('chroma_max', 0.7),
                                         ('rebalance', 0.0), ('temperature', 0)])
def test_bad_chroma_fields_are_refused_naming_them(field, value):
  config = _classify_config(**{field: value})
  with pytest.raises(config_lib.ConfigError, match=f'colorize.{field}'):
    config_lib.validate(config, 1)
