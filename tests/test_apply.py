"""`python -m ae_research.apply`: a trained run on a researcher's own files."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import png
import pytest
from PIL import Image

from ae_research import aec, apply, checkpointing, cli, codec, color, corruptions
from ae_research import image_io, summaries
from ae_research import steps, tiling
from ae_research import workdir as workdir_lib
from configs import colorize, compress, denoise, super_resolution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Five runs made for the module: the fast tier's apply is test_fast_paths.
pytestmark = pytest.mark.slow


def _make_run(workdir, config):
  """A run with checkpoints at steps 1 and 2 (different parameters);
  returns their train states."""
  task, model, tx = workdir_lib.build(config)
  workdir_lib.check_workdir(config, workdir)
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                    async_save=False)
  states = {}
  for step in (1, 2):
    states[step] = steps.create_train_state(model, tx, jax.random.key(step),
                                            workdir_lib.init_shape(task, config, model))
    ckpt.save(step, states[step], {}, jax.random.key(0))
  ckpt.close()
  return model, states


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('runs')
  c = compress.get_config('smoke')
  c.model.features = (8, 8, 8)
  configs = {'denoise': denoise.get_config('smoke'),
             'sr': super_resolution.get_config('x2,smoke'),
             'sr_autoencoder': super_resolution.get_config('x2,autoencoder,smoke'),
             'colorize': colorize.get_config('smoke'), 'compress': c}
  out = {}
  for name, config in configs.items():
    workdir = str(root / name)
    model, states = _make_run(workdir, config)
    out[name] = (workdir, config, model, states)
  return out


def _smooth(h, w, c, seed=0):
  rng = np.random.default_rng(seed)
  small = rng.random((max(h // 8, 2), max(w // 8, 2), c))
  return np.asarray(jax.image.resize(jnp.asarray(small), (h, w, c), 'linear'))


def _u8(x):
  return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


@pytest.fixture
def inputs(tmp_path):
  """A folder of every kind of input, good and bad."""
  d = tmp_path / 'in'
  (d / 'sub').mkdir(parents=True)
  Image.fromarray(_u8(_smooth(30, 41, 1))[..., 0]).save(d / 'gray.png')
  Image.fromarray(_u8(_smooth(33, 28, 4, seed=1))).save(d / 'rgba.png')
  png.from_array(np.round(_smooth(26, 35, 3, seed=2) * 65535).astype(np.uint16)
                 .reshape(26, -1), 'RGB;16').save(str(d / 'deep16.png'))
  img = Image.fromarray(_u8(_smooth(24, 40, 3, seed=3)))
  exif = img.getexif()
  exif[0x0112] = 6  # Rotated: seen 40 high, 24 wide.
  img.save(d / 'sub' / 'photo.jpg', quality=95, exif=exif.tobytes())
  (d / 'empty.png').write_bytes(b'')
  (d / 'notes.jpg').write_bytes(b'not an image at all\n')
  good = Image.fromarray(_u8(_smooth(40, 40, 3, seed=4)))
  good.save(d / 'cut.png')
  (d / 'cut.png').write_bytes((d / 'cut.png').read_bytes()[:200])
  (d / 'readme.txt').write_text('ignored: not an image extension')
  return d


GOOD = ('gray', 'rgba', 'deep16', 'sub/photo')
BAD = ('empty.png', 'notes.jpg', 'cut.png')


def _main(capsys, *argv):
  rc = cli.call(apply.main, [str(a) for a in argv])
  return rc, capsys.readouterr().err


def _predict(model, state, x, multiple):
  return np.clip(np.asarray(model.apply(
      {'params': state.params, **state.model_state},
      jnp.asarray(tiling.pad_to(x, multiple)[None])))[0, :x.shape[0], :x.shape[1]], 0, 1)


def test_denoise_every_kind_of_input(runs, inputs, tmp_path, capsys):
  workdir, config, model, states = runs['denoise']
  out = tmp_path / 'out'
  rc, err = _main(capsys, inputs, f'--workdir={workdir}', f'--output={out}')
  assert rc == 1  # Some inputs were bad; the good ones were still written.
  for name in BAD:
    assert f'{inputs / name}:' in err and 'skipped' in err
  assert '4 written, 0 skipped (outputs exist), 3 failed' in err
  written = sorted(os.path.relpath(os.path.join(r, f), out)
                   for r, _, fs in os.walk(out) for f in fs)
  assert written == sorted(n + '.png' for n in GOOD)
  m = 2 ** len(config.model.features)
  for name in GOOD:
    src = image_io.read(str(inputs / (name + ('.jpg' if 'photo' in name else '.png'))))
    got = image_io.read(str(out / (name + '.png')))
    # Same size, gray stays gray, alpha carried, 16 bits kept.
    assert got.pixels.shape[:2] == src.pixels.shape[:2]
    assert got.gray == src.gray and got.bit_depth == src.bit_depth
    if src.alpha is not None:
      np.testing.assert_array_equal(got.alpha, src.alpha)
    x = np.repeat(src.pixels, 3, -1) if src.gray else src.pixels
    want = _predict(model, states[2], x, m)  # The latest checkpoint.
    if src.gray:
      want = color.luma(want)
    step = 1 / (2 ** got.bit_depth - 1)
    np.testing.assert_allclose(got.pixels, want, atol=step / 2 + 1e-5)
  assert image_io.read(str(out / 'sub/photo.png')).pixels.shape[:2] == (40, 24)


def test_existing_outputs_are_kept_unless_overwrite(runs, inputs, tmp_path, capsys):
  workdir = runs['denoise'][0]
  out = tmp_path / 'out'
  target = inputs / 'gray.png'
  assert _main(capsys, target, f'--workdir={workdir}', f'--output={out}', '--step=1')[0] == 0
  first = (out / 'gray.png').read_bytes()
  rc, err = _main(capsys, target, f'--workdir={workdir}', f'--output={out}')
  assert rc == 0 and 'exists (pass --overwrite' in err and '0 written, 1 skipped' in err
  assert (out / 'gray.png').read_bytes() == first
  rc, err = _main(capsys, target, f'--workdir={workdir}', f'--output={out}', '--overwrite')
  assert rc == 0 and '1 written' in err
  assert (out / 'gray.png').read_bytes() != first  # Step 2's parameters.
  assert not [f for f in os.listdir(out) if f.endswith('.tmp')]


def test_tiled_output_equals_whole_output(runs, inputs, tmp_path, capsys, monkeypatch):
  workdir = runs['denoise'][0]
  big = tmp_path / 'big.png'
  png.from_array(np.round(_smooth(120, 400, 3, seed=5) * 65535).astype(np.uint16)
                 .reshape(120, -1), "RGB;16").save(str(big))
  outs = {}
  for i, flags in enumerate((['--tiling=never'], ['--tiling=always', '--tile_size=32'],
                             ['--memory_mb=1', '--tile_size=32'])):
    out = tmp_path / f'out{i}'
    rc, err = _main(capsys, big, f'--workdir={workdir}', f'--output={out}', *flags)
    assert rc == 0
    assert ('in tiles' in err) == (flags != ['--tiling=never'])
    outs[flags[0]] = image_io.read(str(out / 'big.png')).pixels
  assert 'exact' in err and 'over the budget of 1 MiB' in err
  # On a terminal: a bar over the images, and one over the tiles.
  monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
  rc, err = _main(capsys, big, f'--workdir={workdir}', f'--output={tmp_path}/tty',
                  '--tiling=always', '--tile_size=32')
  assert rc == 0 and 'images: 100%' in err and 'tiles:' in err
  whole = outs.pop('--tiling=never')
  for tiled in outs.values():
    np.testing.assert_allclose(tiled, whole, atol=1e-4 + 1 / 65535)


@pytest.mark.parametrize('name', ['sr', 'sr_autoencoder'])
def test_super_resolution_upscales_image_and_alpha(name, runs, inputs, tmp_path, capsys):
  """The low-resolution model (the default) takes the image itself; the
  autoencoder its bicubic upsampling."""
  workdir, config, model, states = runs[name]
  out = tmp_path / 'out'
  rc, _ = _main(capsys, inputs / 'rgba.png', f'--workdir={workdir}',
                f'--output={out}', '--compare')
  assert rc == 0
  src = image_io.read(str(inputs / 'rgba.png'))
  got = image_io.read(str(out / 'rgba.png'))
  s = config.sr.scale
  assert got.pixels.shape == (33 * s, 28 * s, 3) and got.alpha.shape == (33 * s, 28 * s, 1)
  np.testing.assert_allclose(got.alpha, np.clip(corruptions.bicubic_upscale(src.alpha, s), 0, 1),
                             atol=1 / 255)
  if model.upscale == 1:
    x = corruptions.quantize(corruptions.bicubic_upscale(src.pixels, s))
    expected = _predict(model, states[2], x, model.downsampling)
  else:
    assert model.upscale == s
    expected = np.clip(np.asarray(model.apply(
        {'params': states[2].params, **states[2].model_state},
        jnp.asarray(src.pixels[None])))[0], 0, 1)
  np.testing.assert_allclose(got.pixels, expected, atol=0.5 / 255 + 1e-5)
  # input (enlarged) | model | bicubic, under a row of labels.
  grid = np.asarray(Image.open(out / 'compare' / 'rgba.png'))
  assert grid.shape[1] == 3 * 28 * s + 2 * 2


def test_colorize_turns_gray_into_color(runs, inputs, tmp_path, capsys):
  workdir, config, model, states = runs['colorize']
  out = tmp_path / 'out'
  rc, _ = _main(capsys, inputs / 'gray.png', inputs / 'sub' / 'photo.jpg',
                f'--workdir={workdir}', f'--output={out}', '--compare')
  assert rc == 0
  got = image_io.read(str(out / 'gray.png'))
  assert got.pixels.shape == (30, 41, 3)
  src = image_io.read(str(inputs / 'gray.png')).pixels
  np.testing.assert_allclose(got.pixels, _predict(model, states[2], src, 4), atol=0.5 / 255 + 1e-5)
  # A color photo goes in as its luma; the comparison ends with the original.
  widths = {n: np.asarray(Image.open(out / 'compare' / f'{n}.png')).shape[1]
            for n in ('gray', 'photo')}
  assert widths == {'gray': 2 * 41 + 2, 'photo': 3 * 24 + 2 * 2}


def test_compress_writes_a_real_file(runs, inputs, tmp_path, capsys):
  workdir = runs['compress'][0]
  out = tmp_path / 'out'
  rc, err = _main(capsys, inputs / 'rgba.png', inputs / 'deep16.png',
                  f'--workdir={workdir}', f'--output={out}', '--compare')
  assert rc == 0 and 'bpp' in err
  for name in ('rgba', 'deep16'):
    data = (out / f'{name}.aec').read_bytes()
    # The codec's own command decodes the file to the PNG apply wrote.
    back = tmp_path / f'{name}_back.png'
    assert cli.call(codec.main, ['decompress', f'--workdir={workdir}',
                                 str(out / f'{name}.aec'), str(back)]) == 0
    assert np.array_equal(np.asarray(Image.open(back)), np.asarray(Image.open(out / f'{name}.png')))
    assert len(data) < os.path.getsize(inputs / f'{name}.png')
  src = image_io.read(str(inputs / 'rgba.png'))
  np.testing.assert_array_equal(image_io.read(str(out / 'rgba.png')).alpha, src.alpha)
  # original | model | JPEG | WebP
  assert np.asarray(Image.open(out / 'compare' / 'deep16.png')).shape[1] == 4 * 35 + 3 * 2


@pytest.mark.parametrize('argv,message', [
    (['--output={tmp}/file.txt'], 'is a file, not a folder'),
    (['--output={tmp}/o', '{tmp}/missing.png'], 'no such file or folder'),
    (['--output={tmp}/o', '{tmp}/twins'], 'would write the same outputs'),
    (['--output={tmp}/o', '--tile_size=0'], 'tile_size 0 must be positive'),
    (['--output={tmp}/o', '--step=9'], 'no checkpoint of step 9; it holds steps [1, 2]'),
    (['--output={tmp}/o', '--workdir={tmp}'], 'holds no run'),
])
def test_bad_commands_stop_before_any_work(runs, tmp_path, capsys, argv, message):
  (tmp_path / 'file.txt').write_text('keep me')
  (tmp_path / 'twins').mkdir()
  for ext in ('png', 'jpg'):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'twins' / f'a.{ext}')
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / 'one.png')
  argv = [a.format(tmp=tmp_path) for a in argv]
  if not any(a.startswith('--workdir') for a in argv):
    argv.append(f'--workdir={runs["denoise"][0]}')
  if not any(not a.startswith('--') for a in argv):
    argv.append(str(tmp_path / 'one.png'))
  rc, err = _main(capsys, *argv)
  assert rc == 2 and message in err
  assert (tmp_path / 'file.txt').read_text() == 'keep me'
  assert not (tmp_path / 'o').exists()


def test_command_line_progress_and_exit_status(runs, inputs, tmp_path):
  workdir = runs['denoise'][0]
  result = subprocess.run(
      [sys.executable, '-m', 'ae_research.apply', f'--workdir={workdir}',
       f'--output={tmp_path / "out"}', str(inputs)],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert result.returncode == 1, result.stderr
  lines = result.stderr.splitlines()
  # One progress line per input (stderr is not a terminal here), with speed and ETA.
  progress = [l for l in lines if l.startswith('[')]
  assert len(progress) == len(GOOD) + len(BAD)
  assert progress[-1].startswith(f'[{len(GOOD) + len(BAD)}/{len(GOOD) + len(BAD)}]')
  assert all('MP/s' in l and 'ETA' in l for l in progress)
  assert lines[-1].startswith('4 written, 0 skipped (outputs exist), 3 failed')


def _out_of_memory(*args, **kwargs):
  raise MemoryError()


@pytest.mark.parametrize('where', ['model', 'writing'])
def test_apply_out_of_memory_is_one_line_and_writes_nothing_for_the_file(
    where, runs, inputs, tmp_path, capsys, monkeypatch):
  workdir = runs['compress'][0]
  if where == 'model':
    monkeypatch.setattr(apply.Applier, '__call__', _out_of_memory)
  else:  # The compare grid, after the .aec and the .png are written.
    monkeypatch.setattr(summaries, 'save_png', _out_of_memory)
  out = tmp_path / 'out'
  rc, err = _main(capsys, inputs / 'rgba.png', inputs / 'gray.png',
                  f'--workdir={workdir}', f'--output={out}', '--compare')
  lines = [l for l in err.splitlines() if l.startswith('error:')]
  assert rc == 1 and len(lines) == 2 and 'Traceback' not in err, err
  assert f'error: {inputs / "rgba.png"}: not enough memory' in lines[0], err
  assert '0 written, 0 skipped (outputs exist), 2 failed' in err
  assert not [f for _, _, fs in os.walk(out) for f in fs]


@pytest.mark.parametrize('command', ['compress', 'decompress'])
def test_codec_out_of_memory_is_one_line_and_writes_nothing(
    command, runs, inputs, tmp_path, capsys, monkeypatch):
  workdir = runs['compress'][0]
  source = inputs / 'rgba.png'
  if command == 'decompress':
    source = tmp_path / 'rgba.aec'
    assert cli.call(codec.main, ['compress', f'--workdir={workdir}',
                                 str(inputs / 'rgba.png'), str(source)]) == 0
  monkeypatch.setattr(aec.Codec, 'encode' if command == 'compress' else 'decode',
                      _out_of_memory)
  target = tmp_path / ('out.aec' if command == 'compress' else 'out.png')
  capsys.readouterr()
  rc = cli.call(codec.main, [command, f'--workdir={workdir}', str(source), str(target)])
  err = capsys.readouterr().err
  assert rc == 1 and err.count('error:') == 1 and 'Traceback' not in err, err
  assert f'error: {source}: not enough memory to {command} it' in err
  assert not target.exists()
  assert sorted(os.listdir(tmp_path)) == (['in', 'rgba.aec'] if command == 'decompress'
                                          else ['in'])
