"""The codec command: an image to a compact .aec file and back, with a
trained compression run.

  python -m ae_research.codec compress --workdir=runs/compress photo.png photo.aec
  python -m ae_research.codec decompress --workdir=runs/compress photo.aec photo.png

The file format and the codec are `ae_research.aec`. A file is never
overwritten without --overwrite; every problem is one line and exit status 1.
decompress refuses a file that states an image of more than --max_pixels
pixels (height x width; default aec.MAX_PIXELS, 2**28) before decoding
anything: a file of a few bytes can state a huge image.
"""

import argparse
import os
import sys

import numpy as np
from PIL import Image

from ae_research import aec, errors, image_io, summaries
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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m ae_research.codec',
      description='Compress images to .aec files and back with a trained '
                  'compression run (configs/compress.py).')
  parser.add_argument('command', choices=('compress', 'decompress'))
  parser.add_argument('--workdir', required=True,
                      help='the training run whose latest checkpoint codes')
  parser.add_argument('--overwrite', action='store_true',
                      help='replace an existing output file')
  parser.add_argument('--max_pixels', type=int, default=aec.MAX_PIXELS,
                      help='decompress: refuse files that state an image of more '
                           'pixels than this (height x width; default '
                           '%(default)s), before decoding anything')
  parser.add_argument('input')
  parser.add_argument('output')
  args = parser.parse_args(argv)
  try:
    if not os.path.isfile(args.input):
      raise CodecError(f'{args.input} is not a file')
    if os.path.exists(args.output) and not args.overwrite:
      raise CodecError(f'{args.output} exists; pass --overwrite to replace it')
    if args.command == 'compress':
      image = read_image(args.input)
      codec = workdir_lib.load_codec(args.workdir)
      data = codec.encode(image)
      def write(tmp):
        with open(tmp, 'wb') as f:
          f.write(data)
      _write_new(args.output, write, args.overwrite)
      h, w = image.shape[:2]
      print(f'{args.input} ({w}x{h}) -> {args.output}: {len(data)} bytes, '
            f'{8 * len(data) / (h * w):.4f} bpp')
    else:
      with open(args.input, 'rb') as f:
        data = f.read()
      codec = workdir_lib.load_codec(args.workdir)
      image = codec.decode(data, max_pixels=args.max_pixels)
      ext = os.path.splitext(args.output)[1].lower()
      if ext not in ('.png', '.bmp', '.tif', '.tiff', '.ppm', '.pgm'):
        raise CodecError(f'{args.output}: write the decoded image to a lossless '
                         'format (.png, .bmp, .tif, .ppm)')
      if image.shape[-1] in (2, 4) and ext not in ('.png', '.tif', '.tiff'):
        raise CodecError(f'{args.input} has an alpha channel; write it to .png '
                         'or .tif')
      _write_new(args.output, lambda tmp: _save(tmp, image, ext), args.overwrite)
      print(f'{args.input} -> {args.output} ({image.shape[1]}x{image.shape[0]})')
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


def _save(path: str, image: np.ndarray, ext: str) -> None:
  fmt = {'.png': 'PNG', '.bmp': 'BMP', '.tif': 'TIFF', '.tiff': 'TIFF',
         '.ppm': 'PPM', '.pgm': 'PPM'}[ext]
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, format=fmt)


if __name__ == '__main__':
  sys.exit(main())
