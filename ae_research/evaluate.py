"""Whole-image evaluation: any size, the model beside its baselines.

For each image of a source: the task's pair (corruption reproducible from
config.seed and the image's index), the model's output on the whole image
(reflect-padded to a multiple of the model's downsampling and cropped back),
the task's trivial baseline and its classical methods, all scored by the
task's metrics. Writes `results.json`, `results.md` (per image and mean) and
one PNG per image, each column under its name: input | model | baseline and
classical methods | target.
"""

import functools
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ae_research import summaries, tiling


def apply_whole(predict: Callable, state: Any, x_HxWxC: np.ndarray,
                multiple: int, scale: int = 1) -> np.ndarray:
  """The model on one image of any size (in tiles if it would not fit in
  memory whole; they give the same output); `scale`: how much larger its
  output is."""
  return tiling.apply_image(predict, state, x_HxWxC, multiple, scale=scale)[0]


def shown_input(pair: dict[str, np.ndarray]) -> np.ndarray:
  """The input as a picture beside the target: the pair's 'shown' if it has
  one, else the input's image channels (not a noise map after them),
  enlarged (nearest) to the target's size when it is smaller."""
  if 'shown' in pair:
    return pair['shown']
  x = pair['input']
  x = x[..., :3] if x.shape[-1] > 3 else x
  factor = pair['target'].shape[0] // x.shape[0]
  if factor > 1:
    x = np.repeat(np.repeat(x, factor, axis=0), factor, axis=1)
  return x


def _name(example: dict, index: int) -> str:
  name = example.get('name', index)
  return name.decode() if isinstance(name, bytes) else str(name)


def _scores(metrics_fn, pred: np.ndarray, batch: dict) -> dict[str, float]:
  sums = metrics_fn(jnp.asarray(pred[None]), batch)
  return {k: float(num) / max(float(den), 1e-12) for k, (num, den) in sums.items()}


def evaluate_images(state: Any, predict: Callable, task: Any, source: Any,
                    config: Any, out_dir: str | None = None,
                    max_images: int | None = None,
                    classical: bool = True) -> dict[str, Any]:
  """Scores every image of `source`; writes the reports to `out_dir` if set.

  Returns {'mean': {method: {metric: value}}, 'images': [per image],
  'columns', 'sample': [input, output, target] of the first image}.
  """
  metrics_fn = jax.jit(functools.partial(task.metrics, config=config))
  model = task.make_model(config)
  n = len(source) if max_images is None else min(max_images, len(source))
  rows, sample = [], None
  for i in range(n):
    example = source[i]
    pair = task.make_pair(example, np.random.default_rng([config.seed, i]),
                          config)
    batch = {k: jnp.asarray(v[None]) for k, v in pair.items()}
    batch['mask'] = jnp.ones((1,), jnp.float32)
    output = apply_whole(predict, state, pair['input'], model.downsampling,
                         model.upscale)
    base = np.asarray(task.baseline(batch))[0]
    predictions = {'model': output, task.baseline_name(config): base}
    if classical:
      predictions.update(task.classical(pair, config))
    row = {'name': _name(example, i), 'height': int(pair['target'].shape[0]),
           'width': int(pair['target'].shape[1])}
    row.update({m: _scores(metrics_fn, p, batch) for m, p in predictions.items()})
    rows.append(row)
    shown = shown_input(pair)
    if sample is None:
      sample = [shown[None], output[None], pair['target'][None]]
    if out_dir:
      # A baseline that is the input itself (noisy input) is not shown twice.
      columns = [('input', shown)] + [
          (m, np.clip(p, 0.0, 1.0)) for m, p in predictions.items()
          if m == 'model' or not np.array_equal(p, shown)
      ] + [('target', pair['target'])]
      summaries.save_png(os.path.join(out_dir, 'images', f'{row["name"]}.png'),
                         summaries.labelled_row(columns))
  methods = [m for m in rows[0] if isinstance(rows[0][m], dict)]
  mean = {m: {k: float(np.mean([r[m][k] for r in rows])) for k in rows[0][m]}
          for m in methods}
  results = {'mean': mean, 'images': rows,
             'columns': ['input', 'model'] + [m for m in methods if m != 'model'] + ['target']}
  if out_dir:
    os.makedirs(out_dir, exist_ok=True)
    summaries.write_json(os.path.join(out_dir, 'results.json'), results)
    summaries.write_text(os.path.join(out_dir, 'results.md'),
                         markdown_table(results))
  results['sample'] = sample
  return results


def markdown_table(results: dict[str, Any]) -> str:
  """One row per image and method, then the means."""
  rows, mean = results['images'], results['mean']
  methods = list(mean)
  metrics = list(mean[methods[0]])
  lines = ['| image | method | ' + ' | '.join(metrics) + ' |',
           '|---|---|' + '---|' * len(metrics)]
  for r in rows + [{'name': '**mean**', **mean}]:
    for m in methods:
      lines.append(f'| {r["name"]} | {m} | ' +
                   ' | '.join(f'{r[m][k]:.4f}' for k in metrics) + ' |')
  return '\n'.join(lines) + '\n'
