"""Damaged checkpoints: every kind of damage is detected at restore; the
newest intact checkpoint is used (a training run moves the damaged ones
aside and ends bit-identical), or the run stops when none is intact."""

import glob
import os
import shutil

import jax
import numpy as np
import pytest

from ae_research import checkpointing, steps, train
from ae_research import workdir as workdir_lib
from configs import colorize


def _biggest_array_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, 'state', '**'),
                                recursive=True)
           if os.path.isfile(f) and os.sep + 'd' + os.sep in f]
  return max(files, key=os.path.getsize)


def _flip_bits(path, count=1):
  """One bit flipped in each of `count` evenly spaced bytes (orbax's data
  files also hold bytes no restore reads: a flip there changes nothing
  restored, so a damaged block is modelled by a few flips)."""
  data = bytearray(open(path, 'rb').read())
  for i in range(count):
    data[int(len(data) * (i + 0.5) / count)] ^= 0x08
  with open(path, 'wb') as f:
    f.write(bytes(data))


def _truncate(path):
  size = os.path.getsize(path)
  with open(path, 'r+b') as f:
    f.truncate(size // 2)


DAMAGE = {
    'bit flipped in an array': lambda d: _flip_bits(_biggest_array_file(d), 16),
    'array file truncated': lambda d: _truncate(_biggest_array_file(d)),
    'array file missing': lambda d: os.remove(_biggest_array_file(d)),
    'manifest missing': lambda d: os.remove(os.path.join(d, 'state',
                                                         'manifest.ocdbt')),
    'state metadata half written': lambda d: _truncate(
        os.path.join(d, 'state', '_METADATA')),
    'checkpoint metadata half written': lambda d: _truncate(
        os.path.join(d, '_CHECKPOINT_METADATA')),
    'data position altered': lambda d: _flip_bits(
        os.path.join(d, 'data', 'metadata')),
    'checksum missing': lambda d: os.remove(os.path.join(d, 'digest',
                                                         'metadata')),
    'checksum folder missing': lambda d: shutil.rmtree(os.path.join(d, 'digest')),
}


@pytest.fixture(scope='module')
def saved(tmp_path_factory, data_dir):
  """A workdir with checkpoints of steps 1, 2, 3 (different parameters),
  their configs and train states."""
  config = colorize.get_config('smoke')
  config.data_dir = data_dir
  workdir = str(tmp_path_factory.mktemp('saved'))
  task, model, tx = workdir_lib.build(config)
  workdir_lib.check_workdir(config, workdir)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  states = {}
  for step in (1, 2, 3):
    states[step] = steps.create_train_state(
        model, tx, jax.random.key(step), workdir_lib.init_shape(task, config, model))
    ckpt.save(step, states[step], {'next_index': step}, jax.random.key(step))
  ckpt.close()
  return config, workdir, states


def _copy(saved, tmp_path):
  config, workdir, states = saved
  copy = str(tmp_path / 'run')
  shutil.copytree(workdir, copy)
  return config, copy, states


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_digest_sees_every_part_of_a_checkpoint():
  state = {'w': np.zeros((3, 2), np.float32), 'b': np.arange(4, dtype=np.int32)}
  base = checkpointing.digest(state, {'next_index': 5}, [1, 2])
  flipped = {'w': state['w'].copy(), 'b': state['b']}
  flipped['w'].view(np.uint32)[1, 1] ^= 1  # One bit of one value.
  assert checkpointing.digest(flipped, {'next_index': 5}, [1, 2]) != base
  assert checkpointing.digest(state, {'next_index': 6}, [1, 2]) != base
  assert checkpointing.digest(state, {'next_index': 5}, [1, 3]) != base
  reshaped = {'w': state['w'].reshape(2, 3), 'b': state['b']}
  assert checkpointing.digest(reshaped, {'next_index': 5}, [1, 2]) != base
  assert checkpointing.digest(dict(state), {'next_index': 5}, [1, 2]) == base


@pytest.mark.slow
@pytest.mark.parametrize('kind', sorted(DAMAGE))
def test_damage_is_detected_and_the_newest_intact_checkpoint_used(
    saved, tmp_path, kind, caplog):
  config, workdir, states = _copy(saved, tmp_path)
  damaged_dir = os.path.join(workdir, 'checkpoints', '3')
  DAMAGE[kind](damaged_dir)
  with pytest.raises(checkpointing.DamagedCheckpoint, match=damaged_dir):
    workdir_lib.restore_latest(config, workdir, step=3)
  caplog.set_level('WARNING')
  state, step = workdir_lib.restore_latest(config, workdir)
  assert step == 2
  _assert_same(state.params, states[2].params)
  assert f'{damaged_dir} is damaged' in caplog.text
  assert os.path.isdir(damaged_dir)  # A reader moves nothing.


@pytest.mark.slow
def test_no_intact_checkpoint_stops_and_keeps_the_files(saved, tmp_path):
  config, workdir, _ = _copy(saved, tmp_path)
  ckpts = os.path.join(workdir, 'checkpoints')
  for step, kind in zip((1, 2, 3), sorted(DAMAGE)):
    DAMAGE[kind](os.path.join(ckpts, str(step)))
  before = sorted(glob.glob(os.path.join(ckpts, '**'), recursive=True))
  with pytest.raises(checkpointing.DamagedCheckpoint) as e:
    train.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert 'no intact checkpoint' in message
  for step in (1, 2, 3):
    assert os.path.join(ckpts, str(step)) in message
  assert sorted(glob.glob(os.path.join(ckpts, '**'), recursive=True)) == before
  assert not os.path.exists(os.path.join(workdir, 'damaged_checkpoints'))


@pytest.mark.slow
def test_training_resumes_past_a_damaged_checkpoint_bit_identical(
    smoke_config, tmp_path, caplog):
  config = smoke_config
  config.num_train_steps, config.checkpoint_every_steps = 8, 4
  config.eval_every_steps = config.log_every_steps = 4
  workdir = str(tmp_path / 'run')
  straight = jax.tree.map(np.asarray,
                          train.train_and_evaluate(config, workdir).params)
  last = os.path.join(workdir, 'checkpoints', '8')
  DAMAGE['bit flipped in an array'](last)
  caplog.set_level('INFO')
  resumed = train.train_and_evaluate(config, workdir)
  assert f'{last} is damaged' in caplog.text
  assert 'Resumed from step 4 ' in caplog.text
  moved = os.path.join(workdir, 'damaged_checkpoints', '8')
  assert os.path.isdir(os.path.join(moved, 'state'))
  _assert_same(straight, resumed.params)
  state, step = workdir_lib.restore_latest(config, workdir)
  assert step == 8
  _assert_same(straight, state.params)
