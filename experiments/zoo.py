"""The model zoo's recipes, and the one command that trains, scores and
exports them (`ae_research.pretrained` ships the result).

  # One model, as shipped (2 CPU cores; ../shared beside the checkout):
  python -m experiments.zoo train --only=sr-x3
  python -m experiments.zoo export --only=sr-x3      # into the package
  # Every model on one GPU in about 6 minutes, scored, timed against
  # PyTorch, into one folder (weights, manifest.json, zoo.md, speed):
  python -m experiments.zoo all --budget=gpu --out=OUT
  # The same, tiny, on any CPU and without ../shared (what the tests run):
  python -m experiments.zoo all --budget=smoke --out=/tmp/zoo
  # A model of that folder replaces the shipped one:
  python -m experiments.zoo adopt --from=OUT/weights --only=denoise-s25

A recipe is a config, the command-line overrides that train it on the
standard data (`../shared/trainsets`, by path), its number of steps per
budget, and the test sets it is scored on beside the published figures.
`train` runs `python -m ae_research.main` with them (rerunning resumes
exactly); `export` writes the run's weights and manifest entry
(`pretrained.export`: scores on the test sets beside the baseline and
classical methods, and on the small check image). The manifest keeps each
model's train and export commands.

Budgets: 'cpu' the shipped runs' steps; 'gpu' about 6 minutes of training
on one H100 in all, each model's steps from the images/s measured there
(larger batches, bfloat16 where it is faster; a larger model where the GPU
affords it); 'smoke' the smoke variant for a few steps on the embedded
photos, scored on two of them (checks that every recipe runs, in seconds
each).
"""

import dataclasses
import os
import shlex
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

from absl import app, flags
from PIL import Image
import skimage.data

from ae_research import cli, errors, pretrained

# The standard data, by path: '{shared}' becomes --shared.
TRAIN = '{shared}/trainsets'
TEST = '{shared}/testsets'
RUNS = 'runs/zoo'

# Published figures, cited.
FSRCNN = 'FSRCNN (Dong et al., ECCV 2016, Table 3)'
SRCNN = 'SRCNN (Dong et al., TPAMI 2016)'
FSRCNN_FIGURES = {  # (Set5, Set14) Y-PSNR, T91 + General-100.
    2: (37.00, 32.63), 3: (33.16, 29.43), 4: (30.71, 27.59)}
SRCNN_FIGURES = {2: (36.66, 32.42), 3: (32.75, 29.28), 4: (30.48, 27.49)}


@dataclasses.dataclass(frozen=True)
class ScoreSet:
  """A test set a model is scored on: label, data source (folder:PATH, or
  a generated set's name), config overrides for scoring, the headline
  metric, published figures."""
  label: str
  dataset: str
  metric: str
  overrides: dict = dataclasses.field(default_factory=dict)
  published: dict = dataclasses.field(default_factory=dict)
  max_images: Optional[int] = None  # The first N images only.
  also: tuple[str, ...] = ()  # Further metrics the table shows.
  classical: bool = True  # The classical methods beside the model.


@dataclasses.dataclass(frozen=True)
class Stage:
  """A training before a recipe's own, in the workdir runs/RECIPE-NAME,
  whose weights start the next (config.init_from): e.g. a codec trained
  over a narrower range of rates first, then widened."""
  name: str
  overrides: tuple[str, ...]  # Its --config.X=Y, in place of the recipe's.
  cpu_steps: int
  evals: int


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How one shipped model is trained and scored."""
  name: str
  summary: str
  config: str  # configs/FILE.py[:VARIANTS]
  data: str  # The training data, in words.
  overrides: tuple[str, ...]  # --config.X=Y that train it on the standard data.
  cpu_steps: int
  evals: int  # Evaluations during training (the score-against-minutes curve).
  scores: tuple[ScoreSet, ...]
  check_metric: str = 'psnr'
  check_overrides: dict = dataclasses.field(default_factory=dict)
  # The GPU budget: steps (its share of about 6 minutes of training on one
  # H100, from the images/s measured there: docs/speed.md), overrides, and
  # the config when the GPU affords a larger model. 0: not in the GPU budget.
  gpu_steps: int = 0
  gpu_overrides: tuple[str, ...] = ('--config.batch_size=128',
                                    '--config.compute_dtype=bfloat16')
  gpu_config: Optional[str] = None
  # Trained in order before the recipe's own training (CPU budget only),
  # each from the weights of the one before; the recipe's from the last's.
  stages: tuple[Stage, ...] = ()

  def resolve(self, shared: str) -> 'Recipe':
    """The recipe with the standard data at `shared`."""
    put = lambda text: text.replace('{shared}', shared)
    return dataclasses.replace(
        self, overrides=tuple(put(o) for o in self.overrides),
        stages=tuple(dataclasses.replace(st, overrides=tuple(map(put, st.overrides)))
                     for st in self.stages),
        scores=tuple(dataclasses.replace(s, dataset=put(s.dataset))
                     for s in self.scores))

  def main_args(self, steps: int, workdir: str) -> list[str]:
    every = max(1, steps // self.evals)
    return [f'--config={self.config}', f'--workdir={workdir}', *self.overrides,
            f'--config.num_train_steps={steps}',
            f'--config.eval_every_steps={every}',
            f'--config.checkpoint_every_steps={every}']


def stage_workdirs(recipe: Recipe, workdir: str) -> list[str]:
  """The workdirs of the recipe's stages, in order, beside its own."""
  return [f'{os.path.normpath(workdir)}-{st.name}' for st in recipe.stages]


def _sr(scale: int, steps: int, gpu_steps: int) -> Recipe:
  fsrcnn, srcnn = FSRCNN_FIGURES[scale], SRCNN_FIGURES[scale]
  return Recipe(
      name=f'sr-x{scale}',
      summary=(f'x{scale} super-resolution: FSRCNN at low resolution, widened '
               '(64, 24, 4), added to the bicubic upsampling'),
      config='configs/super_resolution.py' + ('' if scale == 3 else f':x{scale}'),
      data='T91',
      overrides=(f'--config.dataset=folder:{TRAIN}/T91',
                 f'--config.eval_dataset=folder:{TEST}/Set5'),
      cpu_steps=steps, evals=4,
      scores=(ScoreSet('Set5', f'folder:{TEST}/Set5', 'psnr_y',
                       published={FSRCNN: fsrcnn[0], SRCNN: srcnn[0]}),
              ScoreSet('Set14', f'folder:{TEST}/Set14', 'psnr_y',
                       published={FSRCNN: fsrcnn[1], SRCNN: srcnn[1]})),
      check_metric='psnr_y', gpu_steps=gpu_steps,
      # The FSRCNN-style model is faster in float32 on the GPU (docs/speed.md).
      gpu_overrides=('--config.batch_size=128',))


def _crosshair(mode: str, how: str) -> Recipe:
  """The article's example: a crosshair (2 pixels wide) drawn over the
  photo, removed by a U-Net scored beside biharmonic inpainting given what
  the model is given: the true mask ('told'), or the guess of the drawn
  pixels ('gated')."""
  return Recipe(
      name=f'crosshair-{mode}',
      summary=f'crosshair removal, U-Net {how}',
      config='configs/denoise.py:crosshair,unet', data='CBSD432',
      overrides=(f'--config.dataset=folder:{TRAIN}/CBSD432',
                 f'--config.eval_dataset=folder:{TEST}/Kodak24',
                 f'--config.denoise.inpaint={mode}',
                 '--config.eval_classical=False'),
      cpu_steps=2000, evals=2,
      scores=(ScoreSet('Kodak24', f'folder:{TEST}/Kodak24', 'psnr'),),
      gpu_steps=4000)


# Published color denoising figures on Kodak24 (K. Zhang, W. Zuo, L. Zhang,
# "FFDNet: Toward a Fast and Flexible Solution for CNN based Image
# Denoising", IEEE TIP 27(9), 2018, the table of color denoising).
CBM3D = 'CBM3D (FFDNet paper, Kodak24)'
CDNCNN = 'CDnCNN (same table)'
FFDNET = 'FFDNet (same table)'


def _gaussian(sigma: int, *published: tuple[str, float]) -> Recipe:
  """A fixed-sigma Gaussian denoiser: one model per sigma, as measured
  against one blind model for sigma 0-55 (24.92 dB at sigma 25 after 11
  minutes, against 29.4 for the fixed-sigma model after 16)."""
  return Recipe(
      name=f'denoise-s{sigma}',
      summary=(f'Gaussian noise removal at sigma {sigma}: the residual '
               'autoencoder at half resolution'),
      config='configs/denoise.py', data='CBSD432',
      overrides=(f'--config.dataset=folder:{TRAIN}/CBSD432',
                 f'--config.eval_dataset=folder:{TEST}/Kodak24',
                 f'--config.denoise.sigma={float(sigma)}',
                 '--config.eval_classical=False',
                 '--config.num_eval_examples=6'),
      cpu_steps=6000, evals=4,
      # All 24 images beside the published figures, and the first six
      # beside non-local means and CBM3D run on the same noisy images
      # (CBM3D, with the `bm3d` extra, takes about 30 s per image).
      scores=(ScoreSet(f'Kodak24 sigma {sigma}', f'folder:{TEST}/Kodak24',
                       'psnr', published=dict(published), classical=False),
              ScoreSet(f'kodim01-06 sigma {sigma}', f'folder:{TEST}/Kodak24',
                       'psnr', max_images=6)),
      # DnCNN, as the prepared GPU run trained it (31.87 dB on Kodak24 at
      # sigma 25 after 37400 steps, 3.0 min on an H100): 30 s each.
      gpu_steps=6000, gpu_config='configs/denoise.py:dncnn',
      gpu_overrides=('--config.batch_size=128', '--config.compute_dtype=bfloat16',
                     '--config.optimizer.learning_rate=1e-3'))

_CODEC_DATA = (f'--config.dataset=folder:{TRAIN}/T91,{TRAIN}/CBSD432',
               f'--config.eval_dataset=folder:{TEST}/Kodak24',
               '--config.compress.eval_qualities=(0.0, 25.0, 50.0, 75.0, 100.0)')
# From trained weights: a quarter of the learning rate, a short warmup.
_FINE_TUNE = ('--config.optimizer.learning_rate=0.0005',
              '--config.optimizer.warmup_steps=100')


def _codec() -> Recipe:
  """The variable-rate mean-scale codec at its CPU size (experiments/
  codec_budget.py's `small`, the best at two hours of 2 CPU cores): two
  hours over lambdas 0.0018-0.1 (Kodak24 0.26-1.32 bpp), then from those
  weights at a quarter of the learning rate 25 minutes over 0.00018-0.15
  (0.113-1.26 bpp) and 13 over 0.0001-0.15 (the default range), so that
  one model spans 0.1-1.2 bpp."""
  return Recipe(
      name='compress-variable',
      summary=('variable-rate compression: one mean-scale hyperprior model '
               'for every rate (gain vectors, Cui et al. 2021), qualities '
               '0-100 in the .aec file'),
      config='configs/compress.py:variable', data='T91 + CBSD432',
      overrides=(*_CODEC_DATA, *_FINE_TUNE,
                 '--config.compress.lmbda_range=(0.0001, 0.15)'),
      cpu_steps=4000, evals=2,
      stages=(Stage('narrow', (*_CODEC_DATA,
                               '--config.compress.lmbda_range=(0.0018, 0.1)'),
                    cpu_steps=36000, evals=8),
              Stage('wide', (*_CODEC_DATA, *_FINE_TUNE,
                             '--config.compress.lmbda_range=(0.00018, 0.15)'),
                    cpu_steps=8000, evals=4)),
      # Eleven qualities, as the docs' table codes them (`python -m
      # ae_research.rd --pretrained=compress-variable --published=kodak`,
      # which adds the BD-rates against CompressAI's published curves).
      scores=(ScoreSet('Kodak24', f'folder:{TEST}/Kodak24', 'bd_rate_jpeg',
                       also=('bd_rate_webp',), overrides={
                           'compress.eval_qualities': tuple(
                               float(q) for q in range(0, 101, 10))}),))


RECIPES: tuple[Recipe, ...] = (
    Recipe(
        name='colorize-shapes',
        summary='colorization of the generated shapes: circles red, squares blue',
        config='configs/colorize.py', data='shapes (generated)', overrides=(),
        cpu_steps=2500, evals=5, check_metric='psnr',
        scores=(ScoreSet('shapes test', 'shapes', 'shape_color_accuracy'),),
        gpu_steps=2500, gpu_overrides=()),
    # FSRCNN-style at x3: about 390 steps/s of 128 on an H100 (49832
    # images/s at batch 64); x2 computes 2.25 times the pixels, x4 0.56.
    _sr(2, 30000, gpu_steps=7000),
    _sr(3, 23000, gpu_steps=15000),
    _sr(4, 40000, gpu_steps=12000),
    Recipe(
        name='denoise-sp',
        summary='salt and pepper noise (10% of pixels) removal: U-Net',
        config='configs/denoise.py:salt_and_pepper,unet', data='CBSD432',
        overrides=(f'--config.dataset=folder:{TRAIN}/CBSD432',
                   f'--config.eval_dataset=folder:{TEST}/Kodak24',
                   '--config.eval_classical=False'),
        cpu_steps=2000, evals=2,
        scores=(ScoreSet('Kodak24', f'folder:{TEST}/Kodak24', 'psnr'),),
        gpu_steps=7000),
    _crosshair('told', 'told where the lines are (the mask as one more '
               'input) and changing only those pixels'),
    _crosshair('gated', 'not told: it learns which pixels to change (a gate)'),
    _gaussian(15, (CBM3D, 34.28), (CDNCNN, 34.48), (FFDNET, 34.63)),
    _gaussian(25, (CBM3D, 31.68), (CDNCNN, 32.03), (FFDNET, 32.13)),
    _gaussian(50, (CBM3D, 28.46), (CDNCNN, 28.85), (FFDNET, 28.98)),
    Recipe(
        name='colorize-photos',
        summary=('colorization of photographs: U-Net from the luma, a '
                 'distribution over chroma bins (Zhang et al. 2016)'),
        config='configs/colorize.py:photos,unet,classify', data='T91 + CBSD432',
        # The temperature decodes only (the loss is the bins'): the highest
        # of 0.38 (the paper's), 1, 1.5 and 2 whose colorfulness on Set5
        # stays at least half the true images' (2: 30.3 against 59.6; PSNR
        # 19.29, 20.79, 21.11, 21.19 dB), chosen after training.
        overrides=(f'--config.dataset=folder:{TRAIN}/T91,{TRAIN}/CBSD432',
                   f'--config.eval_dataset=folder:{TEST}/Kodak24',
                   '--config.colorize.temperature=2.0'),
        cpu_steps=3000, evals=3,
        scores=(ScoreSet('Kodak24', f'folder:{TEST}/Kodak24', 'psnr',
                         also=('colorfulness', 'colorfulness_target')),),
        gpu_steps=6000),
    _codec(),
)
BY_NAME = {r.name: r for r in RECIPES}

_ONLY = flags.DEFINE_list('only', [], 'Recipes to run (default: all): '
                          + ', '.join(BY_NAME))
_BUDGET = flags.DEFINE_enum('budget', 'cpu', ('cpu', 'gpu', 'smoke'),
                            'Steps: as shipped, about 6 GPU minutes in all, '
                            'or a few (smoke).')
_RUNS = flags.DEFINE_string('runs', RUNS, 'Where the workdirs go.')
_SHARED = flags.DEFINE_string('shared', '../shared', 'The folder of the '
                              'standard data (trainsets/, testsets/).')
_ZOO_DIR = cli.define_zoo_dir('export: the zoo written to (default: the '
                              'package\'s).')
_OUT = flags.DEFINE_string('out', None, 'all: one folder for the workdirs, '
                           'the zoo, zoo.md and the speed table.')
_OVERWRITE = cli.define_overwrite('export: replace models of the same name.')
_FROM = flags.DEFINE_string('from', None, 'adopt: the zoo folder a model is '
                            'copied from (e.g. OUT/weights of zoo_gpu.sh).')
_DOCS = flags.DEFINE_string('docs', 'docs', 'page: the docs folder.')
_SPEED = flags.DEFINE_bool('speed', True, 'all: time every architecture '
                           'against its PyTorch twin.')
_CLASSICAL = cli.define_classical('export: score the classical methods too.')


def recipes(only: Sequence[str]) -> list[Recipe]:
  unknown = [n for n in only if n not in BY_NAME]
  if unknown:
    raise errors.UserError(f'--only: no recipe {unknown}; the recipes are '
                           f'{list(BY_NAME)}')
  return [BY_NAME[n] for n in only] if only else list(RECIPES)


def train_command(recipe: Recipe, steps: int, workdir: str,
                  extra: Sequence[str] = ()) -> list[str]:
  return [sys.executable, '-m', 'ae_research.main',
          *recipe.main_args(steps, workdir), *extra]


def shown(command: Sequence[str]) -> str:
  """A command as a user types it (python, not this interpreter's path)."""
  return shlex.join(['python', *command[1:]])


# ---------------------------------------------------------------------------
# Budgets.


def smoke_data(folder: str) -> tuple[list[str], ScoreSet]:
  """Overrides that train on the embedded photos, and a test folder of two
  small images from scikit-image, for the smoke budget."""
  os.makedirs(folder, exist_ok=True)
  for name in ('astronaut', 'coffee'):
    # Sides of 168: MS-SSIM's five scales (the codec scores it) need 161.
    image = getattr(skimage.data, name)()[:168, :200]
    Image.fromarray(image).save(os.path.join(folder, f'{name}.png'))
  return (['--config.dataset=photos', f'--config.eval_dataset=folder:{folder}'],
          ScoreSet('smoke', f'folder:{folder}', 'psnr'))


def smoke_recipe(recipe: Recipe, folder: str) -> Recipe:
  """The recipe on generated data, the smoke variant (its own warmup: a
  few steps are fewer than the recipe's)."""
  config = recipe.config + (',smoke' if ':' in recipe.config else ':smoke')
  if recipe.name == 'colorize-shapes':  # Generated data already.
    return dataclasses.replace(recipe, config=config, cpu_steps=20)
  overrides, folder_set = smoke_data(folder)
  keep = lambda given: (*[o for o in given if not o.startswith((
      '--config.dataset=', '--config.eval_dataset=',
      '--config.optimizer.warmup_steps='))], *overrides)
  sets = (dataclasses.replace(folder_set, metric=recipe.scores[0].metric,
                              overrides=recipe.scores[0].overrides),)
  stages = tuple(dataclasses.replace(st, cpu_steps=20, evals=1,
                                     overrides=keep(st.overrides))
                 for st in recipe.stages)
  return dataclasses.replace(recipe, config=config, overrides=keep(recipe.overrides),
                             cpu_steps=20, evals=1, scores=sets, stages=stages)


# ---------------------------------------------------------------------------
# The commands.


def budget_commands(recipe: Recipe, budget: str, workdir: str) -> list[list[str]]:
  """The training commands of `recipe` for `budget`, in order ('cpu' and
  'smoke': its stages', each from the weights of the one before, then its
  own; 'gpu': its GPU steps, overrides and config)."""
  if budget == 'gpu':
    if recipe.gpu_config:
      recipe = dataclasses.replace(recipe, config=recipe.gpu_config)
    return [train_command(recipe, recipe.gpu_steps, workdir, recipe.gpu_overrides)]
  commands, start = [], []
  for stage, stage_dir in zip(recipe.stages, stage_workdirs(recipe, workdir)):
    as_stage = dataclasses.replace(recipe, overrides=stage.overrides,
                                   evals=stage.evals)
    commands.append(train_command(as_stage, stage.cpu_steps, stage_dir, start))
    start = [f'--config.init_from={stage_dir}']
  return commands + [train_command(recipe, recipe.cpu_steps, workdir, start)]


def train(recipe: Recipe, budget: str, runs: str) -> str:
  """Trains the recipe's model in runs/NAME (resumes one there), after its
  stages, if any, in runs/NAME-STAGE."""
  workdir = os.path.join(runs, recipe.name)
  for command in budget_commands(recipe, budget, workdir):
    print(f'=== {recipe.name}: {shown(command)}', flush=True)
    subprocess.run(command, check=True)
  return workdir


def export(recipe: Recipe, runs: str, zoo_dir: str, budget: str) -> pretrained.Entry:
  """Writes the recipe's trained run into the zoo in `zoo_dir`."""
  workdir = os.path.join(runs, recipe.name)
  # As a user reproduces it: the standard data at ../shared, runs/zoo.
  as_shipped = recipe if budget == 'smoke' else BY_NAME[recipe.name].resolve('../shared')
  commands = [*map(shown, budget_commands(as_shipped, budget,
                                          os.path.join(RUNS, recipe.name))),
              shown([sys.executable, '-m', 'experiments.zoo', 'export',
                     f'--only={recipe.name}'])]
  data = recipe.data if budget != 'smoke' else 'photos (smoke)'
  return pretrained.export(
      workdir, recipe.name, zoo_dir, summary=recipe.summary, data=data,
      commands=commands,
      score_sets=[dataclasses.asdict(s) for s in recipe.scores],
      check_metric=recipe.check_metric, check_overrides=recipe.check_overrides,
      overwrite=_OVERWRITE.value or budget != 'cpu', classical=_CLASSICAL.value,
      before=stage_workdirs(recipe, workdir) if budget != 'gpu' else [])


def speed(chosen: Sequence[Recipe], out: str, budget: str) -> None:
  """Every architecture of the zoo against its PyTorch twin
  (benchmarks/train_speed.py), into out/train_speed.md."""
  config = lambda r: (r.gpu_config if budget == 'gpu' and r.gpu_config
                      else r.config).replace(':smoke', '').replace(',smoke', '')
  configs = ','.join(dict.fromkeys(
      config(r).replace('configs/', '').replace('.py', '') for r in chosen))
  command = [sys.executable, 'benchmarks/train_speed.py', '--models', configs,
             '--markdown', os.path.join(out, 'train_speed.md')]
  if budget == 'smoke':
    command.append('--quick')
  print(f'=== speed: {shown(command)}', flush=True)
  subprocess.run(command, check=False)


def page(zoo_dir: str, docs: str) -> None:
  """The docs' zoo table (docs/zoo_table.md) and one figure per model
  (docs/zoo/NAME.png: input | model | baseline and classical methods |
  target, on the model's check image)."""
  entries = list(pretrained.manifest(zoo_dir).values())
  figures = os.path.join(docs, 'zoo')
  os.makedirs(figures, exist_ok=True)
  for e in entries:
    config, state = pretrained.load_state(e.name, zoo_dir)
    config = pretrained.with_overrides(config, e.check.get('overrides', {}))
    example = pretrained.check_image(config)
    with tempfile.TemporaryDirectory() as tmp:
      pretrained.score(config, state, pretrained.listed([example]), out_dir=tmp)
      figure = Image.open(os.path.join(tmp, 'images', f'{example["name"]}.png'))
      factor = max(1, 128 // figure.height)  # Tiny scenes, enlarged.
      figure.resize((figure.width * factor, figure.height * factor),
                    Image.NEAREST).save(os.path.join(figures, f'{e.name}.png'))
  lines = ['| model | scores | training | size | reproduce |',
           '|---|---|---|---|---|']
  for e in entries:
    size = f'{e.parameters:,} parameters, {e.bytes / 1e6:.2f} MB'
    commands = '<br>'.join(f'`{c}`' for c in e.commands)
    lines.append(f'| **{e.name}**: {e.summary} ({e.task}) | '
                 + '<br>'.join(pretrained.score_cells(e)) + f' | {pretrained.budget(e)} | '
                 f'{size} | {commands} |')
  lines.append('')
  lines += [f'![{e.name}: input, model, baseline and classical methods, '
            f'target](zoo/{e.name}.png)\n' for e in entries]
  with open(os.path.join(docs, 'zoo_table.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def main(argv: list[str]) -> int:
  if len(argv) != 2 or argv[1] not in ('train', 'export', 'all', 'page', 'adopt'):
    print('usage: python -m experiments.zoo train|export|all|page|adopt '
          '[flags]; see --help', file=sys.stderr)
    return 2
  command = argv[1]
  if command == 'page':
    page(_ZOO_DIR.value or pretrained.WEIGHTS_DIR, _DOCS.value)
    return 0
  if command == 'adopt':
    if not _FROM.value or not _ONLY.value:
      print('error: adopt takes --from=FOLDER and --only=NAME[,NAME]',
            file=sys.stderr)
      return 2
    for name in _ONLY.value:
      e = pretrained.adopt(name, _FROM.value,
                           _ZOO_DIR.value or pretrained.WEIGHTS_DIR)
      print(f'{name}: adopted from {_FROM.value} ({pretrained.budget(e)})')
    return 0
  chosen = [r.resolve(_SHARED.value) for r in recipes(_ONLY.value)]
  budget = _BUDGET.value
  runs, zoo_dir = _RUNS.value, _ZOO_DIR.value or pretrained.WEIGHTS_DIR
  if command == 'all':
    if not _OUT.value:
      print('error: all writes into --out=FOLDER', file=sys.stderr)
      return 2
    runs = os.path.join(_OUT.value, 'runs')
    zoo_dir = os.path.join(_OUT.value, 'weights')
  if budget == 'gpu':  # Recipes without GPU steps train on CPU only.
    for r in chosen:
      if not r.gpu_steps:
        print(f'{r.name}: no GPU steps (not timed on a GPU yet); left out of '
              'the GPU budget', flush=True)
    chosen = [r for r in chosen if r.gpu_steps]
    if not chosen:
      return 0
  if budget == 'smoke':
    folder = os.path.join(runs, 'smoke_test_images')
    chosen = [smoke_recipe(r, folder) for r in chosen]
  if command in ('train', 'all'):
    for recipe in chosen:
      train(recipe, budget, runs)
  if command in ('export', 'all'):
    for recipe in chosen:
      e = export(recipe, runs, zoo_dir, budget)
      print(f'{e.name}: {e.file}, {e.bytes:,} bytes, check '
            f'{e.check["metric"]} {e.check["value"]:.4f}', flush=True)
    entries = [pretrained.entry(r.name, zoo_dir) for r in chosen]
    table = pretrained.table(entries)
    print(table)
    if command == 'all':
      with open(os.path.join(_OUT.value, 'zoo.md'), 'w') as f:
        f.write(table)
  if command == 'all' and _SPEED.value:
    speed([r for r in chosen if r.name != 'colorize-shapes'], _OUT.value, budget)
  return 0


def _main(argv: list[str]) -> int:
  try:
    return main(argv)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  app.run(_main)
