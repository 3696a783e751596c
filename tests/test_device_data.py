"""Batches made on the device: crops, flips, the epoch order,
reproducibility from (seed, example), the tasks' pairs made traced with a
key, and the choice of pipeline. (The corruptions themselves, one code for
numpy and jax, are tested in test_corruptions.py.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from ae_research import corruptions, device_data, errors, input_pipeline, parallel, tasks
from ae_research.datasets import InMemory, folder
from configs import colorize as colorize_config
from configs import denoise as denoise_config
from configs import super_resolution as sr_config

denoise, colorize = tasks.get('denoise'), tasks.get('colorize')
super_resolution = tasks.get('super_resolution')


def test_flip_maps_are_the_host_dihedral_group():
  size = 5
  codes = np.arange(size * size * 3).reshape(size, size, 3)
  for k, where in enumerate(device_data._dihedral_maps(size)):
    np.testing.assert_array_equal(codes[where[..., 0], where[..., 1]],
                                  corruptions.dihedral(codes, k))


def _coded_images(sizes, seed=0):
  """uint8 images whose pixels tell (image, row, col) apart."""
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, size + (3,), dtype=np.uint8) for size in sizes]


def _batch_fn(images, batch_size, patch, augment=False, seed=0,
              pair=lambda x, key: {'input': x}):
  fn = device_data.make_batch_fn(pair, len(images), batch_size, patch,
                                 augment, seed)
  packed = {k: jnp.asarray(v) for k, v in device_data.pack(images, patch).items()}
  return lambda index: jax.tree.map(np.asarray, jax.jit(fn)(packed, jnp.int32(index)))


def _find(patch_u8, images):
  """(image index, y, x) of the window of `images` equal to the patch."""
  p = patch_u8.shape[0]
  for n, image in enumerate(images):
    h, w = image.shape[:2]
    for y in range(h - p + 1):
      for x in range(w - p + 1):
        if np.array_equal(image[y:y + p, x:x + p], patch_u8):
          return n, y, x
  return None


def test_crops_are_windows_of_the_images_and_an_epoch_sees_each_once():
  images = _coded_images([(20, 30), (24, 17), (16, 16), (30, 20)])
  batch = _batch_fn(images, batch_size=4, patch=8)
  for index in range(3):  # Batch size = number of images: one epoch each.
    found = [_find(np.round(p * 255).astype(np.uint8), images)
             for p in batch(index)['input']]
    assert None not in found
    assert sorted(f[0] for f in found) == [0, 1, 2, 3]
  starts = {_find(np.round(p * 255).astype(np.uint8), images)[1:]
            for i in range(3) for p in batch(i)['input']}
  assert len(starts) > 6  # Crops move around.


def test_augmented_crops_are_flips_and_rotations_of_windows():
  image = _coded_images([(12, 12)])[0]
  windows = [image[y:y + 6, x:x + 6] for y in range(7) for x in range(7)]
  batch = _batch_fn([image], batch_size=64, patch=6, augment=True)
  seen = set()
  for p in batch(0)['input']:
    p = np.round(p * 255).astype(np.uint8)
    ks = {k for k in range(8) for w in windows
          if np.array_equal(corruptions.dihedral(w, k), p)}
    assert ks, 'a patch that is no flip or rotation of a window'
    seen |= ks
  assert seen == set(range(8))


@pytest.mark.slow
def test_an_example_depends_on_the_seed_and_its_place_alone():
  images = _coded_images([(20, 20), (18, 25), (30, 22)])
  noisy = lambda x, key: {'input': x + jax.random.normal(key, x.shape)}
  eight = _batch_fn(images, 8, 8, augment=True, pair=noisy)(1)
  four = _batch_fn(images, 4, 8, augment=True, pair=noisy)
  halves = np.concatenate([four(2)['input'], four(3)['input']])
  # Examples 8..15 whether the batches are of 8 or 4 (or cut over processes).
  np.testing.assert_array_equal(eight['input'], halves)
  other_seed = _batch_fn(images, 8, 8, augment=True, seed=1, pair=noisy)(1)
  assert not np.array_equal(eight['input'], other_seed['input'])


def test_small_images_are_reflect_padded_to_the_patch_like_the_host():
  image = _coded_images([(5, 9)])[0]
  packed = device_data.pack([image], 8)
  assert (packed['heights'][0], packed['widths'][0]) == (8, 9)
  host = corruptions.random_crop(image, np.random.default_rng(0), 8)
  np.testing.assert_array_equal(packed['pixels'][:8 * 9 * 3].reshape(8, 9, 3)[:, :8],
                                np.pad(image, ((0, 3), (0, 0), (0, 0)), 'reflect')[:, :8])
  assert host.shape == (8, 8, 3)


def _pairs(task, config, n=64, size=32, seed=0):
  """task.make_pair on n random patches, traced as device batches make them."""
  clean = jnp.asarray(np.random.default_rng(seed).random((n, size, size, 3),
                                                         np.float32))
  keys = jax.random.split(jax.random.key(seed), n)
  fn = jax.jit(jax.vmap(lambda x, key: task.make_pair({'image': x}, key, config)))
  return np.asarray(clean), jax.tree.map(np.asarray, fn(clean, keys))


def test_gaussian_noise_has_the_asked_sigma_and_the_noise_map_its_level():
  config = denoise_config.get_config('ffdnet')
  config.denoise.sigma_range = (10.0, 40.0)
  clean, pair = _pairs(denoise, config)
  noise = pair['input'][..., :3] - clean
  level = pair['input'][..., 3]
  sigma_per_image = level[:, 0, 0] * 255
  assert np.all((sigma_per_image >= 10) & (sigma_per_image <= 40))
  assert sigma_per_image.std() > 3  # Drawn per image, not fixed.
  np.testing.assert_allclose(noise.std(axis=(1, 2, 3)) * 255, sigma_per_image,
                             rtol=0.1)
  assert np.all(level == level[:, :1, :1])
  np.testing.assert_array_equal(pair['shown'], pair['input'][..., :3])


def test_salt_and_pepper_hits_the_asked_fraction_with_black_and_white():
  config = denoise_config.get_config()
  config.denoise.update(noise='salt_and_pepper', amount=0.2)
  clean, pair = _pairs(denoise, config)
  changed = np.any(pair['input'] != clean, axis=-1)
  assert abs(changed.mean() - 0.2) < 0.01
  hit = pair['input'][changed]
  assert np.all((hit == 0) | (hit == 1))
  assert np.all(hit == hit[:, :1])  # Every channel of a pixel alike.


@pytest.mark.parametrize('noise', ['mask', 'crosshair'])
def test_inpainting_damage_is_black_and_marked(noise):
  config = denoise_config.get_config()
  config.denoise.update(noise=noise, amount=0.3, crosshair_thickness=2)
  clean, pair = _pairs(denoise, config)
  damage = pair['damage'][..., 0] > 0
  assert np.all(pair['input'][damage] == 0)
  np.testing.assert_array_equal(pair['input'][~damage], clean[~damage])
  if noise == 'mask':  # Whole 8x8 blocks.
    blocks = damage.reshape(-1, 4, 8, 4, 8)
    assert np.all(blocks.all(axis=(2, 4)) == blocks.any(axis=(2, 4)))
    assert abs(damage.mean() - 0.3) < 0.05
  else:  # One horizontal and one vertical line of 2 pixels, in the middle half.
    rows = np.nonzero(damage.all(axis=2))
    cols = np.nonzero(damage.all(axis=1))
    assert len(rows[0]) == len(cols[0]) == 2 * len(clean)
    assert np.all((rows[1] >= 8) & (rows[1] < 25))


@pytest.mark.parametrize('variant', ['fsrcnn', 'autoencoder'])
def test_super_resolution_pairs_match_the_host_ones(variant):
  config = sr_config.get_config(variant)
  clean, pair = _pairs(super_resolution, config, n=8, size=48)
  for x, ours_in, ours_target in zip(clean, pair['input'], pair['target']):
    host = super_resolution.make_pair({'image': np.round(x * 255).astype(np.uint8)},
                                      np.random.default_rng(0), config)
    x255 = np.round(x * 255) / 255
    ours = jax.tree.map(np.asarray, super_resolution.make_pair(
        {'image': jnp.asarray(x255, jnp.float32)}, jax.random.key(0), config))
    assert ours['input'].shape == host['input'].shape
    # 8-bit rounding may fall the other way on values within float error.
    diff = np.abs(ours['input'] - host['input'])
    assert diff.max() <= 1 / 255 + 1e-6 and (diff > 1e-6).mean() < 0.01
    np.testing.assert_array_equal(ours['target'], host['target'])
    assert ours_in.shape == host['input'].shape and ours_target.shape == x.shape


def test_colorize_pair_is_the_luma_of_the_patch():
  config = colorize_config.get_config('photos')
  clean, pair = _pairs(colorize, config, n=2)
  luma = clean @ np.array([0.299, 0.587, 0.114], np.float32)
  np.testing.assert_allclose(pair['input'], luma[..., None], atol=1e-6)
  np.testing.assert_array_equal(pair['target'], clean)


def test_device_batches_resume_from_their_state_on_a_sharded_mesh():
  config = denoise_config.get_config('smoke')
  config.update(patch_size=16, batch_size=8, augment=True)
  source = InMemory([{'image': im} for im in _coded_images([(40, 30), (33, 50)])])
  mesh = parallel.make_mesh()
  batches = device_data.DeviceBatches(source, denoise, config, mesh)
  first, second = next(batches), next(batches)
  assert first['input'].sharding.is_equivalent_to(parallel.batch_sharded(mesh), 4)
  assert batches.get_state() == {'pipeline': 'device', 'batches': 2}
  again = device_data.DeviceBatches(source, denoise, config, mesh)
  again.set_state({'pipeline': 'device', 'batches': 1})
  np.testing.assert_array_equal(next(again)['input'], second['input'])
  assert not np.array_equal(first['input'], second['input'])
  with pytest.raises(ValueError, match='host input pipeline'):
    again.set_state({'iterations': 3})


def test_auto_keeps_images_that_fit_on_the_device_and_the_rest_on_the_host(
    monkeypatch):
  config = denoise_config.get_config()
  small = InMemory([{'image': np.zeros((50, 50, 3), np.uint8)}])
  assert input_pipeline.choose(config, small) == 'device'
  assert input_pipeline.choose(config, [{'image': None}]) == 'host'  # No size.
  monkeypatch.setattr(input_pipeline, 'device_budget', lambda: 100)
  assert input_pipeline.choose(config, small) == 'host'
  config.input_pipeline = 'device'
  assert input_pipeline.choose(config, small) == 'device'
  # A resumed run keeps its pipeline; asking for the other one is an error.
  config.input_pipeline = 'auto'
  assert input_pipeline.choose(config, small, resumed='device') == 'device'
  config.input_pipeline = 'host'
  with pytest.raises(errors.UserError, match="written by the device pipeline"):
    input_pipeline.choose(config, small, resumed='device')


def test_folder_source_tells_its_decoded_size_from_the_headers(tmp_path):
  for i, size in enumerate([(30, 20), (7, 41)]):
    Image.fromarray(np.zeros(size[::-1] + (3,), np.uint8)).save(tmp_path / f'{i}.png')
  Image.fromarray(np.zeros((5, 6), np.uint8)).save(tmp_path / 'gray.png')
  source = folder.FolderSource([str(tmp_path)])
  assert source.decoded_bytes() == sum(source[i]['image'].nbytes
                                       for i in range(len(source)))
