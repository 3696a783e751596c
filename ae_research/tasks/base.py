"""The task interface, written down once, with what image-to-image tasks share.

An experiment is a subclass of `Task` in `ae_research/tasks/`: it sets its
name and overrides what differs from the defaults here, which are those of
an image-to-image task (an RGB model from config.model, the MSE loss, RGB
PSNR and SSIM, whole-image evaluation beside the task's baselines, `apply`
running the model whole or in tiles). `tasks/__init__.py` registers one
instance of each and refuses a method whose signature is not the
interface's. The loop, evaluation and the commands call only these names,
so none of them branches on which experiment runs.

Arrays: a pair and a batch are dicts of arrays with at least 'input' and
'target' (images in [0, 1], HxWxC for a pair, BxHxWxC for a batch); a batch
also has 'mask' [B] (0 for padding examples).
"""

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from ae_research import color, corruptions, evaluate, image_io, steps, tiling, zoo
from ae_research import metrics as metrics_lib


@dataclasses.dataclass
class Result:
  """What applying a trained run to one image gives."""
  image: image_io.Image  # The output.
  files: dict[str, bytes] = dataclasses.field(default_factory=dict)  # By suffix.
  compare: list = dataclasses.field(default_factory=list)  # [(label, HxWxC)].
  decision: Optional[tiling.Decision] = None  # Whole or tiled.
  note: str = ''  # Shown after the file's name, e.g. its rate.


# apply(image, compare=False, on_tile=None) -> Result
Applier = Callable[..., Result]


def pixels(image: Any) -> Any:
  """An image as float32 in [0, 1]: integers (the data sets' uint8) are
  divided by 255; numpy stays numpy and jax stays jax."""
  if np.issubdtype(image.dtype, np.integer):
    return image.astype(np.float32) / 255.0
  return image.astype(np.float32)


class Task:
  """What every experiment provides. Subclasses set `name` and override
  what differs; the defaults are an image-to-image task's."""

  # config.task.
  name: str = ''
  # The config group of the task's own fields (config.denoise), or None.
  # The group's defaults are `group_defaults()`, its checks `check_config`.
  group: Optional[str] = None
  # Whether scoring a trained run must keep the group as trained (what the
  # parameters mean, e.g. config.sr.scale) or may change it (e.g. another
  # noise level for a denoising run; the results' folder then says how).
  group_fixed_at_eval: bool = True
  # Files `apply` writes per image besides the PNG, by suffix.
  apply_files: tuple[str, ...] = ()

  def group_defaults(self) -> dict[str, Any]:
    """The fields of config.<group> and their defaults."""
    return {}

  def check_config(self, config: Any) -> list[str]:
    """One message per impossible value of the task's own fields (or of
    shared fields this task cannot use)."""
    del config
    return []

  def on_device(self, config: Any) -> bool:
    """Whether batches made on the device (`device_data`) can make this
    config's pairs: `make_pair` runs traced under jit with a jax key."""
    del config
    return True

  def input_channels(self, config: Any) -> int:
    """Channels the model takes, known without opening the data (restoring
    a checkpoint needs no data set)."""
    del config
    return 3

  def make_model(self, config: Any, norm_axis_name: Optional[str] = None) -> nn.Module:
    """The linen model that config.model describes, RGB out; its batch
    statistics average over `norm_axis_name`."""
    return zoo.from_config(config.model, out_features=3,
                           norm_axis_name=norm_axis_name)

  def make_pair(self, example: dict[str, Any], rng: Any,
                config: Any) -> dict[str, Any]:
    """{'input', 'target', ...} from one example ({'image': HxWxC, uint8 or
    float in [0, 1], and whatever else the data set gives}).

    One implementation for every path: on the host `rng` is a numpy
    Generator (derived from the seed and the example's index, so the pair
    is reproducible) and the arrays numpy; in batches made on the device
    `rng` is a jax key and the arrays jax, traced under jit and vmap (shapes
    must then depend on the config alone; see `on_device`).
    """
    raise NotImplementedError(f'task {self.name!r} does not define make_pair')

  def loss(self, pred: Any, batch: dict[str, jax.Array], config: Any) -> Any:
    """Per-example loss [B], or a dict of per-example terms whose 'loss' is
    minimized (the others are reported beside it)."""
    del config
    return metrics_lib.mse(pred, batch['target'])

  def metrics(self, pred: Any, batch: dict[str, jax.Array],
              config: Any) -> dict[str, tuple[jax.Array, jax.Array]]:
    """{name: (sum over the batch, count)}, each example weighted by
    batch['mask']."""
    del config
    return metrics_lib.rgb_psnr_ssim(pred, batch)

  def baseline_name(self, config: Any) -> str:
    """What `baseline` is, e.g. 'bicubic'."""
    del config
    return 'input'

  def baseline(self, batch: dict[str, jax.Array]) -> jax.Array:
    """The trivial prediction the model is compared with: the input's image
    channels (not a noise map after them)."""
    return batch['input'][..., :3]

  def classical(self, pair: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
    """{method: prediction} of classical methods on one whole image."""
    del pair, config
    return {}

  def apply_pair(self, image: np.ndarray, config: Any) -> dict[str, Any]:
    """A user's image (HxWxC in [0, 1]) as the model's 'input', with 'shown'
    (what the comparison shows as input), optionally 'gray' (the output is
    made gray again), 'original' and 'damage'. By default: the image itself
    (gray images as RGB, the output gray again)."""
    del config
    x = np.repeat(image, 3, -1) if image.shape[-1] == 1 else image
    return {'input': x, 'shown': x, 'gray': image.shape[-1] == 1}

  def evaluate_images(self, state: Any, predict: Callable, source: Any,
                      config: Any, out_dir: Optional[str] = None,
                      max_images: Optional[int] = None,
                      classical: bool = True) -> dict[str, Any]:
    """Whole-image evaluation; see `evaluate.evaluate_images`."""
    return evaluate.evaluate_images(
        state, predict, self, source, config, out_dir=out_dir,
        max_images=max_images, classical=classical)

  def make_applier(self, config: Any, state: Any, plan: tiling.Tiling) -> Applier:
    """apply(image, compare=False, on_tile=None) -> Result, for the apply
    command: `apply_pair` makes the model's input from the image, the model
    runs on it whole or in tiles, and the comparison shows the baseline and
    classical methods."""
    return image_applier(self, config, state, plan)

  def codec(self, config: Any, state: Any, plan: tiling.Tiling) -> Optional[Any]:
    """A trained run as an `aec.Codec` (image to file and back), for a task
    whose model is one; None for the others."""
    del config, state, plan
    return None

  def eval_label(self, stored: Any, config: Any) -> str:
    """'' when scoring with the trained run's config.<group>; else what
    changed, e.g. '_sigma15' (so scoring at several settings writes several
    folders). Only a group that may change at evaluation differs."""
    if self.group is None or self.group_fixed_at_eval:
      return ''
    before = stored.get(self.group) or {}
    same = lambda a, b: (tuple(a) == tuple(b) if isinstance(a, (list, tuple))
                         else a == b)
    parts = []
    for k, v in config[self.group].items():
      if not same(before.get(k), v):
        text = '-'.join(f'{x:g}' for x in v) if isinstance(v, tuple) else (
            f'{v:g}' if isinstance(v, float) else str(v))
        parts.append(f'_{k}{text}')
    return ''.join(parts)

  def __repr__(self) -> str:
    return f'<task {self.name!r}>'


def carry_alpha(alpha: Optional[np.ndarray], h: int, w: int) -> Optional[np.ndarray]:
  """The input's alpha for an output of h x w (bicubic if resized)."""
  if alpha is None or alpha.shape[:2] == (h, w):
    return alpha
  return np.clip(corruptions.resize(alpha, (w, h)), 0.0, 1.0)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
  rgb = lambda x: np.repeat(x, 3, -1) if x.shape[-1] == 1 else x
  return a.shape[:2] == b.shape[:2] and np.array_equal(rgb(a), rgb(b))


def image_applier(task: Task, config: Any, state: Any, plan: tiling.Tiling) -> Applier:
  """apply(image, compare, on_tile) -> Result for an image-to-image task."""
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
      others = {task.baseline_name(config): baseline,
                **task.classical(pair, config)}
      result.compare = [('input', pair['shown']), ('model', out)] + [
          (name, np.clip(p, 0.0, 1.0)) for name, p in others.items()
          if not _same(p, pair['shown'])]
      if 'original' in pair:
        result.compare.append(('original', pair['original']))
    return result

  return apply
