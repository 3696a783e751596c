"""The codec command: an image to a compact .aec file and back, with a
trained compression run.

  python -m ae_research.codec compress --workdir=runs/compress photo.png photo.aec
  python -m ae_research.codec decompress --workdir=runs/compress photo.aec photo.png
  python -m ae_research.codec compress --pretrained=NAME photo.png photo.aec

--pretrained names a compression model shipped with the package
(`ae_research.pretrained`) instead of a training run.

A variable-rate model (config.compress.rate_levels) codes at any rate:
--quality=Q (0 to 100; default the model's config.compress.quality), or
--bpp=B, the highest quality whose file is at most B bits per pixel (found
in at most 8 encodes). The file records the quality; decompress needs
neither flag.

The file format and the codec are `ae_research.aec`. A file is never
overwritten without --overwrite; every problem is one line, with exit status
1 (2 for a problem with the command line itself); running out of memory
on a file is one of those lines too, and writes nothing.
decompress refuses a file that states an image of more than --max_pixels
pixels (height x width; default aec.MAX_PIXELS, 2**28) before decoding
anything: a file of a few bytes can state a huge image.
"""

import os
import sys

from absl import flags
import numpy as np
from PIL import Image

from ae_research import aec, cli, errors, image_io, pretrained, summaries, tasks
from ae_research import tiling
from ae_research import workdir as workdir_lib

CodecError = aec.CodecError


def read_image(path: str) -> np.ndarray:
  """An image file as uint8 HxWxC, C: 1 gray, 3 RGB, 2 or 4 with alpha last;
  EXIF orientation applied, 16 bits reduced to 8."""
  try:
    image = image_io.read(path)
  except image_io.ImageError as e:
    raise CodecError(str(e)) from None
  planes = [image.pixels] + ([] if image.alpha is None else [image.alpha])
  return image_io.to_uint8(np.concatenate(planes, -1))


def _write_new(path: str, write, overwrite: bool) -> None:
  """Writes through a temporary file, so a failure leaves no half file."""
  if os.path.exists(path) and not overwrite:
    raise CodecError(f'{path} exists; pass --overwrite to replace it')
  directory = os.path.dirname(os.path.abspath(path))
  if not os.path.isdir(directory):
    raise CodecError(f'{directory} is not a folder')
  summaries.write_through_temp(path, write)


_WORKDIR = cli.define_workdir(
    'The training run whose latest checkpoint codes (or --pretrained).')
_PRETRAINED = cli.define_pretrained(
    'A compression model shipped with the package that codes instead of a '
    'training run (python -m ae_research.pretrained lists them).')
_OVERWRITE = cli.define_overwrite('Replace an existing output file.')
_MAX_PIXELS = flags.DEFINE_integer(
    'max_pixels', aec.MAX_PIXELS, 'decompress: refuse files that state an '
    'image of more pixels than this (height x width), before decoding '
    'anything.')
_QUALITY = flags.DEFINE_float(
    'quality', None, 'compress, a variable-rate model: the quality, 0 (the '
    'fewest bits) to 100.')
_BPP = flags.DEFINE_float(
    'bpp', None, 'compress, a variable-rate model: the largest rate, in bits '
    'per pixel; the highest quality that stays under it is used.')
_COMMANDS = ('compress', 'decompress')


def main(argv: list[str]) -> int:
  """The command; argv[1:] is compress|decompress INPUT OUTPUT (absl has
  parsed the flags)."""
  cli.require_one(_WORKDIR, _PRETRAINED)
  if len(argv) != 4 or argv[1] not in _COMMANDS:
    cli.usage_error('expected compress or decompress, then the input and the '
                    f'output file; got: {" ".join(argv[1:]) or "nothing"}')
  command, input_path, output = argv[1:]
  overwrite = _OVERWRITE.value
  if _QUALITY.value is not None and _BPP.value is not None:
    cli.usage_error('give --quality or --bpp, not both')
  if command == 'decompress' and (_QUALITY.value is not None or _BPP.value is not None):
    cli.usage_error('--quality and --bpp are for compress: a file records its '
                    'quality')
  try:
    if not os.path.isfile(input_path):
      raise CodecError(f'{input_path} is not a file')
    if os.path.exists(output) and not overwrite:
      raise CodecError(f'{output} exists; pass --overwrite to replace it')
    if command == 'compress':
      image = read_image(input_path)
      codec = _load_codec()
      if (_QUALITY.value is not None or _BPP.value is not None) and not codec.variable_rate:
        raise CodecError('--quality and --bpp need a variable-rate model '
                         '(config.compress.rate_levels > 0); this one codes '
                         'one rate, set by its lambda when it was trained')
      if _BPP.value is not None:
        data, quality = codec.encode_to_bpp(image, _BPP.value)
      else:
        data = codec.encode(image, quality=_QUALITY.value)
      def write(tmp):
        with open(tmp, 'wb') as f:
          f.write(data)
      _write_new(output, write, overwrite)
      h, w = image.shape[:2]
      at = (f', quality {codec.quality_of(data):g}' if codec.variable_rate else '')
      print(f'{input_path} ({w}x{h}) -> {output}: {len(data)} bytes, '
            f'{8 * len(data) / (h * w):.4f} bpp{at}')
    else:
      with open(input_path, 'rb') as f:
        data = f.read()
      codec = _load_codec()
      image = codec.decode(data, max_pixels=_MAX_PIXELS.value)
      ext = os.path.splitext(output)[1].lower()
      if ext not in ('.png', '.bmp', '.tif', '.tiff', '.ppm', '.pgm'):
        raise CodecError(f'{output}: write the decoded image to a lossless '
                         'format (.png, .bmp, .tif, .ppm)')
      if image.shape[-1] in (2, 4) and ext not in ('.png', '.tif', '.tiff'):
        raise CodecError(f'{input_path} has an alpha channel; write it to .png '
                         'or .tif')
      _write_new(output, lambda tmp: _save(tmp, image, ext), overwrite)
      print(f'{input_path} -> {output} ({image.shape[1]}x{image.shape[0]})')
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  except Exception as e:  # pylint: disable=broad-except
    if not errors.out_of_memory(e):
      raise
    print(f'error: {input_path}: not enough memory to {command} it '
          f'({type(e).__name__}); {output} was not written', file=sys.stderr)
    return 1
  return 0


def _load_codec() -> aec.Codec:
  """The codec of --workdir's latest checkpoint or of the --pretrained model."""
  if _WORKDIR.value is not None:
    return workdir_lib.load_codec(_WORKDIR.value)
  name = _PRETRAINED.value
  workdir_lib.require_codec(pretrained.get_config(name), f'--pretrained={name}')
  config, state = pretrained.load_state(name)
  return tasks.get(config.task).codec(config, state, tiling.Tiling())


def _save(path: str, image: np.ndarray, ext: str) -> None:
  fmt = {'.png': 'PNG', '.bmp': 'BMP', '.tif': 'TIFF', '.tiff': 'TIFF',
         '.ppm': 'PPM', '.pgm': 'PPM'}[ext]
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format=fmt)


if __name__ == '__main__':
  cli.run(main)
