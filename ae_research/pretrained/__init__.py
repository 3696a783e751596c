"""Trained models that ship with the package, by name.

  from ae_research import pretrained
  pretrained.names()                           # every shipped model
  model, variables = pretrained.load('sr-x3')  # a linen module, its variables
  y = model.apply(variables, x, train=False)   # x: [B, H, W, C] in [0, 1]
  pretrained.entry('sr-x3').scores             # what it scores, and beside what

Each model is one weights file in `ae_research/pretrained/weights/` and one
entry of its `manifest.json`: the run's config (what the variables mean),
the file's SHA-256, the training budget and the command that trained it,
its scores on the standard test sets beside the classical methods and the
published figures, and its score on one small image that ships in
scikit-image (`check_image`), which the tests measure again.

The file format is flax's msgpack serialization of the variables
(`flax.serialization.msgpack_serialize`): arrays as dtype, shape and raw
bytes. Loading it runs no code (unlike a pickle), and it does not depend on
the checkpoint library or its version. Every load checks the file's SHA-256
against the manifest and the variables' names and shapes against the model
the entry's config builds: a missing, altered or orphaned file is a
`PretrainedError` naming the file and what to do; nothing is loaded
silently.

A run starts from a shipped model with --config.init_from=pretrained:NAME
(as from a workdir); `apply` and `codec` take --pretrained=NAME instead of
--workdir. The command line: python -m ae_research.pretrained (the table,
`score`, `export`).
"""

import dataclasses
import hashlib
import json
import os
from typing import Any, Optional, Sequence

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import skimage.data

from ae_research import base_config, datasets, errors, models, steps, summaries
from ae_research import workdir as workdir_lib
from ae_research.datasets import shapes

#: Where the shipped weights and their manifest are (package data).
WEIGHTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'weights')
MANIFEST = 'manifest.json'
#: config.init_from=pretrained:NAME starts a run from a shipped model.
PREFIX = 'pretrained:'
FORMAT = 'flax-msgpack'
#: The size of the image the manifest's `check` scores (`check_image`).
CHECK_SIZE = 192  # Divisible by 2, 3, 4 and 16; MS-SSIM needs over 160.


class PretrainedError(errors.UserError, ValueError):
  """A pretrained model that is unknown, missing, altered, or no longer fits
  the code."""


@dataclasses.dataclass(frozen=True)
class Entry:
  """One shipped model, as its manifest entry describes it."""
  name: str
  task: str
  summary: str  # One line: what it is.
  file: str  # The weights file, in the zoo's folder.
  sha256: str
  bytes: int
  parameters: int
  config: dict[str, Any]  # The run's config (what the variables mean).
  # {'data', 'hardware', 'steps', 'batch_size', 'patch_size', 'minutes'}.
  training: dict[str, Any]
  commands: list[str]  # What trained it and scored it.
  # [{'label', 'dataset', 'overrides', 'images', 'metric', 'mean': {method:
  # {metric: value}}, 'published': {who: value}, 'also': [metrics shown
  # too]}], in the recipe's order.
  scores: list[dict[str, Any]]
  # {'image', 'overrides', 'metric', 'value'}: the score on `check_image`.
  check: dict[str, Any]

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def _zoo_dir(zoo_dir: Optional[str]) -> str:
  return WEIGHTS_DIR if zoo_dir is None else zoo_dir


def manifest(zoo_dir: Optional[str] = None) -> dict[str, Entry]:
  """Every model of the zoo in `zoo_dir` (default: the shipped one), by name."""
  path = os.path.join(_zoo_dir(zoo_dir), MANIFEST)
  if not os.path.isfile(path):
    raise PretrainedError(
        f'{path} is missing: ' + ('the package is incomplete; reinstall it '
                                  '(pip install -e . in a clone)'
                                  if zoo_dir is None else
                                  'give a folder of weights and their manifest'))
  with open(path) as f:
    data = json.load(f)
  fields = {f.name for f in dataclasses.fields(Entry)}
  return {e['name']: Entry(**{k: v for k, v in e.items() if k in fields})
          for e in data['models']}


def _manifest_or_empty(zoo_dir: str) -> dict[str, Entry]:
  """The zoo in `zoo_dir`, or none yet (a zoo being written)."""
  if os.path.isfile(os.path.join(zoo_dir, MANIFEST)):
    return manifest(zoo_dir)
  return {}


def names(zoo_dir: Optional[str] = None) -> tuple[str, ...]:
  """The names of the models in the zoo, in the manifest's order."""
  return tuple(manifest(zoo_dir))


def entry(name: str, zoo_dir: Optional[str] = None) -> Entry:
  """The manifest entry of model `name`; PretrainedError naming the models
  there are when there is none."""
  found = manifest(zoo_dir)
  if name not in found:
    raise PretrainedError(f'no pretrained model {name!r}; the models are '
                          f'{list(found)} (python -m ae_research.pretrained '
                          'lists them)')
  return found[name]


def is_name(init_from: str) -> bool:
  """Whether config.init_from names a pretrained model (pretrained:NAME)."""
  return init_from.startswith(PREFIX)


def get_config(name: str, zoo_dir: Optional[str] = None) -> ml_collections.ConfigDict:
  """The config of model `name`'s run, in today's terms."""
  return base_config.from_stored(entry(name, zoo_dir).config)


def sha256(path: str) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 20), b''):
      digest.update(block)
  return digest.hexdigest()


def _paths(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
  """{'params/Conv_0/kernel': (shape, dtype)} of a tree of arrays."""
  flat = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(str(getattr(k, 'key', k)) for k in path):
          (tuple(x.shape), str(np.dtype(x.dtype))) for path, x in flat}


def expected_variables(config: ml_collections.ConfigDict) -> dict[str, tuple]:
  """{name: (shape, dtype)} of the variables the config's model has."""
  task, model, _ = workdir_lib.build(config)
  shape = workdir_lib.init_shape(task, config, model)
  abstract = jax.eval_shape(
      lambda r: steps.init_variables(model, r, shape), jax.random.key(0))
  return _paths(abstract)


def mismatch(got: dict[str, tuple], want: dict[str, tuple],
             shown: int = 4) -> list[str]:
  """What differs between two {name: (shape, dtype)}: the names only the
  model has, those only the file has, the shapes that differ (a few of
  each, then how many)."""
  def some(items: list[str]) -> str:
    more = len(items) - shown
    return ', '.join(items[:shown]) + (f' and {more} more' if more > 0 else '')
  missing = sorted(set(want) - set(got))
  unexpected = sorted(set(got) - set(want))
  differ = [f'{k} {got[k][0]} (model {want[k][0]})'
            for k in sorted(set(got) & set(want)) if got[k] != want[k]]
  lines = []
  if missing:
    lines.append(f'missing {some(missing)}')
  if unexpected:
    lines.append(f'unexpected {some(unexpected)}')
  if differ:
    lines.append(f'other shapes: {some(differ)}')
  return lines


def load_variables(name: str, zoo_dir: Optional[str] = None) -> dict[str, Any]:
  """The variables ({'params': ..., and e.g. 'batch_stats'}) of model
  `name`, as numpy arrays, after checking the file's SHA-256 and that they
  fit the model its config builds."""
  e = entry(name, zoo_dir)
  path = os.path.join(_zoo_dir(zoo_dir), e.file)
  again = ('reinstall the package (pip install -e . in a clone; git checkout '
           f'-- {os.path.relpath(path)} restores a committed file)')
  if not os.path.isfile(path):
    raise PretrainedError(f'{path}: the weights of {name!r} are missing; '
                          + again)
  digest = sha256(path)
  if digest != e.sha256:
    raise PretrainedError(
        f'{path}: SHA-256 {digest[:16]}... differs from the manifest\'s '
        f'{e.sha256[:16]}...: the file is altered or damaged and was not '
        f'loaded; {again}')
  with open(path, 'rb') as f:
    variables = flax.serialization.msgpack_restore(f.read())
  problems = mismatch(_paths(variables), expected_variables(get_config(name, zoo_dir)))
  if problems:
    raise PretrainedError(
        f'{path} does not fit the model its manifest entry describes '
        '(the names of modules or parameters changed since it was written): '
        + '; '.join(problems) + '. Give the modules their old names back, or '
        f'export the model again (python -m experiments.zoo export '
        f'--only={name})')
  return variables


def load(name: str, zoo_dir: Optional[str] = None) -> tuple[Any, dict[str, Any]]:
  """(linen module, variables) of model `name`, ready for
  `module.apply(variables, x, train=False)`; x is [B, H, W, C] in [0, 1],
  C as `get_config(name)`'s task takes it."""
  config = get_config(name, zoo_dir)
  _, model, _ = workdir_lib.build(config)
  return model, jax.tree.map(jnp.asarray, load_variables(name, zoo_dir))


def load_state(name: str, zoo_dir: Optional[str] = None
               ) -> tuple[ml_collections.ConfigDict, steps.TrainState]:
  """(config, train state at step 0 with the shipped variables and a fresh
  optimizer state): what `apply`, the codec and evaluation take."""
  config = get_config(name, zoo_dir)
  _, _, tx = workdir_lib.build(config)
  variables = jax.tree.map(jnp.asarray, load_variables(name, zoo_dir))
  params = variables.pop('params')
  state = steps.TrainState(step=jnp.zeros((), jnp.int32), params=params,
                           model_state=variables, opt_state=tx.init(params))
  return config, state


def warm_start(config: ml_collections.ConfigDict, state: steps.TrainState,
               sharding) -> steps.TrainState:
  """`state` with the variables of the model config.init_from names
  (pretrained:NAME); step, optimizer state and data position start afresh."""
  name = config.init_from[len(PREFIX):]
  other = get_config(name)
  if other.task != config.task:
    raise PretrainedError(f'config.init_from={config.init_from!r} is a '
                          f'{other.task!r} model; this run is {config.task!r}')
  variables = load_variables(name)
  params = variables.pop('params')
  want = _paths((state.params, state.model_state))
  got = _paths((params, variables))
  if want != got:
    raise PretrainedError(
        f'config.init_from={config.init_from!r} is a model of other shapes '
        f'(its config.model: {other.model.to_dict()}); use the same '
        'config.model (e.g. --config.model.<field>=...)')
  return state.replace(params=jax.device_put(params, sharding),
                       model_state=jax.device_put(variables, sharding))


# ---------------------------------------------------------------------------
# Scoring.


def check_image(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """The one small image a model's `check` score is measured on: for the
  shapes data set a scene drawn from seed 0 with the config's shapes
  settings, else the middle CHECK_SIZE pixels square of scikit-image's
  astronaut (which ships inside the scikit-image package)."""
  if config.dataset == 'shapes':
    s = config.shapes
    example = shapes.render(np.random.default_rng(0), s.image_size,
                            s.min_shapes, s.max_shapes, s.min_radius,
                            s.max_radius)
    return {**example, 'name': 'shapes_seed0'}
  image = skimage.data.astronaut()
  h, w = image.shape[:2]
  y, x = (h - CHECK_SIZE) // 2, (w - CHECK_SIZE) // 2
  return {'image': np.ascontiguousarray(image[y:y + CHECK_SIZE, x:x + CHECK_SIZE]),
          'name': 'astronaut'}


def with_overrides(config: ml_collections.ConfigDict,
                   overrides: dict[str, Any]) -> ml_collections.ConfigDict:
  """A copy of `config` with {'denoise.sigma': 15, ...} set; a field that is
  not there is a PretrainedError."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in overrides.items():
    *groups, field = key.split('.')
    node = config
    for g in groups:
      if g not in node:
        raise PretrainedError(f'config.{key}: the model\'s config has no '
                              f'group {g!r}')
      node = node[g]
    if field not in node:
      raise PretrainedError(f'config.{key}: the model\'s config has no such '
                            'field')
    node[field] = tuple(value) if isinstance(value, list) else value
  return config


def score(config: ml_collections.ConfigDict, state: steps.TrainState,
          source: Any, out_dir: Optional[str] = None,
          max_images: Optional[int] = None, classical: bool = True
          ) -> dict[str, Any]:
  """The task's whole-image evaluation of a model on `source` (the model
  beside its baseline and classical methods); see `evaluate`."""
  task, model, _ = workdir_lib.build(config)
  predict = jax.jit(steps.make_predict(model))
  return task.evaluate_images(state, predict, source, config, out_dir=out_dir,
                              max_images=max_images, classical=classical)


def folder_source(config: ml_collections.ConfigDict, path: str) -> Any:
  """The images of a folder as an evaluation source (any size)."""
  return datasets.get_source(config, 'test', f'folder:{path}')


class _Listed:
  """A source of given examples (`listed`)."""

  def __init__(self, examples: Sequence[dict[str, Any]]):
    self._examples = list(examples)

  def __len__(self) -> int:
    return len(self._examples)

  def __getitem__(self, index: int) -> dict[str, Any]:
    return self._examples[index]


def listed(examples: Sequence[dict[str, Any]]) -> Any:
  """A data source of these examples ({'image': HxWx3 uint8, 'name': ...})."""
  return _Listed(examples)


def measure_check(config: ml_collections.ConfigDict, state: steps.TrainState,
                  check: dict[str, Any]) -> float:
  """The model's `check['metric']` on `check_image`, with the check's
  config overrides (e.g. the noise level)."""
  config = with_overrides(config, check.get('overrides', {}))
  results = score(config, state, listed([check_image(config)]), classical=False)
  return results['mean']['model'][check['metric']]


def recheck(name: str, zoo_dir: Optional[str] = None) -> tuple[float, float]:
  """(measured now, stored in the manifest) of model `name`'s check score."""
  e = entry(name, zoo_dir)
  config, state = load_state(name, zoo_dir)
  return measure_check(config, state, e.check), e.check['value']


# ---------------------------------------------------------------------------
# Writing a zoo.


def _training(workdir: str, config: ml_collections.ConfigDict,
              data: str, hardware: str) -> dict[str, Any]:
  """The training budget of a run: its steps, batch, patch and minutes of
  training (eval_history.jsonl's last record)."""
  minutes = None
  path = os.path.join(workdir, 'eval_history.jsonl')
  if os.path.isfile(path):
    with open(path) as f:
      records = [json.loads(line) for line in f if line.strip()]
    if records:
      minutes = round(records[-1]['train_minutes'], 1)
  return {'data': data, 'hardware': hardware, 'steps': int(config.num_train_steps),
          'batch_size': int(config.batch_size), 'patch_size': int(config.patch_size),
          'minutes': minutes}


def hardware() -> str:
  """What trains here, in words: the accelerator, or the CPU's cores."""
  device = jax.devices()[0]
  if device.platform == 'cpu':
    return f'{os.cpu_count()} CPU cores'
  return f'{jax.device_count()} x {device.device_kind}'


def export(workdir: str, name: str, zoo_dir: str, *, summary: str,
           data: str, commands: Sequence[str],
           score_sets: Sequence[dict[str, Any]] = (),
           check_metric: str = 'psnr', check_overrides: Optional[dict] = None,
           step: Optional[int] = None, overwrite: bool = False,
           hardware_name: Optional[str] = None, classical: bool = True,
           before: Sequence[str] = (), progress=print) -> Entry:
  """Writes the latest checkpoint (or `step`) of the run in `workdir` as
  model `name` of the zoo in `zoo_dir`: its weights file and its manifest
  entry, with its scores on `score_sets` ({'label', 'dataset' (a data
  source's name, e.g. folder:PATH or shapes), 'overrides', 'metric',
  'published': {who: value}, optionally 'max_images' (the first N) and
  'classical' (False: the model and its baseline only)}) and its check
  score. `before`: the workdirs of trainings that came first, each
  starting the next (config.init_from), recorded in the entry's training.
  A model of that name is replaced only with `overwrite`."""
  path = os.path.join(zoo_dir, f'{name}.msgpack')
  known = _manifest_or_empty(zoo_dir)
  if (name in known or os.path.exists(path)) and not overwrite:
    raise PretrainedError(f'{zoo_dir} already holds a model {name!r}; pass '
                          '--overwrite to replace it')
  config = workdir_lib.load_config(workdir)
  hardware_name = hardware_name or hardware()
  stages = [_training(w, workdir_lib.load_config(w), data, hardware_name)
            for w in before]
  state, step = workdir_lib.restore_latest(config, workdir, step)
  state = jax.device_put(state, jax.devices()[0])
  variables = {'params': state.params, **state.model_state}
  variables = jax.tree.map(np.asarray, variables)
  scores = []
  for s in score_sets:
    progress(f'{name}: scoring on {s["label"]} ({s["dataset"]})')
    c = with_overrides(config, s.get('overrides', {}))
    source = datasets.get_source(c, 'test', s['dataset'])
    results = score(c, state, source, max_images=s.get('max_images'),
                    classical=classical and s.get('classical', True))
    scores.append({
        'label': s['label'], 'dataset': s['dataset'],
        'overrides': dict(s.get('overrides', {})),
        'images': len(results['images']), 'metric': s['metric'],
        'mean': results['mean'], 'published': dict(s.get('published', {})),
        'also': list(s.get('also', []))})
  check = {'image': check_image(config)['name'],
           'overrides': dict(check_overrides or {}), 'metric': check_metric}
  check['value'] = measure_check(config, state, check)
  with errors.writing(zoo_dir, 'Nothing was written'):
    os.makedirs(zoo_dir, exist_ok=True)
  blob = flax.serialization.msgpack_serialize(variables)
  summaries.write_through_temp(path, lambda tmp: open(tmp, 'wb').write(blob))
  e = Entry(
      name=name, task=config.task, summary=summary, file=os.path.basename(path),
      sha256=sha256(path), bytes=len(blob),
      parameters=models.count_params(state.params),
      config=json.loads(config.to_json_best_effort()),
      training={**_training(workdir, config, data, hardware_name),
                'step': int(step), **({'before': stages} if stages else {})},
      commands=list(commands), scores=scores, check=check)
  known[name] = e
  _write_manifest(zoo_dir, known)
  return e


def adopt(name: str, from_dir: str, zoo_dir: str) -> Entry:
  """Copies model `name` (its weights file and manifest entry, checked)
  from the zoo in `from_dir` into the zoo in `zoo_dir`, replacing a model
  of that name there: e.g. a GPU-trained model that beats the shipped one."""
  load_variables(name, from_dir)  # Checksum and names, before anything changes.
  e = entry(name, from_dir)
  with open(os.path.join(from_dir, e.file), 'rb') as f:
    blob = f.read()
  with errors.writing(zoo_dir, 'Nothing was written'):
    os.makedirs(zoo_dir, exist_ok=True)
  summaries.write_through_temp(os.path.join(zoo_dir, e.file),
                               lambda tmp: open(tmp, 'wb').write(blob))
  known = _manifest_or_empty(zoo_dir)
  known[name] = e
  _write_manifest(zoo_dir, known)
  return e


def _write_manifest(zoo_dir: str, known: dict[str, Entry]) -> None:
  summaries.write_json(os.path.join(zoo_dir, MANIFEST), {
      'format': FORMAT, 'models': [m.to_json() for m in known.values()]})


# ---------------------------------------------------------------------------
# The table.


def _fmt(value: Optional[float]) -> str:
  return '-' if value is None else f'{value:.2f}'


def score_of(e: Entry, label: str) -> dict[str, Any]:
  """The scores of model `e` on the set labelled `label`."""
  found = [s for s in e.scores if s['label'] == label]
  if not found:
    raise PretrainedError(f'{e.name} has no scores on {label!r}; it has '
                          f'{[s["label"] for s in e.scores]}')
  return found[0]


def score_cells(e: Entry) -> list[str]:
  """One cell per scored set: 'Set5 psnr_y 33.24 (bicubic 30.41; FSRCNN
  33.16)': the model, its baselines and classical methods, published."""
  cells = []
  for s in e.scores:
    label, metric = s['label'], s['metric']
    others = [f'{m} {_fmt(v.get(metric))}' for m, v in s['mean'].items()
              if m != 'model' and metric in v]
    others += [f'{who} {_fmt(v)}' for who, v in s['published'].items()]
    cell = (f'{label} {metric} **{_fmt(s["mean"]["model"].get(metric))}**'
            + (f' ({"; ".join(others)})' if others else ''))
    for extra in s.get('also', []):  # Further metrics, the model's.
      cell += f'; {extra} {_fmt(s["mean"]["model"].get(extra))}'
    cells.append(cell)
  return cells


def budget(e: Entry) -> str:
  """'T91; 23,000 steps of 32 patches 48px; 2 CPU cores, 10 min', the
  trainings before it first ('36,000 then 8,000 steps ..., 150 + 30 min')."""
  t = e.training
  stages = [*t.get('before', []), t]
  minutes = [s.get('minutes') for s in stages]
  return (f'{t["data"]}; ' + ' then '.join(f'{s["steps"]:,}' for s in stages)
          + f' steps of {t["batch_size"]}'
          + (f' patches {t["patch_size"]}px' if t.get('patch_size') else '')
          + f'; {t["hardware"]}'
          + (f', {" + ".join(f"{m:g}" for m in minutes)} min'
             if None not in minutes else ''))


def table(entries: Sequence[Entry]) -> str:
  """The zoo as a markdown table: name, task, parameters, training, scores."""
  lines = ['| name | task | parameters | training | scores |',
           '|---|---|---|---|---|']
  for e in entries:
    lines.append(f'| {e.name} | {e.task} | {e.parameters:,} | {budget(e)} | '
                 + '<br>'.join(score_cells(e)) + ' |')
  return '\n'.join(lines) + '\n'
