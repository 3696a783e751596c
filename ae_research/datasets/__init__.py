"""Data sources by name: `config.dataset` picks one.

  shapes        generated circles and squares (datasets/shapes.py)
  photos        photographs shipped in scikit-image and scikit-learn
  folder:PATH   every image in a folder (any size); folder:A,B joins folders
  tfds:NAME     a TFDS catalog data set, e.g. tfds:cifar10 or
                tfds:div2k/bicubic_x4, prepared in config.data_dir in the
                array_record format (`tfds build NAME --file_format=array_record`)

A source is random access (`len`, `__getitem__`) and yields dicts of numpy
arrays with at least 'image' (HxWx3 uint8). Sources of images alone that
can be held in memory (photos, folders) also tell `decoded_bytes()`, which
the training loop reads to keep them on the device (`device_data`).
"""

import os
from typing import Any, Callable, Optional

import numpy as np
import tensorflow_datasets as tfds

from ae_research import errors
from ae_research.datasets import folder, photos, shapes

DataError = errors.DataError


def data_dir(config: Any) -> str:
  """Where data sets are kept: config.data_dir, $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.path.expanduser(config.data_dir or os.environ.get(
      'TFDS_DATA_DIR', '~/tensorflow_datasets'))


def _shapes(config: Any, split: str, arg: str):
  del arg
  return shapes.builder(data_dir(config),
                        **config.shapes.to_dict()).as_data_source(split)


class InMemory:
  """A small source decoded once and kept in memory: training crops many
  patches from each of a few large photos."""

  def __init__(self, source):
    self._examples = [source[i] for i in range(len(source))]

  def __len__(self):
    return len(self._examples)

  def __getitem__(self, index):
    return self._examples[index]

  def decoded_bytes(self) -> int:
    """Bytes of the images decoded (what keeping them on a device takes)."""
    return sum(int(e['image'].nbytes) for e in self._examples)


def _photos(config: Any, split: str, arg: str):
  del arg
  return InMemory(photos.builder(data_dir(config)).as_data_source(split))


def _folder(config: Any, split: str, arg: str):
  del config  # A folder is one split.
  paths = [os.path.expanduser(p) for p in arg.split(',') if p]
  # Training reads each image many times (random crops): decode it once.
  return folder.FolderSource(paths, cache=split == 'train')


class _Rgb:
  """A catalog source with its image key renamed to 'image', gray made RGB."""

  def __init__(self, source, image_key: str):
    self._source, self._key = source, image_key

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    example = dict(self._source[index])
    image = np.asarray(example.pop(self._key))
    if image.ndim == 2:
      image = image[..., None]
    example['image'] = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image[..., :3]
    return example


def _tfds(config: Any, split: str, arg: str):
  split_name = config.tfds_splits[split]
  try:
    # Never downloads: catalog data sets are prepared ahead (`tfds build`).
    source = tfds.data_source(arg, split=split_name, data_dir=data_dir(config),
                              download=False)
  except Exception as e:  # pylint: disable=broad-except
    raise DataError(
        f'config.dataset=tfds:{arg}: could not open split {split_name!r} in '
        f'{data_dir(config)} ({type(e).__name__}: {e}). Prepare it there with '
        f'`tfds build {arg} --data_dir={data_dir(config)} '
        '--file_format=array_record`, or set config.data_dir.') from e
  return _Rgb(source, config.tfds_image_key)


SOURCES: dict[str, Callable[[Any, str, str], Any]] = {
    'shapes': _shapes, 'photos': _photos, 'folder': _folder, 'tfds': _tfds}
_WITH_ARGUMENT = ('folder', 'tfds')


def parse(name: str) -> tuple[str, str]:
  kind, _, arg = name.partition(':')
  return kind, arg


def check_name(name: str) -> Optional[str]:
  """None if `name` is a valid config.dataset, else what is allowed."""
  kind, arg = parse(name)
  if kind in SOURCES and (bool(arg) == (kind in _WITH_ARGUMENT)):
    return None
  return ("one of 'shapes', 'photos', 'folder:PATH' (folder:A,B for several) "
          "or 'tfds:NAME' "
          "(e.g. tfds:cifar10)")


def get_source(config: Any, split: str, name: Optional[str] = None):
  """The random-access source of `split` ('train' or 'test') of `name`
  (by default config.dataset)."""
  name = config.dataset if name is None else name
  problem = check_name(name)
  if problem:
    raise DataError(f'dataset {name!r} is unknown; use {problem}')
  kind, arg = parse(name)
  return SOURCES[kind](config, split, arg)
