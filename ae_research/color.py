"""Colour conversions, one home for the weights the codebase uses.

Each function takes one image HxWx3 or a batch with any leading axes
(`x_HxWx3` names the trailing axes), as a numpy or a jax array: the weights
are numpy constants and `x @ W` with a jax `x` gives a jax array, so the
host pipeline and jitted metrics share this code without it importing jax.
"""

import numpy as np

# ITU-R BT.601 luma weights for R, G, B.
LUMA_BT601 = np.array([0.299, 0.587, 0.114], np.float32)

# Y of BT.601 YCbCr on the 0-255 scale from R, G, B in [0, 1] (MATLAB's
# rgb2ycbcr, which the super-resolution literature reports PSNR on).
_Y_WEIGHTS_255 = np.array([65.481, 128.553, 24.966], np.float32)
_Y_OFFSET_255 = 16.0


def _check_rgb(fn: str, x_HxWx3) -> None:
  """Raises ValueError unless `x` is ...xHxWx3 of real (not bool) values."""
  shape, dtype = tuple(x_HxWx3.shape), np.dtype(x_HxWx3.dtype)
  if len(shape) < 3 or shape[-1] != 3:
    raise ValueError(f'{fn} takes RGB images ...xHxWx3 (last axis 3); got an '
                     f'array of shape {shape}')
  # bfloat16 has kind 'V', so refuse the kinds that cannot be colour values
  # rather than asking for np.floating.
  if dtype.kind in 'bc':
    raise ValueError(f'{fn} takes real RGB values; got dtype {dtype}')


def luma(x_HxWx3):
  """ITU-R BT.601 luma, Y' = 0.299 R + 0.587 G + 0.114 B.

  Args:
    x_HxWx3: RGB images, any leading axes; any scale (luma is linear,
      so uint8 input gives luma on the 0-255 scale).

  Returns:
    float32 ...xHxWx1, the channel axis kept.
  """
  _check_rgb('luma', x_HxWx3)
  return (x_HxWx3 @ LUMA_BT601)[..., None].astype(np.float32)


def rgb_to_y(x_HxWx3):
  """Y of YCbCr in [16, 235]/255, as the super-resolution protocol uses.

  Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in [0, 1].

  Args:
    x_HxWx3: float RGB images in [0, 1], HxWx3 or with any leading axes.

  Returns:
    float32 ...xHxWx1 in [16/255, 235/255].

  Raises:
    ValueError: the last axis is not 3, or the dtype is integer (the offset
      of 16 assumes [0, 1]; divide uint8 by 255 first).
  """
  _check_rgb('rgb_to_y', x_HxWx3)
  dtype = np.dtype(x_HxWx3.dtype)
  if dtype.kind in 'iu':
    raise ValueError(f'rgb_to_y takes float RGB in [0, 1]; got dtype {dtype} '
                     '(e.g. x.astype(np.float32) / 255 first)')
  y_HxW = _Y_OFFSET_255 + x_HxWx3 @ _Y_WEIGHTS_255
  return (y_HxW / 255.0)[..., None].astype(np.float32)


# BT.601 chroma from R, G, B (the luma weights above): Cb = (B - Y) / 1.772,
# Cr = (R - Y) / 1.402, each in [-0.5, 0.5] for RGB in [0, 1].
_CHROMA = np.stack([(np.eye(3, dtype=np.float32)[2] - LUMA_BT601) / 1.772,
                    (np.eye(3, dtype=np.float32)[0] - LUMA_BT601) / 1.402], 1)
# R, G, B from (Cb, Cr) once the luma is added to every channel.
_FROM_CHROMA = np.array([[0.0, -0.114 * 1.772 / 0.587, 1.772],
                         [1.402, -0.299 * 1.402 / 0.587, 0.0]], np.float32)


def chroma(x_HxWx3):
  """BT.601 chroma (Cb, Cr) of RGB: the colour that `luma` leaves out.

  Args:
    x_HxWx3: RGB images, any leading axes; any scale.

  Returns:
    float32 ...xHxWx2 (Cb, Cr), in [-0.5, 0.5] for RGB in [0, 1].
  """
  _check_rgb('chroma', x_HxWx3)
  return (x_HxWx3 @ _CHROMA).astype(np.float32)


def from_luma_chroma(y_HxWx1, cbcr_HxWx2):
  """RGB from BT.601 luma and chroma, the inverse of `luma` and `chroma`:
  from_luma_chroma(luma(x), chroma(x)) == x."""
  return y_HxWx1 + cbcr_HxWx2 @ _FROM_CHROMA
