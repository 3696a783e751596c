"""Data sources: embedded photos, image folders, TFDS catalog data sets."""


import os

import numpy as np
import pytest
from PIL import Image

from ae_research import datasets
from ae_research.datasets import folder, photos


def test_embedded_photos_are_split_by_whole_image(smoke_config):
  config = smoke_config
  config.dataset = 'photos'
  train = datasets.get_source(config, 'train')
  test = datasets.get_source(config, 'test')
  names = lambda s: {s[i]['name'].decode() for i in range(len(s))}
  assert names(train) == set(photos.TRAIN) and names(test) == set(photos.TEST)
  assert not names(train) & names(test)
  for s in (train, test):
    image = s[0]['image']
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
  assert len({test[i]['image'].shape for i in range(len(test))}) > 1  # Any size.


def _write_images(path):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (21, 30, 3), np.uint8)
  Image.fromarray(rgb).save(path / 'a_rgb.png')
  Image.fromarray(rgb[..., 0]).save(path / 'b_gray.png')
  rgba = np.concatenate([rgb, np.full((21, 30, 1), 7, np.uint8)], -1)
  Image.fromarray(rgba).save(path / 'c_rgba.png')
  Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(path / 'd_16bit.png')
  img = Image.fromarray(rgb)
  exif = img.getexif()
  exif[0x0112] = 6  # Rotated: displayed turned 90 degrees clockwise.
  img.save(path / 'e_exif.jpg', exif=exif, quality=95)
  (path / 'notes.txt').write_text('not an image')
  return rgb


def test_folder_reads_any_image_as_rgb(tmp_path):
  rgb = _write_images(tmp_path)
  source = folder.FolderSource(str(tmp_path))
  assert [source[i]['name'] for i in range(len(source))] == [
      'a_rgb', 'b_gray', 'c_rgba', 'd_16bit', 'e_exif']
  images = [source[i]['image'] for i in range(len(source))]
  np.testing.assert_array_equal(images[0], rgb)
  np.testing.assert_array_equal(images[1], np.repeat(rgb[..., :1], 3, -1))
  np.testing.assert_array_equal(images[2], rgb)
  np.testing.assert_array_equal(images[3], np.repeat(rgb[..., :1], 3, -1))
  assert images[4].shape == (30, 21, 3)  # EXIF orientation applied.
  assert all(i.dtype == np.uint8 for i in images)


def test_folder_errors_name_the_problem(tmp_path):
  with pytest.raises(ValueError, match='is not a folder'):
    folder.FolderSource(str(tmp_path / 'missing'))
  with pytest.raises(ValueError, match='holds no image'):
    folder.FolderSource(str(tmp_path))


def test_folder_through_the_config(smoke_config, tmp_path):
  _write_images(tmp_path)
  source = datasets.get_source(smoke_config, 'test', f'folder:{tmp_path}')
  assert len(source) == 5


def test_tfds_catalog_data_set_by_name(smoke_config):
  import tensorflow_datasets as tfds
  smoke_config.dataset = 'tfds:cifar10'
  with tfds.testing.mock_data(num_examples=6, policy=tfds.testing.MockPolicy.USE_CODE):
    source = datasets.get_source(smoke_config, 'train')
    assert len(source) == 6
    example = source[0]
    assert example['image'].shape == (32, 32, 3) and example['image'].dtype == np.uint8
    assert 'label' in example


def test_tfds_missing_data_set_says_how_to_prepare_it(smoke_config, tmp_path):
  smoke_config.dataset = 'tfds:cifar10'
  smoke_config.data_dir = str(tmp_path)
  with pytest.raises(ValueError, match='tfds build cifar10'):
    datasets.get_source(smoke_config, 'train')


@pytest.mark.parametrize('name', ['', 'folder', 'tfds', 'imagenet', 'folder:'])
def test_bad_dataset_names(name):
  assert datasets.check_name(name) is not None


@pytest.mark.slow
def test_processes_preparing_the_same_data_at_once_both_get_it(tmp_path):
  """A sweep's points (or the processes of one run) may start together."""
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ('import sys\nfrom ae_research import datasets\nfrom configs import colorize\n'
          'c = colorize.get_config("smoke"); c.data_dir = sys.argv[1]\n'
          'c.shapes.num_train, c.shapes.num_test = 300, 20\n'
          's = datasets.get_source(c, "train"); print(len(s), int(s[7]["image"].sum()))')
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  procs = [subprocess.Popen([sys.executable, '-c', code, str(tmp_path)], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  outs = [p.communicate(timeout=300) for p in procs]
  assert [p.returncode for p in procs] == [0, 0], [e[-1500:] for _, e in outs]
  last = [o.strip().splitlines()[-1] for o, _ in outs]
  assert last[0] == last[1] and last[0].startswith('300 ')


def test_several_folders_are_one_training_set(smoke_config, tmp_path):
  one, two = tmp_path / 'one', tmp_path / 'two'
  one.mkdir()
  two.mkdir()
  rgb = _write_images(one)
  Image.fromarray(rgb[::-1]).save(two / 'z.png')
  joined = datasets.get_source(smoke_config, 'train', f'folder:{one},{two}')
  assert len(joined) == len(folder.FolderSource(str(one))) + 1
  names = [joined[i]['name'] for i in range(len(joined))]
  assert names[0] == 'one_a_rgb' and names[-1] == 'two_z'
  np.testing.assert_array_equal(joined[len(joined) - 1]['image'], rgb[::-1])
  with pytest.raises(ValueError, match='is not a folder'):
    datasets.get_source(smoke_config, 'train', f'folder:{one},{tmp_path / "none"}')


def test_training_folders_are_decoded_once(smoke_config, tmp_path, monkeypatch):
  _write_images(tmp_path)
  decoded = []
  real = folder.load_rgb
  monkeypatch.setattr(folder, 'load_rgb', lambda p: decoded.append(p) or real(p))
  train = datasets.get_source(smoke_config, 'train', f'folder:{tmp_path}')
  first = [train[i]['image'] for i in range(len(train))]
  again = [train[i]['image'] for i in range(len(train))]
  assert len(decoded) == len(train)  # The second pass decoded nothing.
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  test = datasets.get_source(smoke_config, 'test', f'folder:{tmp_path}')
  test[0], test[0]
  assert len(decoded) == len(train) + 2  # Evaluation keeps nothing.
