"""Color photographs that ship inside pip packages: a TFDS builder, offline.

scikit-image's sample photos and scikit-learn's two sample images, split by
whole image so the test photos are never seen in training:

  train: astronaut, rocket, motorcycle (left view of the stereo pair),
         hubble deep field, retina, immunohistochemistry, china (scikit-learn)
  test:  chelsea, coffee, flower (scikit-learn)
"""

import numpy as np
import skimage.data
import tensorflow_datasets as tfds
from sklearn.datasets import load_sample_image

from ae_research.datasets import prepare


def _skimage(name):
  def load():
    image = getattr(skimage.data, name)()
    return image[0] if isinstance(image, tuple) else image
  return load


def _sklearn(filename):
  def load():
    return load_sample_image(filename)
  return load


TRAIN = {
    'astronaut': _skimage('astronaut'),
    'rocket': _skimage('rocket'),
    'motorcycle_left': _skimage('stereo_motorcycle'),
    'hubble_deep_field': _skimage('hubble_deep_field'),
    'retina': _skimage('retina'),
    'immunohistochemistry': _skimage('immunohistochemistry'),
    'china': _sklearn('china.jpg'),
}
TEST = {
    'chelsea': _skimage('chelsea'),
    'coffee': _skimage('coffee'),
    'flower': _sklearn('flower.jpg'),
}


class EmbeddedPhotos(tfds.core.GeneratorBasedBuilder):
  """Whole RGB photographs of any size, with their names."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description=__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(
                shape=(None, None, 3), dtype=np.uint8,
                encoding=tfds.features.Encoding.ZLIB),
            'name': tfds.features.Text(),
        }),
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # The photos come with the installed packages.
    return {'train': self._generate_examples(TRAIN),
            'test': self._generate_examples(TEST)}

  def _generate_examples(self, loaders):
    for name, load in loaders.items():
      image = np.asarray(load())
      yield name, {'image': np.ascontiguousarray(image[..., :3]), 'name': name}


def builder(data_dir: str) -> EmbeddedPhotos:
  return prepare.prepare_once(
      lambda: EmbeddedPhotos(data_dir=data_dir or None, file_format='array_record'),
      data_dir, 'embedded_photos')
