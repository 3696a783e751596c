"""Hyperparameter studies: the points of a sweep, and what their runs measured.

A study (a file in experiments/) defines

  STUDY = sweep.Study(
      name='denoise_sigma', config='configs/denoise.py',
      points=sweep.grid({'denoise.sigma': [15, 25, 50]}),
      metrics=['model.psnr', 'nl_means.psnr'])

and optionally `analyze(rows, out_dir)` for more than the shared table and
plots. Each point is one run, `python -m ae_research.main --config=CONFIG
--workdir=ROOT/<point name> --config.FIELD=VALUE...`, started by the
launchers in launch/ (local processes, or a SLURM job array);
`write_report` collects the points' metrics.json into ROOT/results.md,
results.json and one PNG per metric against the swept fields.
"""

import dataclasses
import importlib.util
import itertools
import json
import math
import os
import sys
from typing import Any, Callable, Optional, Sequence

import numpy as np
from matplotlib import ticker
from matplotlib.figure import Figure

from ae_research import summaries


@dataclasses.dataclass(frozen=True)
class Study:
  """A sweep over config fields and the metrics to compare.

  metrics: 'method.metric' paths into metrics.json ('model.psnr',
    'bicubic.psnr_y'); those of the model are drawn as solid lines, the
    others (baselines) dashed.
  overrides: fields set for every point (e.g. the number of steps).
  """
  name: str
  config: str
  points: Sequence[dict[str, Any]]
  metrics: Sequence[str]
  overrides: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def fields(self) -> list[str]:
    """The swept fields, in the order they first appear."""
    out = []
    for p in self.points:
      out += [k for k in p if k not in out]
    return out


def grid(axes: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
  """Every combination of the values of `axes` ({'field.path': values})."""
  keys = list(axes)
  return [dict(zip(keys, values)) for values in itertools.product(*axes.values())]


def log_uniform(lo: float, hi: float) -> Callable[[np.random.Generator], float]:
  return lambda rng: float(np.exp(rng.uniform(math.log(lo), math.log(hi))))


def uniform(lo: float, hi: float) -> Callable[[np.random.Generator], float]:
  return lambda rng: float(rng.uniform(lo, hi))


def choice(values: Sequence[Any]) -> Callable[[np.random.Generator], Any]:
  return lambda rng: values[int(rng.integers(len(values)))]


def random_search(space: dict[str, Callable[[np.random.Generator], Any]],
                  num_points: int, seed: int = 0) -> list[dict[str, Any]]:
  """`num_points` draws from `space` ({'field.path': sampler}); the same
  seed gives the same points. Floats are rounded to 3 significant digits,
  which keeps run names short."""
  rng = np.random.default_rng(seed)
  points = []
  for _ in range(num_points):
    point = {}
    for key, draw in space.items():
      v = draw(rng)
      point[key] = float(f'{v:.3g}') if isinstance(v, float) else v
    points.append(point)
  return points


def _format(value: Any) -> str:
  """A value as --config.FIELD=VALUE understands it."""
  if isinstance(value, (tuple, list)):
    return '(' + ', '.join(_format(v) for v in value) + (',)' if len(value) == 1 else ')')
  if isinstance(value, float):
    return repr(value)
  return str(value)


def point_name(point: dict[str, Any]) -> str:
  """A folder name for a point: 'sigma_25', 'scale_3-features_64'."""
  parts = []
  for key, value in point.items():
    text = _format(value).strip('()').replace(', ', '_').rstrip(',')
    parts.append(f'{key.split(".")[-1]}_{text}')
  name = '-'.join(parts) or 'default'
  return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)


def command(study: Study, point: dict[str, Any], workdir: str,
            extra: Sequence[str] = ()) -> list[str]:
  """The training command of one point (with `extra` flags appended)."""
  fields = {**study.overrides, **point}
  return ([sys.executable, '-m', 'ae_research.main', f'--config={study.config}',
           f'--workdir={workdir}'] +
          [f'--config.{k}={_format(v)}' for k, v in fields.items()] + list(extra))


def load(path: str):
  """The study module at `path` (it defines STUDY; maybe analyze)."""
  if not os.path.isfile(path):
    raise ValueError(f'{path}: no such study file (see experiments/)')
  spec = importlib.util.spec_from_file_location(
      'study_' + os.path.splitext(os.path.basename(path))[0], path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not isinstance(getattr(module, 'STUDY', None), Study):
    raise ValueError(f'{path} defines no STUDY = sweep.Study(...)')
  names = [point_name(p) for p in module.STUDY.points]
  if len(set(names)) != len(names):
    raise ValueError(f'{path}: two points of the study have the same name')
  return module


def status(workdir: str) -> str:
  """'done' (metrics.json written), 'started' (a checkpoint) or 'new'."""
  if os.path.isfile(os.path.join(workdir, 'metrics.json')):
    return 'done'
  ckpt = os.path.join(workdir, 'checkpoints')
  if os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt)):
    return 'started'
  return 'new'


def _lookup(metrics: dict, path: str) -> Optional[float]:
  method, name = path.rsplit('.', 1)
  value = metrics.get(method, {}).get(name) if isinstance(metrics.get(method), dict) else None
  return None if value is None else float(value)


def collect(study: Study, root: str) -> list[dict[str, Any]]:
  """One row per point: its fields, status and metrics (None when the run
  has not finished)."""
  rows = []
  for point in study.points:
    workdir = os.path.join(root, point_name(point))
    row = {'name': point_name(point), **point, 'status': status(workdir)}
    metrics = {}
    if row['status'] == 'done':
      with open(os.path.join(workdir, 'metrics.json')) as f:
        metrics = json.load(f)
    row.update({m: _lookup(metrics, m) for m in study.metrics})
    rows.append(row)
  return rows


def _cell(v: Any) -> str:
  if v is None:
    return '-'
  if isinstance(v, float):
    return f'{v:.4g}'
  return _format(v)


def table(study: Study, rows: list[dict[str, Any]]) -> str:
  """Markdown: one row per point, the swept fields then the metrics."""
  columns = study.fields + list(study.metrics) + ['status']
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  for r in rows:
    lines.append('| ' + ' | '.join(_cell(r.get(c)) for c in columns) + ' |')
  return '\n'.join(lines) + '\n'


def plot(study: Study, rows: list[dict[str, Any]], metric_name: str,
         path: str) -> None:
  """Every metric path ending in `metric_name` against the first swept
  field, one line per value of the other swept fields; baselines dashed."""
  x_field, others = study.fields[0], study.fields[1:]
  numeric = all(isinstance(r.get(x_field), (int, float)) for r in rows)
  labels = sorted({_cell(r.get(x_field)) for r in rows}) if not numeric else None
  fig = Figure(figsize=(6, 4))
  ax = fig.subplots()
  groups: dict[tuple, list] = {}
  for r in rows:
    groups.setdefault(tuple(_cell(r.get(f)) for f in others), []).append(r)
  for path_ in [m for m in study.metrics if m.rsplit('.', 1)[1] == metric_name]:
    method = path_.rsplit('.', 1)[0]
    for key, group in groups.items():
      points = [(r[x_field], r[path_]) for r in group if r[path_] is not None]
      if not points:
        continue
      if numeric:
        points.sort()
        xs = [p[0] for p in points]
      else:
        xs = [labels.index(_cell(p[0])) for p in points]
      label = method + ''.join(f', {f.split(".")[-1]} {v}' for f, v in zip(others, key))
      ax.plot(xs, [p[1] for p in points], 'o-' if method == 'model' else 'x--',
              label=label)
  if not numeric:
    ax.set_xticks(range(len(labels)), labels)
  elif all(r[x_field] > 0 for r in rows) and max(r[x_field] for r in rows) > 8 * min(
      r[x_field] for r in rows):
    ax.set_xscale('log')
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_xlabel(x_field)
  ax.set_ylabel(metric_name)
  ax.set_title(study.name)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=100)


def write_report(module, root: str) -> list[dict[str, Any]]:
  """ROOT/results.md, results.json and <metric>.png of a study module;
  then the study's own `analyze(rows, root)` if it has one."""
  study = module.STUDY
  rows = collect(study, root)
  os.makedirs(root, exist_ok=True)
  done = sum(r['status'] == 'done' for r in rows)
  summaries.write_text(
      os.path.join(root, 'results.md'),
      f'# {study.name}: {done} of {len(rows)} points done\n\n'
      f'`{study.config}`' + ''.join(f', {k}={_format(v)}' for k, v in
                                    study.overrides.items()) + '\n\n'
      + table(study, rows))
  summaries.write_text(os.path.join(root, 'results.json'),
                       json.dumps(rows, indent=2))
  if done:
    for name in dict.fromkeys(m.rsplit('.', 1)[1] for m in study.metrics):
      plot(study, [r for r in rows if r['status'] == 'done'], name,
           os.path.join(root, f'{name}.png'))
    if hasattr(module, 'analyze'):
      module.analyze([r for r in rows if r['status'] == 'done'], root)
  return rows
