"""The commands' shared conventions (`ae_research.cli`): absl flags that
coexist in one process, a mistake in the command line as one line and exit
status 2, a problem with the files or the run as one line and status 1."""

import pytest

from ae_research import apply, cli, codec, main
from ae_research.rd import __main__ as rd_command


@pytest.mark.parametrize('command,parser,required', [
    (main, main._parse_flags, '--config is required'),
    (apply, cli.parse, 'give one of --workdir or --pretrained'),
    (codec, cli.parse, 'give one of --workdir or --pretrained'),
    (rd_command, cli.parse, '--workdirs is required'),
])
def test_each_command_asks_for_its_own_flags(command, parser, required, capsys):
  """absl's flags are global: with every command imported, none of them
  requires another one's flags."""
  assert cli.call(command.main, [], flags_parser=parser) == 2
  err = capsys.readouterr().err
  assert err.startswith(f'error: {required}\n'), err


@pytest.mark.parametrize('command,argv,message', [
    (apply, ['--workdir=w'], 'error: --output is required'),
    (apply, ['--workdir=w', '--output=o'], 'error: no inputs'),
    (apply, ['--workdir=w', '--output=o', '--tiling=sometimes', 'a.png'],
     'flag --tiling=sometimes: value should be one of <auto|always|never>'),
    (apply, ['--workdir=w', '--output=o', '--tile_size=big', 'a.png'],
     "flag --tile_size=big: invalid literal for int() with base 10: 'big'"),
    (apply, ['--workdir=w', '--output=o', '--no_such_flag', 'a.png'],
     "Unknown command line flag 'no_such_flag'"),
    (codec, ['--workdir=w', 'a.png', 'b.aec'],
     'expected compress or decompress, then the input and the output file; '
     'got: a.png b.aec'),
    (codec, ['--workdir=w', 'compress', 'a.png'], 'got: compress a.png'),
    (codec, ['--workdir=w', '--max_pixels=many', 'decompress', 'a', 'b'],
     'flag --max_pixels=many'),
    (rd_command, ['--workdirs=a', '--output=o', '--published=elsewhere'],
     'flag --published=elsewhere: value should be one of <kodak>'),
    (rd_command, ['--workdirs=,', '--output=o'], '--workdirs names no run'),
    (rd_command, ['--workdirs=a', '--output=o', 'b'], "unexpected arguments ['b']"),
])
def test_a_mistake_in_the_command_line_is_one_line_and_status_2(
    command, argv, message, capsys):
  assert cli.call(command.main, argv) == 2
  err = capsys.readouterr().err
  assert message in err, err
  assert err.startswith('error: ') and len(err.splitlines()) == 2, err
  assert err.splitlines()[1] == 'Pass --help to see the flags.'


def test_a_problem_with_the_files_is_one_line_and_status_1(tmp_path, capsys):
  given = tmp_path / 'given.png'
  given.write_bytes(b'not an image')
  assert cli.call(codec.main, ['--workdir=w', 'compress', str(tmp_path / 'no.png'),
                               str(tmp_path / 'o.aec')]) == 1
  assert capsys.readouterr().err == f'error: {tmp_path / "no.png"} is not a file\n'
  assert cli.call(rd_command.main, [f'--workdirs={tmp_path / "none"}',
                                    f'--output={tmp_path / "report"}']) == 1
  err = capsys.readouterr().err
  assert err.startswith('error: ') and len(err.splitlines()) == 1, err


def test_every_call_starts_from_the_defaults(tmp_path, capsys):
  given, out = tmp_path / 'given.png', tmp_path / 'out.aec'
  given.write_bytes(b'not an image')
  out.write_bytes(b'kept')
  argv = ['--workdir=w', 'compress', str(given), str(out)]
  # With --overwrite, the existing output is no obstacle: the input is.
  assert cli.call(codec.main, ['--overwrite', *argv]) == 1
  assert 'exists' not in capsys.readouterr().err
  # Without it, the same call stops at the output: --overwrite did not stay.
  assert cli.call(codec.main, argv) == 1
  assert 'exists; pass --overwrite to replace it' in capsys.readouterr().err
  assert out.read_bytes() == b'kept'
  assert not cli.FLAGS.is_parsed()
