"""Colorization of shapes: circles must come out red, squares blue.

  python -m ae_research.main --config=configs/colorize.py --workdir=runs/colorize
  python -m ae_research.main --config=configs/colorize.py:smoke --workdir=runs/smoke
"""

from configs import default


def get_config(variant: str = ''):
  config = default.get_config()
  config.task = 'colorize'
  config.dataset = 'shapes'
  return default.apply_variant(config, variant)
