"""The config every run starts from: the shared fields and their defaults,
and the task's own group (`tasks.base.Task.group_defaults`).

The experiment configs (`configs/*.py`) derive from it by override; the
library reads it for the fields a stored run predates (`workdir`).
"""

import copy
import json
from typing import Any

import ml_collections

from ae_research import archs, defaults, tasks

# A resumed run must agree with the stored config on these and on its
# task's group, or it would end neither as the stored run nor as a fresh one
# (the data position counts batches, the learning-rate schedule spans
# num_train_steps); the rest (logging, evaluation, checkpoint frequency...)
# may change between runs.
FIXED_FIELDS = ('task', 'dataset', 'model', 'shapes', 'seed', 'patch_size',
                'augment', 'batch_size', 'num_train_steps', 'optimizer',
                'init_from')
# Scoring a trained run may change everything but what its parameters mean
# (and its task's group, where the task allows: e.g. the noise level of a
# denoising run).
EVAL_FIXED_FIELDS = ('task', 'model')


def fixed_fields(task_name: str, at_eval: bool = False) -> tuple[str, ...]:
  """The fields a run of `task_name` keeps when resumed (or, `at_eval`,
  when scored)."""
  task = tasks.get(task_name)
  fields = EVAL_FIXED_FIELDS if at_eval else FIXED_FIELDS
  if task.group and (task.group_fixed_at_eval or not at_eval):
    fields += (task.group,)
  return fields


def get_config(task: str = 'colorize') -> ml_collections.ConfigDict:
  """The shared defaults, and the group of `task` (config.task)."""
  config = ml_collections.ConfigDict()
  config.task = task
  config.seed = 0

  config.dataset = 'shapes'
  config.data_dir = ''  # '' means $TFDS_DATA_DIR or ~/tensorflow_datasets.
  # Where training batches are made. 'device': the decoded training images
  # are kept on the accelerator and each batch (crops, flips, corruption) is
  # made by jitted code (ae_research/device_data.py); 'host': grain on the
  # host, for any data; 'auto': the device when the source is images that
  # fit (the embedded photos, folders) and config.patch_size > 0.
  config.input_pipeline = 'auto'
  config.data_threads = 2  # The host pipeline's.
  config.data_prefetch = 4
  # 'bfloat16': the model computes in bfloat16 (parameters, optimizer
  # state, loss and normalization statistics stay float32; steps.py).
  config.compute_dtype = 'float32'
  config.eval_dataset = ''  # '' means the test split of config.dataset.
  # Score whole images of any size (one at a time, beside the task's
  # classical methods) instead of fixed-size batches.
  config.eval_whole_images = False
  # Whole-image scoring runs the task's classical methods beside the model
  # (CBM3D takes about a minute per Kodak image on 2 cores); False skips them.
  config.eval_classical = True
  config.patch_size = 0  # > 0: train on random square crops of this size.
  # Train on one of the 8 flips and rotations of each crop, drawn at random.
  config.augment = False
  # For config.dataset='tfds:NAME': the split names and the image's key.
  config.tfds_splits = ml_collections.ConfigDict(dict(train='train', test='test'))
  config.tfds_image_key = 'image'
  group = tasks.get(task).group
  if group:  # The task's own fields, e.g. config.denoise.
    config[group] = ml_collections.ConfigDict(tasks.get(task).group_defaults())
  config.shapes = ml_collections.ConfigDict(defaults.SHAPES)
  # The model: config.model.arch names one of ae_research/archs.py's, the
  # other fields are that architecture's (configs/default.py `use_arch`
  # switches a config to another one, as --config.model.arch=NAME does).
  config.model = ml_collections.ConfigDict(archs.get('autoencoder').config())

  # What this run starts from (fine-tuning): a workdir (its latest
  # parameters) or pretrained:NAME (a shipped model, ae_research.pretrained);
  # '' for a fresh initialization.
  config.init_from = ''
  config.optimizer = ml_collections.ConfigDict(dict(
      learning_rate=2e-3, warmup_steps=100, final_lr_fraction=0.01,
      b1=0.9, b2=0.999, weight_decay=0.0, grad_clip_norm=1.0))

  config.batch_size = 64  # Global: split over every device of every process.
  config.eval_batch_size = 128
  config.num_train_steps = 2500
  config.num_eval_examples = 1000  # At most this many test examples.
  config.log_every_steps = 100
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  config.async_checkpoints = True
  config.num_sample_images = 8
  return config


def defaults_of(task: str) -> dict:
  """Today's defaults of a `task` run, as the JSON a run stores."""
  return json.loads(get_config(task).to_json_best_effort())


def merge(base: dict, update: dict) -> dict:
  """`base` with the values of `update`, nested groups merged key by key."""
  for k, v in update.items():
    base[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(
        base.get(k), dict) else v
  return base


def from_stored(stored: dict[str, Any]) -> ml_collections.ConfigDict:
  """A stored config (a run's config.json, a pretrained model's) in today's
  terms: the fields it predates take their default values."""
  task = stored.get('task', 'colorize')
  return ml_collections.ConfigDict(merge(defaults_of(task), copy.deepcopy(stored)))
