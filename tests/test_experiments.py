"""The sweep driver's argument parsing (its runs are the shared loop's)."""

import importlib.util
import os

import pytest

_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'experiments',
                     'compress_rd.py')
_spec = importlib.util.spec_from_file_location('compress_rd', _PATH)
compress_rd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compress_rd)


def test_lambdas_and_their_starting_points():
  assert compress_rd.parse_lambdas('0.003,0.01@0.003,0.02@0.01') == [
      (0.003, None), (0.01, 0.003), (0.02, 0.01)]
  assert compress_rd.parse_lambdas(compress_rd.DEFAULT_LAMBDAS)


@pytest.mark.parametrize('text,message', [
    ('0.01@0.003', 'not listed before it'), ('x', 'VALUE or VALUE@FROM'),
    ('-1', 'must be > 0'), ('', 'no lambda')])
def test_bad_lambdas_are_named(text, message):
  with pytest.raises(ValueError, match=message):
    compress_rd.parse_lambdas(text)
