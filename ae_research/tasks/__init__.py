"""Experiments: what differs between them lives in one small module each.

A task module defines:
  NAME: str
  out_features(config) -> int: channels the model outputs.
  input_channels(config) -> int: channels the model takes, known without
    opening the data (restoring a checkpoint needs no data set).
  make_pair(example, rng, config) -> {'input', 'target', ...}: numpy, on the
    host, inside the input pipeline (`rng` is a numpy Generator derived from
    the seed and the example's index, so corruptions are reproducible).
  loss(pred, batch, config) -> per-example loss [B], or a dict of per-example
    terms whose 'loss' is minimized (the others are reported beside it).
  metrics(pred, batch, config) -> {name: (sum over the batch, count)}, where
    every example is weighted by batch['mask'].
  baseline(batch) -> the trivial prediction the model is compared with
    (BASELINE_NAME says what it is: gray input, noisy input, bicubic); a
    task scored on whole images only (compress) names its baseline method
    in evaluate_images' results instead.
  classical(pair, config) -> {method: prediction} of classical methods on one
    whole image (numpy), scored beside the model in whole-image evaluation.
Optionally:
  make_model(config, norm_axis_name) -> the linen model, when it is not the
    `models.Autoencoder` of config.model.
  evaluate_images(...) -> whole-image evaluation in place of
    `evaluate.evaluate_images` (same arguments and result).
"""

import types

from ae_research.tasks import colorize, compress, denoise, super_resolution

TASKS: dict[str, types.ModuleType] = {
    m.NAME: m for m in (colorize, compress, denoise, super_resolution)}


def get(name: str) -> types.ModuleType:
  if name not in TASKS:
    raise ValueError(f'config.task={name!r} is unknown; choose one of '
                     f'{sorted(TASKS)}')
  return TASKS[name]
