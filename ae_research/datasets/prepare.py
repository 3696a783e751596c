"""Generating a data set once, however many processes ask for it at once
(the points of a sweep, the processes of one multi-process run)."""

import fcntl
import os
from typing import Callable


def prepare_once(make_builder: Callable, data_dir: str, name: str):
  """make_builder().download_and_prepare() under a lock file in `data_dir`:
  the first process generates, the others wait and then open what it wrote
  (a builder made before the data existed would not see it)."""
  root = os.path.expanduser(data_dir or os.environ.get(
      'TFDS_DATA_DIR', '~/tensorflow_datasets'))
  os.makedirs(root, exist_ok=True)
  with open(os.path.join(root, f'.{name}.lock'), 'w') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    builder = make_builder()
    builder.download_and_prepare()
  return builder
