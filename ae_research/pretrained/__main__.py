"""The shipped models from the command line.

  python -m ae_research.pretrained                  # the table of models
  python -m ae_research.pretrained list --json      # the manifest's entries
  python -m ae_research.pretrained score sr-x3 --images=../shared/testsets/Set5
  python -m ae_research.pretrained score denoise-sp --images=photos/ \\
      --output=scores --set=denoise.amount=0.2
  python -m ae_research.pretrained check            # every model: checksum,
                                                    # names, check score

`score` measures a model on any folder of images as its manifest's scores
were measured (the task's whole-image evaluation: the model beside its
baseline and classical methods; `--set` changes a field of the model's
config for scoring, e.g. the noise level) and prints the means beside the
manifest's for a set of the same name. `check` loads every model (SHA-256,
parameter names and shapes) and measures its score on the small check
image again, against the manifest's (within --tolerance dB). Problems are
one line each, exit status 1.
"""

import json
import os
import sys

from absl import flags

from ae_research import cli, errors, pretrained

_IMAGES = flags.DEFINE_string('images', None, 'score: a folder of images.')
_OUTPUT = cli.define_output('score: where to write results.json, results.md '
                            'and one comparison per image (optional).')
_SET = flags.DEFINE_multi_string(
    'set', [], 'score: FIELD=VALUE changes a field of the model\'s config for '
    'scoring, e.g. denoise.sigma=15 (JSON values: 15, "gaussian", [0, 0]).')
_CLASSICAL = cli.define_classical(
    'score: run the task\'s classical methods beside the model (CBM3D takes '
    'minutes per image).')
_ZOO_DIR = cli.define_zoo_dir(
    'A folder of weights and their manifest.json (default: the models '
    'shipped with the package).')
_JSON = flags.DEFINE_bool('json', False, 'list: the manifest\'s entries as JSON.')
_TOLERANCE = flags.DEFINE_float(
    'tolerance', 0.05, 'check: how far a check score may be from the '
    'manifest\'s.')
_COMMANDS = ('list', 'score', 'check')


def _overrides(items: list[str]) -> dict:
  out = {}
  for item in items:
    field, sep, text = item.partition('=')
    if not sep or not field:
      raise pretrained.PretrainedError(
          f'--set={item!r}: expected FIELD=VALUE, e.g. denoise.sigma=15')
    try:
      out[field] = json.loads(text)
    except json.JSONDecodeError:
      out[field] = text  # A bare word: a string.
  return out


def _list(zoo_dir) -> int:
  entries = list(pretrained.manifest(zoo_dir).values())
  if _JSON.value:
    print(json.dumps([e.to_json() for e in entries], indent=2))
  else:
    print(pretrained.table(entries), end='')
  return 0


def _score(name: str, zoo_dir) -> int:
  if not _IMAGES.value:
    cli.usage_error('score: --images=FOLDER is required')
  if not os.path.isdir(_IMAGES.value):
    raise pretrained.PretrainedError(f'--images={_IMAGES.value} is not a folder')
  if _OUTPUT.value and os.path.exists(os.path.join(_OUTPUT.value, 'results.json')):
    raise pretrained.PretrainedError(
        f'--output={_OUTPUT.value} already holds results.json; give a new '
        'folder (nothing was written)')
  entry = pretrained.entry(name, zoo_dir)
  overrides = _overrides(_SET.value)
  config, state = pretrained.load_state(name, zoo_dir)
  config = pretrained.with_overrides(config, overrides)
  source = pretrained.folder_source(config, _IMAGES.value)
  results = pretrained.score(config, state, source, out_dir=_OUTPUT.value,
                             classical=_CLASSICAL.value)
  label = os.path.basename(os.path.normpath(_IMAGES.value))
  same_set = lambda d: os.path.basename(os.path.normpath(d.split(':', 1)[-1])) == label
  print(f'{name} on {_IMAGES.value} ({len(results["images"])} images)'
        + (f', {overrides}' if overrides else ''))
  metrics = list(results['mean']['model'])
  print('| method | ' + ' | '.join(metrics) + ' |')
  print('|---|' + '---|' * len(metrics))
  for method, values in results['mean'].items():
    print(f'| {method} | ' + ' | '.join(f'{values[m]:.4f}' for m in metrics) + ' |')
  stored = [s for s in entry.scores
            if same_set(s['dataset']) and s['overrides'] == overrides]
  for s in stored:
    key = s['label']
    metric = s['metric']
    print(f'manifest ({key}, {s["images"]} images): model {metric} '
          f'{s["mean"]["model"][metric]:.4f}; now '
          f'{results["mean"]["model"][metric]:.4f}')
  return 0


def _check(names: list[str], zoo_dir) -> int:
  failed = 0
  for name in names or pretrained.names(zoo_dir):
    try:
      now, stored = pretrained.recheck(name, zoo_dir)
    except errors.UserError as e:
      print(f'{name}: error: {e}', file=sys.stderr)
      failed += 1
      continue
    ok = abs(now - stored) <= _TOLERANCE.value
    failed += not ok
    print(f'{name}: checksum and names ok; check score {now:.4f}, manifest '
          f'{stored:.4f} ({"ok" if ok else "DIFFERS"})')
  return 1 if failed else 0


def main(argv: list[str]) -> int:
  command, args = (argv[1], argv[2:]) if len(argv) > 1 else ('list', [])
  if command not in _COMMANDS:
    cli.usage_error(f'expected one of {_COMMANDS}, got {command!r}')
  zoo_dir = _ZOO_DIR.value
  try:
    if command == 'list':
      if args:
        cli.usage_error('list takes no inputs')
      return _list(zoo_dir)
    if command == 'score':
      if len(args) != 1:
        cli.usage_error('score takes one model name, e.g. score sr-x3 '
                        '--images=FOLDER')
      return _score(args[0], zoo_dir)
    return _check(args, zoo_dir)
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  cli.run(main)
