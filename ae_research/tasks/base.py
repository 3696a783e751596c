"""The task interface, written down once, and what most tasks share.

An experiment is a module in `ae_research/tasks/` that provides every name
of `Task` below; `tasks/__init__.py` registers it and refuses a module that
misses one. The loop, evaluation and the apply command call only these
names, so none of them branches on which experiment runs.

Shared implementations a task may use for its own names: `rgb_model`
(make_model), `evaluate.evaluate_images` (evaluate_images) and
`image_applier` (make_applier).
"""

import dataclasses
from typing import Any, Callable, Optional, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ae_research import color, corruptions, image_io, steps, tiling, zoo


@dataclasses.dataclass
class Result:
  """What applying a trained run to one image gives."""
  image: image_io.Image  # The output.
  files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # By suffix.
  compare: list = dataclasses.field(default_factory=list)  # [(label, HxWxC)].
  decision: Optional[tiling.Decision] = None  # Whole or tiled.
  note: str = ''  # Shown after the file's name, e.g. its rate.


# apply(image, compare, on_tile) -> Result
Applier = Callable[..., Result]


class Task(Protocol):
  """What every experiment module provides (as module-level names).

  Arrays: a pair and a batch are dicts of arrays with at least 'input' and
  'target' (images in [0, 1], HxWxC for a pair, BxHxWxC for a batch); a
  batch also has 'mask' [B] (0 for padding examples).
  """

  NAME: str
  BASELINE_NAME: str  # What `baseline` is, e.g. 'bicubic'.
  APPLY_FILES: tuple[str, ...]  # Files `apply` writes per image besides the PNG.

  def check_config(self, config: Any) -> list[str]:
    """One message per impossible value of the task's own config fields."""

  def input_channels(self, config: Any) -> int:
    """Channels the model takes, known without opening the data (restoring
    a checkpoint needs no data set)."""

  def make_model(self, config: Any, norm_axis_name: Optional[str] = None) -> nn.Module:
    """The linen model; its batch statistics average over `norm_axis_name`."""

  def make_pair(self, example: dict[str, np.ndarray], rng: np.random.Generator,
                config: Any) -> dict[str, np.ndarray]:
    """{'input', 'target', ...} from one example, numpy on the host inside the
    input pipeline; `rng` derives from the seed and the example's index, so
    corruptions are reproducible."""

  def device_pair(self, patch: jax.Array, key: jax.Array,
                  config: Any) -> dict[str, jax.Array]:
    """make_pair's twin in jax, for batches made on the device
    (`device_data`): one clean patch (PxPx3 in [0, 1]) and a jax key in, the
    pair out; traced under jit and vmap, so its shapes depend on the config
    alone."""

  def loss(self, pred: Any, batch: dict[str, jax.Array], config: Any) -> Any:
    """Per-example loss [B], or a dict of per-example terms whose 'loss' is
    minimized (the others are reported beside it)."""

  def metrics(self, pred: Any, batch: dict[str, jax.Array],
              config: Any) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{name: (sum over the batch, count)}, each example weighted by
    batch['mask']."""

  def baseline(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The trivial prediction the model is compared with (BASELINE_NAME)."""

  def classical(self, pair: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
    """{method: prediction} of classical methods on one whole image."""

  def apply_pair(self, image: np.ndarray, config: Any) -> dict[str, Any]:
    """A user's image (HxWxC in [0, 1]) as the model's 'input', with 'shown'
    (what the comparison shows as input), optionally 'gray' (the output is
    made gray again), 'original' and 'damage'."""

  def evaluate_images(self, state: Any, predict: Callable, task: 'Task',
                      source: Any, config: Any, out_dir: Optional[str] = None,
                      max_images: Optional[int] = None,
                      classical: bool = True) -> dict[str, Any]:
    """Whole-image evaluation; see `evaluate.evaluate_images`."""

  def make_applier(self, task: 'Task', config: Any, state: Any,
                   plan: tiling.Tiling) -> Applier:
    """apply(image, compare=False, on_tile=None) -> Result, for the apply
    command; see `image_applier`."""


def rgb_model(config: Any, norm_axis_name: Optional[str] = None) -> nn.Module:
  """The model that config.model describes (`zoo.from_config`), with RGB
  output."""
  return zoo.from_config(config.model, out_features=3,
                         norm_axis_name=norm_axis_name)


def carry_alpha(alpha: Optional[np.ndarray], h: int, w: int) -> Optional[np.ndarray]:
  """The input's alpha for an output of h x w (bicubic if resized)."""
  if alpha is None or alpha.shape[:2] == (h, w):
    return alpha
  return np.clip(corruptions.resize(alpha, (w, h)), 0.0, 1.0)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
  rgb = lambda x: np.repeat(x, 3, -1) if x.shape[-1] == 1 else x
  return a.shape[:2] == b.shape[:2] and np.array_equal(rgb(a), rgb(b))


def image_applier(task: Task, config: Any, state: Any, plan: tiling.Tiling) -> Applier:
  """apply(image, compare, on_tile) -> Result for an image-to-image task:
  `task.apply_pair` makes the model's input from the image, the model runs
  on it whole or in tiles, and the comparison shows the task's baseline and
  classical methods."""
  model = task.make_model(config)
  predict = jax.jit(steps.make_predict(model))

  def apply(image: image_io.Image, compare: bool = False,
            on_tile: Optional[Callable[[int, int], None]] = None) -> Result:
    pair = task.apply_pair(image.pixels, config)
    out, decision = tiling.apply_image(predict, state, pair['input'],
                                       model.downsampling, plan, on_tile,
                                       scale=model.upscale)
    out = np.clip(out, 0.0, 1.0)
    if pair.get('gray'):
      out = color.luma(out)
    h, w = out.shape[:2]
    result = Result(image_io.Image(out, carry_alpha(image.alpha, h, w),
                                   image.bit_depth), decision=decision)
    if compare:
      batch = {k: jnp.asarray(v[None]) for k, v in pair.items()
               if isinstance(v, np.ndarray)}
      baseline = np.asarray(task.baseline(batch))[0]
      others = {task.BASELINE_NAME: baseline, **task.classical(pair, config)}
      result.compare = [('input', pair['shown']), ('model', out)] + [
          (name, np.clip(p, 0.0, 1.0)) for name, p in others.items()
          if not _same(p, pair['shown'])]
      if 'original' in pair:
        result.compare.append(('original', pair['original']))
    return result

  return apply
