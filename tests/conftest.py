"""Every test sees 8 CPU devices, so sharded code paths run everywhere.

Tests spend most of their time compiling, so the CPU code is compiled
without LLVM's optimizations and kept in a cache for the session: the many
tests that build the same small models compile them once. Tests marked
`root` or `cluster` (setup.cfg) skip, saying what they need, where the
machine does not have it.
"""

import atexit
import os
import shutil
import tempfile

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                           ' --xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# Tests compile far more than they compute, and LLVM's optimization of the
# CPU code is half of each compile: it is left out (XLA's own passes run as
# always). A level given in XLA_FLAGS stands.
if (os.environ['JAX_PLATFORMS'] == 'cpu' and
    '--xla_backend_optimization_level' not in os.environ['XLA_FLAGS']):
  os.environ['XLA_FLAGS'] += ' --xla_backend_optimization_level=0'
# The classical RD curves' cache: the session's own, not the user's.
os.environ['AE_RESEARCH_CACHE'] = tempfile.mkdtemp(prefix='ae_research_cache_')

from absl import logging as absl_logging  # noqa: E402
import jax  # noqa: E402  (after XLA_FLAGS)
import pytest  # noqa: E402

import slurm_cluster  # noqa: E402  pylint: disable=g-bad-import-order
from configs import colorize  # noqa: E402

jax.config.update('jax_numpy_rank_promotion', 'raise')
# Most of a test's time is compiling; a compiled program is the same for
# every test that traces the same computation, so it is compiled once. The
# cache is the session's: made by the first pytest process (xdist's workers
# inherit its name) and removed after it, unless JAX_COMPILATION_CACHE_DIR
# names a cache of one's own. (A worker that reads an entry another is still
# writing gets a warning and compiles it again.)
if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
  if 'AE_RESEARCH_TEST_JAX_CACHE' not in os.environ:
    os.environ['AE_RESEARCH_TEST_JAX_CACHE'] = tempfile.mkdtemp(
        prefix='ae_research_jax_cache_')
    atexit.register(shutil.rmtree, os.environ['AE_RESEARCH_TEST_JAX_CACHE'],
                    ignore_errors=True)
  jax.config.update('jax_compilation_cache_dir',
                    os.environ['AE_RESEARCH_TEST_JAX_CACHE'])
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


def _reason(mark) -> str:
  if len(mark.args) != 1 or not isinstance(mark.args[0], str):
    raise pytest.UsageError(f'@pytest.mark.{mark.name} takes one reason, what the test '
                            f"does with it, e.g. @pytest.mark.root('mounts a tmpfs'); "
                            f'got {mark.args!r}')
  return mark.args[0]


def pytest_runtest_setup(item):
  """Skips a test marked root or cluster where the machine lacks it."""
  for mark in item.iter_markers('root'):
    reason = _reason(mark)
    if os.geteuid() != 0:
      pytest.skip(f'needs root: {reason}')
  for mark in item.iter_markers('cluster'):
    reason, why = _reason(mark), slurm_cluster.unavailable()
    if why:
      pytest.skip(f'needs a SLURM cluster (slurmctld): {reason}; {why}')


@pytest.fixture(autouse=True)
def _absl_logger_level():
  """A command run in this process (cli.call) parses absl's --verbosity,
  which sets the absl logger's own level to WARNING; put back, so that a
  later test's caplog.set_level('INFO') sees the INFO lines again."""
  logger = absl_logging.get_absl_logger()
  level = logger.level
  yield
  logger.setLevel(level)


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
