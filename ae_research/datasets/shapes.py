"""Procedurally generated shapes: a TFDS builder that needs no download.

Each example is a mid-gray image with a few filled circles and squares that
do not touch. `image` is the color image (circles red, squares blue), `gray`
the same scene with every shape the same light gray, and `label` the
per-pixel class (0 background, 1 circle, 2 square).
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from ae_research import defaults
from ae_research.datasets import prepare

BACKGROUND = 128
SHAPE_GRAY = 200
COLORS = {1: (255, 0, 0), 2: (0, 0, 255)}  # circle red, square blue


def render(rng: np.random.Generator, image_size: int, min_shapes: int,
           max_shapes: int, min_radius: int, max_radius: int) -> dict[str, np.ndarray]:
  """One example: shapes placed at random with a gap of 2 pixels between them."""
  label_HxW = np.zeros((image_size, image_size), np.uint8)
  yy, xx = np.mgrid[:image_size, :image_size]
  boxes = []
  num = rng.integers(min_shapes, max_shapes + 1)
  attempts = 0
  while len(boxes) < num and attempts < 100:
    attempts += 1
    r = rng.integers(min_radius, max_radius + 1)
    cy, cx = rng.integers(r, image_size - r, size=2)
    box = (cy - r - 2, cx - r - 2, cy + r + 2, cx + r + 2)
    if any(box[0] <= b[2] and b[0] <= box[2] and box[1] <= b[3] and b[1] <= box[3]
           for b in boxes):
      continue
    boxes.append(box)
    window = (slice(cy - r, cy + r + 1), slice(cx - r, cx + r + 1))
    if rng.random() < 0.5:
      disk = (yy[:2 * r + 1, :2 * r + 1] - r) ** 2 + (
          xx[:2 * r + 1, :2 * r + 1] - r) ** 2 <= r * r + r
      label_HxW[window][disk] = 1
    else:
      label_HxW[window] = 2
  image = np.full((image_size, image_size, 3), BACKGROUND, np.uint8)
  for cls, color in COLORS.items():
    image[label_HxW == cls] = color
  gray = np.where(label_HxW > 0, SHAPE_GRAY, BACKGROUND).astype(np.uint8)
  return {'image': image, 'gray': gray[..., None], 'label': label_HxW}


@dataclasses.dataclass
class ShapesConfig(tfds.core.BuilderConfig):
  image_size: int = defaults.SHAPES['image_size']
  min_shapes: int = defaults.SHAPES['min_shapes']
  max_shapes: int = defaults.SHAPES['max_shapes']
  min_radius: int = defaults.SHAPES['min_radius']
  max_radius: int = defaults.SHAPES['max_radius']
  num_train: int = defaults.SHAPES['num_train']
  num_test: int = defaults.SHAPES['num_test']
  seed: int = defaults.SHAPES['seed']


def config_name(image_size, min_shapes, max_shapes, min_radius, max_radius,
                num_train, num_test, seed) -> str:
  """A name that differs whenever the generated data would."""
  return (f'{image_size}px_{min_shapes}-{max_shapes}shapes_r{min_radius}-'
          f'{max_radius}_{num_train}-{num_test}_seed{seed}')


class Shapes(tfds.core.GeneratorBasedBuilder):
  """Gray circles and squares (input) and their colored versions (target)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [ShapesConfig(name=config_name(**defaults.SHAPES))]

  def _info(self) -> tfds.core.DatasetInfo:
    s = self.builder_config.image_size
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(shape=(s, s, 3), dtype=np.uint8),
            'gray': tfds.features.Tensor(shape=(s, s, 1), dtype=np.uint8),
            'label': tfds.features.Tensor(shape=(s, s), dtype=np.uint8),
        }),
        supervised_keys=('gray', 'image'),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {'train': self._generate_examples(c.num_train, c.seed * 2),
            'test': self._generate_examples(c.num_test, c.seed * 2 + 1)}

  def _generate_examples(self, num: int, seed: int):
    c = self.builder_config
    # One generator per split, so each split is fixed by the seed alone.
    rng = np.random.default_rng(seed)
    for i in range(num):
      yield i, render(rng, c.image_size, c.min_shapes, c.max_shapes,
                      c.min_radius, c.max_radius)


def builder(data_dir: str, **params: int) -> Shapes:
  """The Shapes builder for `params` (the fields of defaults.SHAPES; those
  not given take their defaults), prepared (generated) if needed."""
  unknown = sorted(set(params) - set(defaults.SHAPES))
  if unknown:
    raise TypeError(f'unknown shapes parameters {unknown}; they are '
                    f'{sorted(defaults.SHAPES)}')
  kwargs = {**defaults.SHAPES, **params}
  name = config_name(**kwargs)
  # TFDS refuses a custom config named like a predefined one: pass the name.
  config = (name if name in Shapes.builder_configs
            else ShapesConfig(name=name, **kwargs))
  return prepare.prepare_once(
      lambda: Shapes(config=config, data_dir=data_dir or None,
                     file_format='array_record'), data_dir, f'shapes_{name}')
