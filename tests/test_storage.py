"""Full disks and read-only places: a checkpoint save, a results write, a
codec output or an apply output that fails stops with a message naming the
path and the cause, leaves what was written before intact, and a rerun
continues. On a real size-limited tmpfs (mounted when the tests run as
root) and with injected errors."""

import errno
import glob
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from ae_research import apply, checkpointing, cli, codec, datasets, errors, image_io
from ae_research import steps
from ae_research import summaries, train
from ae_research import workdir as workdir_lib
from configs import compress, denoise


def _mount(path, options):
  os.makedirs(path, exist_ok=True)
  subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)],
                 check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
  """A 4 MB tmpfs, mounted for the test (its test is marked root; the
  injected-error tests cover the same code paths without one)."""
  if not shutil.which('mount'):
    pytest.skip('needs root: mounts a size-limited tmpfs; there is no mount command')
  path = tmp_path / 'disk'
  try:
    _mount(path, 'size=4m')
  except subprocess.CalledProcessError as e:
    pytest.skip('needs root: mounts a size-limited tmpfs, which this machine '
                f'refuses: {e.stderr.decode().strip()}')
  yield path
  subprocess.run(['umount', '-l', str(path)], check=False)


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(workdir, data_dir):
  """`python -m ae_research.main` on a small denoising run, as a user runs it."""
  return subprocess.run(
      [sys.executable, '-m', 'ae_research.main', '--config=configs/denoise.py:smoke',
       f'--workdir={workdir}', f'--config.data_dir={data_dir}',
       '--config.num_train_steps=40', '--config.checkpoint_every_steps=2',
       '--config.keep_checkpoints=100'],
      capture_output=True, text=True, cwd=_ROOT, timeout=900, check=False)


def _one_line(result, *expected):
  """The terminal's error output is our one line (the progress lines are
  stdout's); the libraries' reports are in the file it names."""
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 1 and len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith('error: cannot write ') and all(
      e in lines[0] for e in expected), lines[0]
  return lines[0]


@pytest.mark.root('mounts size-limited and read-only tmpfs')
@pytest.mark.slow
@pytest.mark.parametrize('size', ['1200k', '2m'])  # A checkpoint fails, or a sample.
def test_a_full_disk_or_a_read_only_workdir_is_one_line(tmp_path, data_dir, size):
  config = denoise.get_config('smoke')
  config.data_dir = data_dir
  datasets.get_source(config, 'train')  # Built here: its progress bars are stderr's.
  disk = tmp_path / 'disk'
  _mount(disk, f'size={size}')
  try:
    line = _one_line(_train(disk / 'run', data_dir), 'ENOSPC')
    found = re.search(r"\(the libraries' own reports: (\S+)\)$", line)
    assert found, line  # Orbax's tracebacks: not on the terminal, in the file.
    reports = open(found[1]).read()
    assert 'Traceback' in reports and 'No space left' in reports
    subprocess.run(['mount', '-o', 'remount,ro', str(disk)], check=True)
    _one_line(_train(disk / 'run', data_dir), 'read-only (EROFS)', 'writer.lock')
  finally:
    subprocess.run(['umount', '-l', str(disk)], check=False)


def _intact_steps(config, workdir):
  """Every checkpoint on disk restores and matches its checksum."""
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  saved = ckpt.all_steps()
  ckpt.close()
  for step in saved:
    _, got = workdir_lib.restore_latest(config, workdir, step)
    assert got == step
  return saved


@pytest.mark.root('mounts a size-limited tmpfs')
@pytest.mark.slow
def test_training_on_a_full_disk_stops_then_resumes(smoke_config, small_disk):
  config = smoke_config
  config.num_train_steps, config.checkpoint_every_steps = 24, 2
  config.keep_checkpoints, config.eval_every_steps = 100, 24
  workdir = str(small_disk / 'run')
  with pytest.raises(errors.StorageError) as e:
    train.train_and_evaluate(config, workdir)
  message = str(e.value)
  assert 'no space left on the device (ENOSPC)' in message
  assert workdir in message
  saved = _intact_steps(config, workdir)
  assert saved and max(saved) < 24
  subprocess.run(['mount', '-o', 'remount,size=64m', str(small_disk)], check=True)
  state = train.train_and_evaluate(config, workdir)
  assert int(state.step) == 24
  assert os.path.exists(os.path.join(workdir, 'metrics.json'))


@pytest.mark.root('mounts a size-limited tmpfs')
def test_outputs_to_a_read_only_place(small_disk, tmp_path):
  """write_through_temp, which every output goes through, on a read-only
  file system: the message names the path and the cause."""
  target = small_disk / 'kept.json'
  summaries.write_json(str(target), {'a': 1})
  subprocess.run(['mount', '-o', 'remount,ro', str(small_disk)], check=True)
  with pytest.raises(errors.StorageError, match='read-only') as e:
    summaries.write_json(str(target), {'a': 2})
  assert str(target) in str(e.value)
  assert target.read_text().replace(' ', '').replace('\n', '') == '{"a":1}'


def _fail_on(monkeypatch, module, name, when, error):
  """Makes module.name raise `error` when when(*args) is true."""
  real = getattr(module, name)
  def failing(*args, **kwargs):
    if when(*args):
      raise error
    return real(*args, **kwargs)
  monkeypatch.setattr(module, name, failing)


@pytest.mark.slow
def test_failed_checkpoint_save_names_its_step_and_keeps_the_others(
    smoke_config, tmp_path, monkeypatch):
  config = smoke_config
  task, model, tx = workdir_lib.build(config)
  workdir = str(tmp_path / 'run')
  workdir_lib.check_workdir(config, workdir)
  state = steps.create_train_state(model, tx, jax.random.key(0),
                                   workdir_lib.init_shape(task, config, model))
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'))
  ckpt.save(4, state, {'next_index': 4}, jax.random.key(0))
  # Orbax reports a full disk from its writer threads like this.
  full = ValueError('RESOURCE_EXHAUSTED: Error writing local file "x": '
                    "No space left on device [os_error_code='28']")
  with monkeypatch.context() as m:
    _fail_on(m, checkpointing.ocp.CheckpointManager, 'save',
             lambda self, step, **_: step == 8, full)
    with pytest.raises(errors.StorageError) as e:
      ckpt.save(8, state, {'next_index': 8}, jax.random.key(0))
  assert 'checkpoint of step 8' in str(e.value)
  assert 'ENOSPC' in str(e.value) and '(steps 4) are intact' in str(e.value)
  ckpt.close()  # Does not raise the reported error again.
  assert _intact_steps(config, workdir) == [4]
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'))
  ckpt.save(8, state, {'next_index': 8}, jax.random.key(0))  # Space again.
  ckpt.close()
  assert _intact_steps(config, workdir) == [4, 8]


def test_write_through_temp_names_the_path_and_keeps_the_old_file(tmp_path):
  path = tmp_path / 'out.png'
  path.write_bytes(b'old')
  def full(tmp):
    with open(tmp, 'wb') as f:
      f.write(b'half')
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
  with pytest.raises(errors.StorageError) as e:
    summaries.write_through_temp(str(path), full)
  assert str(path) in str(e.value) and 'ENOSPC' in str(e.value)
  assert path.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['out.png']  # No temporary file left.
  with pytest.raises(KeyError):  # Other errors pass unchanged.
    summaries.write_through_temp(str(path), lambda tmp: {}['x'])


def _make_run(workdir, config):
  task, model, tx = workdir_lib.build(config)
  workdir_lib.check_workdir(config, workdir)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  ckpt.save(1, steps.create_train_state(model, tx, jax.random.key(1),
                                        workdir_lib.init_shape(task, config, model)),
            {}, jax.random.key(0))
  ckpt.close()


@pytest.mark.slow
def test_apply_output_on_a_full_disk(tmp_path, monkeypatch, capsys):
  workdir, out = str(tmp_path / 'run'), tmp_path / 'out'
  _make_run(workdir, denoise.get_config('smoke'))
  inputs = tmp_path / 'in'
  inputs.mkdir()
  rng = np.random.default_rng(0)
  for name in ('a', 'b', 'c'):
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), np.uint8)).save(
        inputs / f'{name}.png')
  argv = [f'--workdir={workdir}', f'--output={out}', '--compare', str(inputs)]
  with monkeypatch.context() as m:
    _fail_on(m, os, 'replace',  # b's comparison, after b.png.
             lambda src, dst: dst.endswith(os.path.join('compare', 'b.png')),
             OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
    assert cli.call(apply.main, argv) == 1
  err = ''.join(capsys.readouterr())
  assert os.path.join('compare', 'b.png') in err and 'ENOSPC' in err
  written = sorted(os.path.relpath(p, out) for p in
                   glob.glob(str(out / '**' / '*.png'), recursive=True))
  assert written == ['a.png', os.path.join('compare', 'a.png')]  # No half b.
  before = (out / 'a.png').read_bytes()
  assert cli.call(apply.main, argv) == 0
  err = capsys.readouterr().err
  assert '2 written, 1 skipped' in err
  assert (out / 'a.png').read_bytes() == before
  assert image_io.read(str(out / 'c.png')).pixels.shape == (24, 24, 3)


@pytest.mark.slow
def test_codec_output_on_a_full_disk(tmp_path, monkeypatch, capsys):
  config = compress.get_config('smoke')
  config.model.features = (8, 8, 8)
  workdir = str(tmp_path / 'run')
  _make_run(workdir, config)
  image = tmp_path / 'in.png'
  Image.fromarray(np.random.default_rng(0).integers(
      0, 256, (32, 32, 3), np.uint8)).save(image)
  out = tmp_path / 'out.aec'
  out.write_bytes(b'an earlier output')
  argv = ['compress', f'--workdir={workdir}', '--overwrite', str(image), str(out)]
  with monkeypatch.context() as m:
    _fail_on(m, os, 'replace', lambda src, dst: dst == str(out),
             OSError(errno.EACCES, os.strerror(errno.EACCES)))
    assert cli.call(codec.main, argv) == 1
  err = capsys.readouterr().err
  assert str(out) in err and 'permission denied (EACCES)' in err
  assert out.read_bytes() == b'an earlier output'
  assert sorted(os.listdir(tmp_path)) == ['in.png', 'out.aec', 'run']
  assert cli.call(codec.main, argv) == 0
  assert out.read_bytes().startswith(b'AEC')
