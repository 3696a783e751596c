"""The .aec decoder under fuzzing (`ae_research.fuzz_aec`, a short run, as
benchmarks/fuzz_aec.py runs it), the fuzzing harness itself, and the
decoder's pixel limit against decompression bombs."""

import time
import tracemalloc
import zlib

import numpy as np
import pytest
from PIL import Image

from ae_research import aec, cli
from ae_research import codec as codec_lib
from ae_research import fuzz_aec, fuzzing


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


@pytest.mark.slow
def test_a_short_fuzz_run_finds_no_crash_hang_or_wrong_result(setup):
  start = time.monotonic()
  report = fuzz_aec.fuzz(3000, seed=1, workers=2, setup=setup, log=print)
  text = fuzz_aec.summary(report)
  print(text)
  print(f'test: {time.monotonic() - start:.1f} s')
  assert report.inputs == 3000
  assert not report.failures, text
  assert report.count('decoded') + report.count('refused') == 3000
  # Both outcomes, from mutated files: header edits behind a valid checksum
  # that still decode, and refusals of many kinds, the pixel limit's too.
  assert report.groups['header fields, resealed'].counts['decoded'] > 0
  assert report.groups['bytes, resealed'].counts['decoded'] > 0
  assert report.count('refused') > 0 and len(report.reasons) > 10
  assert any(k.startswith(fuzz_aec.TOO_LARGE) for k in report.reasons)
  assert 0 < report.facts['pixels'].high <= report.target.max_pixels
  assert {s.version for s in report.target.seeds} == set(aec.READS)
  assert 'crashes:       0' in text and 'of them by the pixel limit' in text


@pytest.mark.slow
def test_the_harness_counts_crashes_hangs_and_wrong_results(setup):
  """Inputs broken on purpose inside the workers: an exception, an input
  that never ends, a wrong result and a worker that dies are each counted
  at their index, and every other input still runs."""
  codecs, seeds = setup
  limit = fuzz_aec.LIMIT_FACTOR * max(s.shape[0] * s.shape[1] for s in seeds)
  decodes = next(i for i in range(10, 60) if fuzz_aec.check(
      codecs, fuzz_aec.mutate(seeds, 2, i), limit).outcome == 'decoded')
  sabotage = {3: 'crash', 7: 'hang', decodes: 'wrong', 65: 'die'}
  report = fuzz_aec.fuzz(80, seed=2, workers=2, chunk=20, time_limit=5,
                         max_pixels=limit, setup=setup, sabotage=sabotage,
                         log=print)
  text = fuzz_aec.summary(report)
  assert report.inputs == 80, text
  assert report.failed_at('crash') == [3, 65], text
  assert report.failed_at('hang') == [7], text
  assert report.failed_at('wrong') == [decodes], text
  assert report.count('decoded') + report.count('refused') == 76
  assert report.restarts == 2 and report.failed
  assert 'ZeroDivisionError' in text and 'died (exit status 3)' in text
  assert f'--seed=2 --max_pixels={limit} --reproduce=3' in text
  with pytest.raises(ValueError, match='sabotage'):
    fuzz_aec.fuzz(1, setup=setup, sabotage={0: 'explode'})


def test_a_broken_decoder_is_a_crash_or_a_wrong_result(setup, monkeypatch):
  """The contract checked, against decoders broken on purpose: an exception
  other than CodecError, an image of the wrong size, and a refusal that
  came after allocating."""
  codecs, seeds = setup
  target = fuzz_aec.Target(dict(codecs), seeds, seed=0)
  index = next(i for i in range(100) if target.check(target.make(i)).outcome == 'decoded')
  codec = codecs[target.make(index).model]
  decode = codec.decode

  def broken(kind):
    def run(data, max_pixels=None):
      if kind == 'raises':
        raise IndexError('broken on purpose')
      if kind == 'allocates':
        np.ones(256 << 20, np.uint8)
        raise aec.CodecError('refused late')
      return decode(data, max_pixels)[1:]
    return run

  found = {}
  for kind in ('raises', 'allocates', 'wrong size'):
    monkeypatch.setattr(codec, 'decode', broken(kind))
    found[kind] = fuzzing.check_one(target, index)
  assert found['raises']['o'] == 'crash' and 'IndexError' in found['raises']['d']
  assert found['allocates']['o'] == 'wrong', found['allocates']
  assert 'refused only after the worker grew by' in found['allocates']['d']
  assert found['wrong size']['o'] == 'wrong' and 'header states' in found['wrong size']['d']
  monkeypatch.setattr(codec, 'decode', decode)
  assert fuzzing.check_one(target, index)['o'] == 'decoded'


def _restated(seed, height: int, width: int) -> bytes:
  """The seed file stating another size, with a valid checksum."""
  fields = {name: (start, stop) for name, start, stop, _ in seed.fields}
  (start, _), (_, stop) = fields['height'], fields['width']
  body = seed.data[:start] + aec.varint(height) + aec.varint(width)
  return aec.seal(body + seed.data[stop:-4])


@pytest.mark.parametrize('model', ['factorized', 'mean_scale'])
def test_a_file_stating_a_huge_image_is_refused_at_once(setup, model):
  codecs, seeds = setup
  codec = codecs[model]
  seed = next(s for s in seeds if s.model == model and s.shape[-1] == 4)
  bomb = _restated(seed, 30000, 30000)
  assert len(bomb) < 4000  # The messages below say it states 30000x30000.
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
  bomb = aec.seal(seed.data[:start] + aec.varint(len(packed)) + packed)
  tracemalloc.start()
  with pytest.raises(aec.CodecError, match='malformed alpha plane'):
    codecs['factorized'].decode(bomb)
  peak = tracemalloc.get_traced_memory()[1]
  tracemalloc.stop()
  assert peak < 8 << 20, peak
  # A truncated alpha stream is still refused.
  cut = aec.seal(seed.data[:start] + aec.varint(100) + packed[:100])
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
  assert cli.call(codec_lib.main, args + [f'--max_pixels={h * w - 1}',
                                          str(tmp_path / 'a.png')]) == 1
  err = capsys.readouterr().err
  assert f'limit of {h * w - 1:,} pixels' in err and '--max_pixels' in err
  assert not (tmp_path / 'a.png').exists()
  assert cli.call(codec_lib.main, args + [str(tmp_path / 'b.png')]) == 0
  assert np.asarray(Image.open(tmp_path / 'b.png')).shape == seed.shape
