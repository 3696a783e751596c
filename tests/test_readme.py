"""The README and the docs/ pages show what the project does today.

Their Python examples run; every command they show names files, modules,
config variants, config fields, flags and extras that exist; the README's
test command is what CI runs; the API reference covers every module.
"""

import ast
import configparser
import glob
import importlib
import os
import re
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))
# Folders whose scripts and modules the pages run.
FIRST_PARTY = ('ae_research', 'benchmarks', 'configs', 'experiments', 'launch')
# Modules that are commands (`python -m`), described by the pages rather
# than the API reference.
COMMANDS = ('ae_research.main', 'ae_research.apply', 'ae_research.codec',
            'ae_research.rd.__main__', 'ae_research.pretrained.__main__')


def _read(page: str) -> str:
  with open(os.path.join(ROOT, page)) as f:
    return f.read()


def _fenced(text: str, lang: str) -> list[str]:
  """The bodies of the ```lang blocks of a Markdown text."""
  blocks, body, opened = [], [], None
  for line in text.splitlines():
    if opened is None:
      if line.startswith('```'):
        opened, body = line[3:].strip(), []
    elif line.strip() == '```':
      if opened == lang:
        blocks.append('\n'.join(body) + '\n')
      opened = None
    else:
      body.append(line)
  return blocks


def _python_examples() -> list[tuple[str, int, str]]:
  return [(page, i, block) for page in PAGES
          for i, block in enumerate(_fenced(_read(page), 'python'))]


def _commands(text: str) -> list[list[str]]:
  """Each shell command of the text's bash blocks and of its one-line
  inline spans that start with `python `, as tokens."""
  lines = []
  for block in _fenced(text, 'bash'):
    lines += block.replace('\\\n', ' ').splitlines()
  lines += re.findall(r'`(python3? [^`\n]+)`', text)
  commands = []
  for line in lines:
    # $(...) computes part of a value: what is around it is checked.
    tokens = shlex.split(re.sub(r'\$\([^)]*\)', '', line), comments=True)
    command = []
    for token in tokens + [';']:
      if token in ('&&', '||', '|', ';', 'do', 'then', 'done') or token.endswith(';'):
        if token.endswith(';') and token != ';':
          command.append(token[:-1])
        if command:
          commands.append(command)
        command = []
      elif command or not re.fullmatch(r'[A-Z_]+=\S*', token):  # Not VAR=x.
        command.append(token)
  return commands


def _all_commands() -> list[tuple[str, list[str]]]:
  return [(page, c) for page in PAGES for c in _commands(_read(page))]


def _source(path: str) -> str:
  """A script's text and that of the first-party modules it imports (a
  command's shared flags live in ae_research/cli.py)."""
  with open(path) as f:
    text = f.read()
  if not path.endswith('.py'):
    return text
  imported = []
  for node in ast.walk(ast.parse(text)):
    if isinstance(node, ast.ImportFrom) and node.module in FIRST_PARTY:
      imported += [f'{node.module}/{a.name}.py' for a in node.names]
  for rel in imported:
    if os.path.exists(os.path.join(ROOT, rel)):
      with open(os.path.join(ROOT, rel)) as f:
        text += f.read()
  return text


def _module_file(module: str) -> str:
  parts = module.split('.')
  base = os.path.join(ROOT, *parts)
  for path in (base + '.py', os.path.join(base, '__main__.py')):
    if os.path.exists(path):
      return path
  return ''


def _field_exists(config, dotted: str) -> bool:
  node = config
  for key in dotted.split('.'):
    if not hasattr(node, 'keys') or key not in node.keys():
      return False
    node = node[key]
  return True


def _check_command(page: str, command: list[str]) -> list[str]:
  """What in one command names something that does not exist."""
  problems = []
  where = f'{page}: {" ".join(command)[:100]}'
  program, args = command[0], command[1:]
  source = ''
  if program in ('python', 'python3'):
    if args[:1] == ['-m'] and len(args) > 1:
      module, args = args[1], args[2:]
      if module.split('.')[0] in FIRST_PARTY:
        source = _module_file(module)
        if not source:
          problems.append(f'{where}: no module {module}')
    elif args and args[0].endswith('.py'):
      script, args = args[0], args[1:]
      source = os.path.join(ROOT, script)
      if not os.path.exists(source):
        problems.append(f'{where}: no file {script}')
        source = ''
  elif program.split('/')[0] in FIRST_PARTY:
    source = os.path.join(ROOT, program)
    if not os.path.exists(source):
      problems.append(f'{where}: no file {program}')
      source = ''
  elif program == 'pip':
    extras = configparser.ConfigParser()
    extras.read(os.path.join(ROOT, 'setup.cfg'))
    known = set(extras['options.extras_require'])
    for token in args:
      for extra in re.findall(r'^\.\[([\w,-]+)\]$', token)[:1]:
        for name in extra.split(','):
          if name not in known:
            problems.append(f'{where}: no extra {name!r} in setup.cfg')
  # Files the command names bare (not as a flag's value, which may be an
  # output) exist.
  for token in args:
    if not token.startswith('-') and token.split('/')[0] in FIRST_PARTY and '$' not in token:
      if not os.path.exists(os.path.join(ROOT, token)):
        problems.append(f'{where}: no file {token}')
  # The config it names, with its variants, and the fields it sets.
  config = None
  text = ' '.join(command)
  for path, variant in re.findall(r'--config=(configs/\w+\.py)(?::([\w,]+))?', text)[:1]:
    if not os.path.exists(os.path.join(ROOT, path)):
      problems.append(f'{where}: no file {path}')
      continue
    module = importlib.import_module('configs.' + os.path.basename(path)[:-3])
    try:
      config = module.get_config(variant or '')
    except ValueError as e:
      problems.append(f'{where}: {e}')
  if config is None:
    config = importlib.import_module('configs.default').get_config()
  for field in re.findall(r'--config\.([\w.]+)=', text):
    if not _field_exists(config, field):
      problems.append(f'{where}: the config has no field {field}')
  # The flags of the program itself: up to a bare '--', after which flags
  # go on to the training runs.
  if source:
    defined = _source(source)
    for token in args[:args.index('--')] if '--' in args else args:
      name = re.match(r'--([\w-]+)', token)
      if not name or name.group(1) == 'config' or token.startswith('--config.'):
        continue
      name = name.group(1)
      candidates = [name] + ([name[2:]] if name.startswith('no') else [])
      if not any(re.search(r'''['"](--)?%s['"]''' % re.escape(c), defined) or
                 f'--{c}' in defined for c in candidates):
        problems.append(f'{where}: {os.path.relpath(source, ROOT)} defines '
                        f'no flag --{name}')
  return problems


def test_readme_python_example_runs():
  blocks = _fenced(_read('README.md'), 'python')
  assert blocks, 'README has no python example'
  namespace = {}
  exec(compile(blocks[0], 'README.md', 'exec'), namespace)  # pylint: disable=exec-used
  assert namespace['y'].shape == (8, 32, 32, 3)
  assert namespace['z'].shape == (8, 8, 8, 64)
  assert int(namespace['state'].step) == 1


@pytest.mark.parametrize('page,index,block', [
    e for e in _python_examples() if e[0] != 'README.md' and
    e[2] not in _fenced(_read('README.md'), 'python')])  # Run above.
def test_docs_python_examples_run(page, index, block):
  namespace = {}
  exec(compile(block, f'{page} example {index}', 'exec'), namespace)  # pylint: disable=exec-used


def test_extending_example_is_a_task_on_both_pipelines():
  """docs/extending.md's example experiment passes the registry's check
  and makes the same pair from numpy on the host and from jax under jit."""
  from ae_research import base_config, tasks  # pylint: disable=import-outside-toplevel
  namespace = {}
  block = _fenced(_read('docs/extending.md'), 'python')[0]
  exec(compile(block, 'docs/extending.md', 'exec'), namespace)  # pylint: disable=exec-used
  task = namespace['Contrast']()
  tasks.check_task(task)
  config = base_config.get_config('colorize')
  config.task = task.name
  config[task.group] = task.group_defaults()
  assert task.check_config(config) == []
  image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), np.uint8)
  host = task.make_pair({'image': image}, np.random.default_rng(0), config)
  device = jax.jit(lambda x, key: task.make_pair({'image': x}, key, config))(
      jnp.asarray(image), jax.random.key(0))
  np.testing.assert_allclose(host['input'], device['input'], atol=1e-6)
  np.testing.assert_allclose(host['target'], image / 255.0, atol=1e-6)
  assert host['input'].max() < host['target'].max()  # Contrast is reduced.


def test_commands_name_what_exists():
  commands = _all_commands()
  assert len(commands) > 50, 'too few commands found: the parser broke'
  problems = [p for page, c in commands for p in _check_command(page, c)]
  assert not problems, '\n'.join(problems)


def test_command_check_finds_what_is_missing():
  """The check above can fail."""
  bad = [['python', '-m', 'ae_research.main', '--config=configs/denoise.py:nope'],
         ['python', '-m', 'ae_research.main', '--config=configs/denoise.py',
          '--config.denoise.no_such_field=1'],
         ['python', '-m', 'ae_research.apply', '--no_such_flag=1'],
         ['python', '-m', 'ae_research.no_such_module'],
         ['python', 'benchmarks/no_such_script.py'],
         ['pip', 'install', '-e', '.[no_such_extra]']]
  for command in bad:
    assert _check_command('test', command), command


def test_readme_and_ci_run_the_same_commands():
  readme = _read('README.md')
  with open(os.path.join(ROOT, '.ci', 'run')) as f:
    ci = f.read()
  test_command = "pip install -c constraints.txt -e '.[test]' && python -m pytest -n 2 tests"
  assert test_command in readme and test_command in ci
  docs_command = next(l for l in readme.splitlines() if 'python -m sphinx' in l)
  assert docs_command in ci
  assert '-W' in docs_command.split() and '-n' in docs_command.split()
  development = readme[readme.index('## Development'):]
  first = _fenced(development, 'bash')[0].strip().splitlines()[0]
  assert first == 'python -m pytest -n 2 -m "not slow" tests'


def test_readme_is_a_landing_page():
  readme = _read('README.md')
  assert len(readme.splitlines()) < 300
  for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', readme):
    if '://' not in target:
      assert os.path.exists(os.path.join(ROOT, target)), target
  for path in set(re.findall(r'--config=(configs/\w+\.py)', readme)):
    assert os.path.exists(os.path.join(ROOT, path)), path
  # It is the package's long description.
  setup = configparser.ConfigParser()
  setup.read(os.path.join(ROOT, 'setup.cfg'))
  assert setup['metadata']['long_description'] == 'file: README.md'


def test_api_reference_covers_every_module():
  api = _read('docs/api.md')
  documented = set(re.findall(r'^\.\. automodule:: ([\w.]+)$', api, re.M))
  modules = set()
  for path in glob.glob(os.path.join(ROOT, 'ae_research', '**', '*.py'), recursive=True):
    name = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    modules.add(name[:-len('.__init__')] if name.endswith('.__init__') else name)
  missing = modules - documented - set(COMMANDS) - {'ae_research'}
  assert not missing, f'docs/api.md documents no {sorted(missing)}'
  gone = documented - modules
  assert not gone, f'docs/api.md documents modules that do not exist: {sorted(gone)}'


def test_layout_names_every_module():
  text = _read('docs/extending.md')
  layout = next(b for b in _fenced(text, '') if b.startswith('ae_research/'))
  package = layout[:layout.index('\nconfigs/')]
  named = set(re.findall(r'^\s+([\w/]+(?:\.py|/))', package, re.M))
  for path in glob.glob(os.path.join(ROOT, 'ae_research', '*.py')):
    name = os.path.basename(path)
    if name != '__init__.py':
      assert name in named, f'the layout in docs/extending.md misses {name}'
  for name in named:
    assert os.path.exists(os.path.join(ROOT, 'ae_research', name)), (
        f'the layout in docs/extending.md names {name}, which does not exist')
