"""Every test sees 8 CPU devices, so sharded code paths run everywhere."""

import os
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# The classical RD curves' cache: the session's own, not the user's.
os.environ['AE_RESEARCH_CACHE'] = tempfile.mkdtemp(prefix='ae_research_cache_')

import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

from configs import colorize  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One generated-data folder shared by the whole session."""
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture
def smoke_config(data_dir):
  config = colorize.get_config('smoke')
  config.data_dir = data_dir
  config.shapes.num_train = 128
  config.shapes.num_test = 40
  config.num_eval_examples = 40
  return config
