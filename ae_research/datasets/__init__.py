"""Data sources by name: `config.dataset` picks one.

A source is random access (`len`, `__getitem__`) and yields dicts of numpy
arrays with at least 'image' (HxWx3 uint8).
"""

import os
from typing import Any, Callable

from ae_research.datasets import shapes


def data_dir(config: Any) -> str:
  """Where generated data sets are kept: config.data_dir, $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.path.expanduser(config.data_dir or os.environ.get(
      'TFDS_DATA_DIR', '~/tensorflow_datasets'))


def _shapes(config: Any, split: str):
  c = config.shapes
  b = shapes.builder(data_dir(config), image_size=c.image_size,
                     min_shapes=c.min_shapes, max_shapes=c.max_shapes,
                     min_radius=c.min_radius, max_radius=c.max_radius,
                     num_train=c.num_train, num_test=c.num_test, seed=c.seed)
  return b.as_data_source(split)


SOURCES: dict[str, Callable[[Any, str], Any]] = {'shapes': _shapes}


def names() -> list[str]:
  return sorted(SOURCES)


def get_source(config: Any, split: str):
  """The random-access source of `split` ('train' or 'test')."""
  if config.dataset not in SOURCES:
    raise ValueError(f'config.dataset={config.dataset!r} is unknown; choose '
                     f'one of {names()}')
  return SOURCES[config.dataset](config, split)
