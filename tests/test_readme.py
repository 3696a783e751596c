"""The README's code example runs as printed."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_python_example_runs():
  with open(os.path.join(ROOT, 'README.md')) as f:
    blocks = re.findall(r'```python\n(.*?)```', f.read(), re.S)
  assert blocks, 'README has no python example'
  namespace = {}
  exec(compile(blocks[0], 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  assert namespace['y'].shape == (8, 32, 32, 3)
  assert namespace['z'].shape == (8, 8, 8, 64)
  assert int(namespace['state'].step) == 1


def test_readme_commands_name_existing_files():
  with open(os.path.join(ROOT, 'README.md')) as f:
    text = f.read()
  for path in set(re.findall(r'--config=(configs/\w+\.py)', text)):
    assert os.path.exists(os.path.join(ROOT, path)), path
  assert 'pip install -c constraints.txt -e' in text
  assert os.path.exists(os.path.join(ROOT, 'constraints.txt'))
