"""The .aec decoder under fuzzing (benchmarks/fuzz_aec.py, a short run), the
fuzzing harness itself, and the decoder's pixel limit against decompression
bombs."""

import importlib.util
import os
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from ae_research import aec
from ae_research import codec as codec_lib

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                     'benchmarks', 'fuzz_aec.py')
_spec = importlib.util.spec_from_file_location('fuzz_aec', _PATH)
fuzz_aec = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_aec)


@pytest.fixture(scope='module')
def setup():
  """The fuzzer's tiny models and its seed files."""
  codecs = fuzz_aec.make_codecs()
  return codecs, fuzz_aec.make_seeds(codecs)


def test_the_seed_files_are_valid_files_of_every_container_version(setup):
  codecs, seeds = setup
  kinds = set()
  for seed in seeds:
    codec = codecs[seed.model]
    image = codec.decode(seed.data)
    assert image.shape == seed.shape and image.dtype == np.uint8
    version = seed.data[3]  # Read from the file, not from the seed's label.
    kinds.add((version, codec.hyper, image.shape[-1]))
  assert {v for v, _, _ in kinds} == set(aec.READS)
  for version in aec.READS:
    channels = {c for v, _, c in kinds if v == version}
    assert channels == ({1, 3} if version == 1 else {1, 2, 3, 4}), version
  # Files with a hyper latent (two coded latents), with and without alpha.
  assert {c for v, hyper, c in kinds if hyper} == {1, 2, 3, 4}
  # Escaped values in files of both kinds of model.
  assert all(any(len(codecs[s.model].parse(s.data)['escapes']) for s in seeds
                 if codecs[s.model].hyper == hyper) for hyper in (False, True))


def test_inputs_are_made_again_from_the_seed_and_index(setup):
  _, seeds = setup
  first = [fuzz_aec.mutate(seeds, 7, i) for i in range(200)]
  assert first == [fuzz_aec.mutate(seeds, 7, i) for i in range(200)]
  assert first != [fuzz_aec.mutate(seeds, 8, i) for i in range(200)]
  originals = {s.data for s in seeds}
  assert sum(m.data not in originals for m in first) > 190
  resealed = [m for m in first if len(m.data) >= 4 and
              int.from_bytes(m.data[-4:], 'little') == zlib.crc32(m.data[:-4])]
  assert len(resealed) > len(first) // 2  # Most get past the checksum.


def test_a_short_fuzz_run_finds_no_crash_hang_or_wrong_size(setup):
  start = time.monotonic()
  report = fuzz_aec.fuzz(3000, seed=1, workers=2, setup=setup, log=print)
  print(fuzz_aec.summary(report))
  print(f'test: {time.monotonic() - start:.1f} s')
  assert report.inputs == 3000
  assert not report.crashes, fuzz_aec.summary(report)
  assert not report.hangs and not report.wrong, fuzz_aec.summary(report)
  assert report.ok + report.refused == 3000
  # Both outcomes, from mutated files: header edits behind a valid checksum
  # that still decode, and refusals of many kinds, the pixel limit's too.
  assert report.families['header fields, resealed', 'ok'] > 0
  assert report.families['bytes, resealed', 'ok'] > 0
  assert report.refused > 0 and len(report.reasons) > 10
  assert report.pixel_limit > 0
  h, w = report.largest_decoded
  assert 0 < h * w <= report.max_pixels
  assert {version for _, _, version, _, _ in report.seeds} == set(aec.READS)


def test_the_harness_counts_crashes_hangs_and_wrong_sizes(setup):
  """Inputs broken on purpose inside the workers: an exception, an input
  that never ends, a wrong-size image and a worker that dies are each
  counted at their index, and every other input still runs."""
  codecs, seeds = setup
  limit = fuzz_aec.LIMIT_FACTOR * max(s.shape[0] * s.shape[1] for s in seeds)
  decodes = next(i for i in range(10, 60) if fuzz_aec.check(
      codecs, fuzz_aec.mutate(seeds, 2, i), limit)[0] == 'ok')
  sabotage = {3: 'crash', 7: 'hang', decodes: 'wrong', 65: 'die'}
  report = fuzz_aec.fuzz(80, seed=2, workers=2, chunk=20, time_limit=5,
                         max_pixels=limit, setup=setup, sabotage=sabotage,
                         log=print)
  text = fuzz_aec.summary(report)
  assert report.inputs == 80, text
  assert [c['index'] for c in report.crashes] == [3, 65], text
  assert report.hangs == [7], text
  assert [w['index'] for w in report.wrong] == [decodes], text
  assert report.ok + report.refused == 76 and report.restarts == 2
  assert report.failed
  assert 'ZeroDivisionError' in text and 'died (exit status 3)' in text
  assert f'--seed=2 --max_pixels={limit} --reproduce=3' in text


def _restated(seed, height: int, width: int) -> bytes:
  """The seed file stating another size, with a valid checksum."""
  fields = {name: (start, stop) for name, start, stop, _ in seed.fields}
  (start, _), (_, stop) = fields['height'], fields['width']
  body = seed.data[:start] + fuzz_aec._varint(height) + fuzz_aec._varint(width)
  return fuzz_aec.seal(body + seed.data[stop:-4])


@pytest.mark.parametrize('model', ['factorized', 'mean_scale'])
def test_a_file_stating_a_huge_image_is_refused_at_once(setup, model):
  codecs, seeds = setup
  codec = codecs[model]
  seed = next(s for s in seeds if s.model == model and s.shape[-1] == 4)
  bomb = _restated(seed, 30000, 30000)
  assert len(bomb) < 4000 and fuzz_aec.stated_shape(bomb) == (30000, 30000, 4)
  for decode in (codec.decode, codec.decode_latent, codec.parse):
    tracemalloc.start()
    start = time.monotonic()
    with pytest.raises(aec.CodecError) as e:
      decode(bomb)
    seconds = time.monotonic() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert seconds < 1 and peak < 1 << 20  # Nothing the size of the image.
    message = str(e.value)
    assert '30000x30000' in message and f'{aec.MAX_PIXELS:,}' in message
    assert 'max_pixels' in message
  # The limit is the caller's: a real file at exactly its stated size
  # decodes, one pixel less is refused and says so.
  h, w, _ = seed.shape
  assert codec.decode(seed.data, max_pixels=h * w).shape == seed.shape
  with pytest.raises(aec.CodecError, match=f'{h}x{w} = {h * w:,} pixels, over the '
                                           f'limit of {h * w - 1:,}'):
    codec.decode(seed.data, max_pixels=h * w - 1)


def test_an_alpha_plane_that_inflates_past_the_image_is_refused(setup):
  codecs, seeds = setup
  seed = next(s for s in seeds if s.model == 'factorized' and s.shape[-1] == 2)
  fields = {name: (start, stop) for name, start, stop, _ in seed.fields}
  start, _ = fields['alpha length']
  packed = zlib.compress(bytes(64 << 20), 9)  # 64 MiB of zeros in 64 KB.
  bomb = fuzz_aec.seal(seed.data[:start] + fuzz_aec._varint(len(packed)) + packed)
  tracemalloc.start()
  with pytest.raises(aec.CodecError, match='malformed alpha plane'):
    codecs['factorized'].decode(bomb)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 8 << 20, peak
  # A truncated alpha stream is still refused.
  cut = fuzz_aec.seal(seed.data[:start] + fuzz_aec._varint(100) + packed[:100])
  with pytest.raises(aec.CodecError, match='malformed alpha plane'):
    codecs['factorized'].decode(cut)


def test_the_decompress_command_takes_a_pixel_limit(setup, tmp_path, monkeypatch,
                                                     capsys):
  codecs, seeds = setup
  seed = next(s for s in seeds if s.model == 'factorized' and s.shape[-1] == 3)
  monkeypatch.setattr(codec_lib.workdir_lib, 'load_codec',
                      lambda workdir: codecs['factorized'])
  path = tmp_path / 'in.aec'
  path.write_bytes(seed.data)
  h, w, _ = seed.shape
  args = ['decompress', '--workdir=unused', str(path)]
  assert codec_lib.main(args + [f'--max_pixels={h * w - 1}',
                                str(tmp_path / 'a.png')]) == 1
  err = capsys.readouterr().err
  assert f'limit of {h * w - 1:,} pixels' in err and '--max_pixels' in err
  assert not (tmp_path / 'a.png').exists()
  assert codec_lib.main(args + [str(tmp_path / 'b.png')]) == 0
  assert np.asarray(Image.open(tmp_path / 'b.png')).shape == seed.shape
