"""TensorBoard events as tensorboard reads them back, and the PNG grids."""

import io
import os

import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator

from ae_research import image_io, summaries


def _events(logdir):
  events = event_accumulator.EventAccumulator(str(logdir))
  events.Reload()
  return events


def test_scalars_and_image_read_back(tmp_path):
  logdir = tmp_path / 'tb'
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (7, 11, 3), dtype=np.uint8)  # Odd, not square.
  written = {1: {'train/loss': 0.75, 'train/images_per_sec': 1234.5},
             5: {'train/loss': 0.25, 'eval/psnr': 27.125}}
  writer = summaries.Writer(str(logdir))
  for step, scalars in written.items():
    writer.scalars(step, scalars)
  writer.image(5, 'samples/grid', image)
  writer.close()

  assert len(os.listdir(logdir)) == 1
  events = _events(logdir)
  tags = {t for s in written.values() for t in s}
  assert set(events.Tags()['scalars']) == tags
  for tag in tags:
    expected = [(step, s[tag]) for step, s in written.items() if tag in s]
    got = [(e.step, e.value) for e in events.Scalars(tag)]
    assert [s for s, _ in got] == [s for s, _ in expected]
    # Event files hold scalars as float32.
    np.testing.assert_allclose([v for _, v in got], [v for _, v in expected],
                               rtol=1e-6)
  assert events.Tags()['images'] == ['samples/grid']
  [event] = events.Images('samples/grid')
  assert (event.step, event.height, event.width) == (5, 7, 11)
  decoded = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)))
  np.testing.assert_array_equal(decoded, image)


def test_each_writer_has_its_own_file(tmp_path):
  # Writers within one second (quick resumes) must not share a file, and
  # their files read back in the order written (past 9 and 10 writers too).
  steps = list(range(1, 13))
  for step in steps:
    writer = summaries.Writer(str(tmp_path))
    writer.scalars(step, {'loss': float(step)})
    writer.close()
  assert len(os.listdir(tmp_path)) == len(steps)
  assert [e.step for e in _events(tmp_path).Scalars('loss')] == steps


def test_writing_after_close_raises_and_opens_no_second_file(tmp_path):
  writer = summaries.Writer(str(tmp_path))
  writer.scalars(1, {'loss': 1.0})
  writer.close()
  writer.close()  # Twice is harmless.
  with pytest.raises(OSError):
    writer.scalars(2, {'loss': 2.0})
  assert len(os.listdir(tmp_path)) == 1


def test_disabled_writer_writes_nothing(tmp_path):
  logdir = tmp_path / 'tb'
  writer = summaries.Writer(str(logdir), enabled=False)
  writer.scalars(1, {'loss': 1.0})
  writer.image(1, 'samples/grid', np.zeros((4, 4, 3), np.uint8))
  writer.flush()
  writer.close()
  assert not logdir.exists()


def test_to_uint8_is_image_io_with_gray_as_rgb():
  rng = np.random.default_rng(1)
  gray = rng.uniform(-0.2, 1.2, (3, 5, 1)).astype(np.float32)
  rgb = rng.uniform(-0.2, 1.2, (3, 5, 3)).astype(np.float32)
  np.testing.assert_array_equal(summaries.to_uint8(rgb), image_io.to_uint8(rgb))
  np.testing.assert_array_equal(summaries.to_uint8(gray),
                                image_io.to_uint8(np.repeat(gray, 3, -1)))


def test_image_grid_places_every_image():
  rng = np.random.default_rng(2)
  n, h, w, pad = 3, 4, 5, 2
  columns = [rng.uniform(0, 1, (n, h, w, c)).astype(np.float32) for c in (1, 3, 3)]
  grid = summaries.image_grid(columns, pad)
  assert grid.dtype == np.uint8
  assert grid.shape == (n * h + (n - 1) * pad, 3 * w + 2 * pad, 3)
  for i in range(n):
    for j, column in enumerate(columns):
      y, x = i * (h + pad), j * (w + pad)
      np.testing.assert_array_equal(grid[y:y + h, x:x + w],
                                    summaries.to_uint8(column[i]))
  assert (grid[h:h + pad] == 255).all()  # The gap between rows is white.


def test_labelled_row_puts_labels_over_the_images():
  rng = np.random.default_rng(3)
  images = [rng.uniform(0, 1, (6, w, 3)).astype(np.float32) for w in (4, 9)]
  row = summaries.labelled_row(list(zip(['input', 'output'], images)), pad=2)
  expected_row = summaries.image_grid([x[None] for x in images], pad=2)
  assert row.dtype == np.uint8
  assert row.shape[1:] == expected_row.shape[1:]
  header = row.shape[0] - expected_row.shape[0]
  assert header > 0
  np.testing.assert_array_equal(row[header:], expected_row)
  assert (row[:header] < 255).any()  # Some text was drawn.
