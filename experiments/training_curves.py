"""Test quality against minutes of training, for runs side by side.

  python -m experiments.training_curves --metric=psnr_y --out=curves.png \
      --anchor='SRCNN (published)=32.75' \
      runs/sr_x3_default='default (bicubic input)' runs/sr_x3_fsrcnn=FSRCNN

Each run's `eval_history.jsonl` (written by the training loop at every
evaluation: the step, the minutes of training it took, the test metrics)
becomes one curve; `--anchor=NAME=VALUE` draws a dashed horizontal line (a
published figure, a classical method on the same images). The final value
of each curve is printed beside the anchors.
"""

import os
import sys
from typing import Sequence

from absl import app, flags
from matplotlib.figure import Figure

from ae_research import errors, train

FLAGS = flags.FLAGS
flags.DEFINE_string('metric', 'psnr', 'The metric to plot, e.g. psnr_y.')
flags.DEFINE_string('out', 'training_curves.png', 'The PNG to write.')
flags.DEFINE_string('title', '', 'The plot title.')
flags.DEFINE_multi_string('anchor', [], 'NAME=VALUE: a dashed reference line.')


def curves(runs: Sequence[tuple[str, str]], metric: str
           ) -> list[tuple[str, list[float], list[float]]]:
  """[(label, minutes, values)] of each (workdir, label)."""
  found = []
  for workdir, label in runs:
    history = train.read_history(workdir)
    if not history:
      raise errors.UserError(f'{workdir} has no eval_history.jsonl: train a run '
                             'there first (the loop writes one evaluation per '
                             'config.eval_every_steps)')
    if metric not in history[0]:
      raise errors.UserError(f'{workdir} records no {metric!r}; it records '
                             f'{sorted(k for k in history[0] if k != "step")}')
    found.append((label, [r['train_minutes'] for r in history],
                  [r[metric] for r in history]))
  return found


def plot(found, anchors: dict[str, float], metric: str, title: str,
         path: str) -> None:
  fig = Figure(figsize=(6.4, 4.2))
  ax = fig.subplots()
  for label, minutes, values in found:
    ax.plot(minutes, values, marker='o', markersize=3, label=label)
  for i, (name, value) in enumerate(anchors.items()):
    ax.axhline(value, linestyle='--', linewidth=1, color=f'C{len(found) + i}',
               label=f'{name}: {value:.2f}')
  ax.set_xlabel('minutes of training')
  ax.set_ylabel(metric)
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=110)


def _parse(argv: Sequence[str]) -> tuple[list[tuple[str, str]], dict[str, float]]:
  runs = []
  for arg in argv:
    workdir, _, label = arg.partition('=')
    runs.append((workdir, label or os.path.basename(os.path.normpath(workdir))))
  anchors = {}
  for a in FLAGS.anchor:
    name, _, value = a.rpartition('=')
    try:
      anchors[name] = float(value)
    except ValueError:
      raise errors.UserError(f'--anchor={a!r}: give NAME=VALUE, e.g. '
                             "--anchor='SRCNN=32.75'") from None
  if not runs:
    raise errors.UserError('name at least one workdir (WORKDIR or WORKDIR=LABEL)')
  return runs, anchors


def main(argv: Sequence[str]) -> None:
  try:
    runs, anchors = _parse(argv[1:])
    found = curves(runs, FLAGS.metric)
  except errors.UserError as e:
    sys.exit(f'error: {e}')
  plot(found, anchors, FLAGS.metric, FLAGS.title, FLAGS.out)
  width = max(len(label) for label, _, _ in found)
  for label, minutes, values in found:
    print(f'{label:<{width}}  {values[-1]:.2f} after {minutes[-1]:.1f} min')
  for name, value in anchors.items():
    print(f'{name:<{width}}  {value:.2f}')
  print(f'wrote {FLAGS.out}')


if __name__ == '__main__':
  app.run(main)
