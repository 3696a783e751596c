"""The package's imports point one way: library pieces at the bottom, the
tasks above them, then opening runs, the loop, and the commands on top.

Read from the source (ast), so an import hidden in a function counts too.
"""

import ast
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                    'ae_research')

# Bottom to top. A module imports modules of its own layer or below.
LAYERS = [
    ('library', {
        'errors', 'logs', 'claim', 'defaults', 'color', 'checks', 'image_io', 'metrics',
        'corruptions', 'models', 'zoo', 'entropy_models', 'compression', 'steps',
        'parallel', 'archs',
        'checkpointing', 'preemption', 'summaries', 'tiling', 'datasets',
        'datasets.folder', 'datasets.photos', 'datasets.shapes',
        'datasets.prepare', 'input_pipeline', 'device_data', 'evaluate', 'rd', 'aec', 'sweep',
        'rd.lambdas', 'fuzzing', 'fuzz_aec', 'fuzz_images'}),
    ('tasks', {'tasks', 'tasks.base', 'tasks.colorize', 'tasks.compress',
               'tasks.denoise', 'tasks.super_resolution'}),
    ('opening runs', {'base_config', 'config_lib', 'workdir', 'kill_resume',
                      'pretrained'}),
    ('the loop', {'train'}),
    ('commands', {'cli', 'main', 'apply', 'codec', 'rd.__main__',
                  'pretrained.__main__'}),
]
LAYER = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms}
# What a researcher imports to use the models and steps alone, and the
# third-party packages that needs (the README's light install names them).
CORE = ('models', 'zoo', 'entropy_models', 'compression', 'metrics', 'corruptions',
        'steps', 'color')
CORE_PACKAGES = {'jax', 'flax', 'optax', 'numpy', 'dm_pix', 'PIL'}


def _modules() -> dict[str, str]:
  """{dotted name inside ae_research: path} of every module of the package."""
  found = {}
  for root, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith('.py'):
        rel = os.path.relpath(os.path.join(root, f), ROOT)[:-3].replace(os.sep, '.')
        name = rel[:-len('.__init__')] if rel.endswith('.__init__') else rel
        found['' if name == '__init__' else name] = os.path.join(root, f)
  return found


MODULES = _modules()


def _imports(name: str) -> list[tuple[str, int, bool]]:
  """(imported module, line, at module level) for every import in `name`,
  with `from ae_research.x import y` resolved to module x.y when y is one."""
  path = MODULES[name]
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  top = set(map(id, tree.body))
  for node in tree.body:  # Module-level try/except ImportError counts as top.
    if isinstance(node, ast.Try):
      top |= {id(n) for n in node.body + [h for x in node.handlers for h in x.body]}
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(a.name, node.lineno, id(node) in top) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        sub = f'{node.module}.{a.name}'
        inside = sub.split('.', 1)[1] if sub.startswith('ae_research.') else None
        out.append((sub if inside in MODULES else node.module, node.lineno,
                    id(node) in top))
  return out


# The project's top-level folders of Python code, bottom to top: a file
# imports first-party code of its own folder or one below (the library
# never imports the configs; the configs never import a launcher).
PROJECT = os.path.dirname(ROOT)
PROJECT_LAYERS = [('ae_research',), ('configs',),
                  ('launch', 'experiments', 'benchmarks'), ('tests',)]
PROJECT_LAYER = {p: i for i, ps in enumerate(PROJECT_LAYERS) for p in ps}


def _project_files() -> dict[str, str]:
  """{path relative to the project: path} of every first-party .py file."""
  found = {}
  for top in PROJECT_LAYER:
    for root, dirs, files in os.walk(os.path.join(PROJECT, top)):
      dirs[:] = [d for d in dirs if d != '__pycache__']
      for f in files:
        if f.endswith('.py'):
          path = os.path.join(root, f)
          found[os.path.relpath(path, PROJECT)] = path
  return found


def _first_party_imports(path: str) -> list[tuple[str, int]]:
  """(top-level first-party package, line) of every import in `path`,
  relative imports resolved to the file's own folder."""
  with open(path) as f:
    tree = ast.parse(f.read(), path)
  own = os.path.relpath(path, PROJECT).split(os.sep)[0]
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      names = [own] if node.level else [node.module or '']
    else:
      continue
    out += [(n.split('.')[0], node.lineno) for n in names
            if n.split('.')[0] in PROJECT_LAYER]
  return out


def test_first_party_imports_point_down():
  """Every first-party import of every file of the project, not only the
  package's: e.g. the library importing configs/ fails here."""
  wrong = []
  for rel, path in sorted(_project_files().items()):
    layer = PROJECT_LAYER[rel.split(os.sep)[0]]
    for target, line in _first_party_imports(path):
      if PROJECT_LAYER[target] > layer:
        wrong.append(f'{rel} line {line} imports {target}/')
  assert not wrong, ('imports against the project layers '
                     f'{PROJECT_LAYERS}:\n' + '\n'.join(wrong))


def test_project_layer_check_sees_a_wrong_import(tmp_path):
  """The check above finds an import of configs/ written in a library file."""
  path = tmp_path / 'module.py'
  path.write_text('import os\nfrom configs import default\n')
  assert _first_party_imports(str(path)) == [('configs', 2)]


def _internal(target: str):
  if target == 'ae_research':
    return ''
  return target[len('ae_research.'):] if target.startswith('ae_research.') else None


def test_every_module_has_a_layer():
  missing = sorted(set(MODULES) - set(LAYER) - {''})
  assert not missing, f'add {missing} to a layer in LAYERS'


def test_imports_point_down():
  wrong = []
  for name in MODULES:
    if not name:
      continue
    for target, line, _ in _imports(name):
      inside = _internal(target)
      if inside is not None and LAYER[inside] > LAYER[name]:
        wrong.append(f'{name} ({LAYERS[LAYER[name]][0]}) line {line} imports '
                     f'{inside} ({LAYERS[LAYER[inside]][0]})')
  assert not wrong, '\n'.join(wrong)


def _cycle(graph: dict[str, set[str]]):
  """One cycle of `graph` as a list of nodes, or None."""
  state, stack = {}, []

  def visit(n):
    state[n] = 'open'
    stack.append(n)
    for m in sorted(graph.get(n, ())):
      if state.get(m) == 'open':
        return stack[stack.index(m):] + [m]
      if m not in state:
        found = visit(m)
        if found:
          return found
    stack.pop()
    state[n] = 'done'
    return None

  for n in sorted(graph):
    if n not in state:
      found = visit(n)
      if found:
        return found
  return None


def test_cycle_finder_finds_a_cycle():
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
  assert _cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None


def test_no_import_cycle():
  graph = {name: {_internal(t) for t, _, _ in _imports(name)
                  if _internal(t) not in (None, name)}
           for name in MODULES}
  cycle = _cycle(graph)
  assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_no_deferred_imports():
  """Every import is at the top of its module (optional packages inside a
  module-level try/except ImportError)."""
  deferred = [f'{name} line {line}: {target}' for name in MODULES
              for target, line, top in _imports(name) if not top]
  assert not deferred, 'imports inside functions:\n' + '\n'.join(deferred)


def _third_party(names) -> set[str]:
  """Top-level third-party packages imported by `names` and every
  ae_research module they import, transitively."""
  seen, todo, packages = set(), list(names), set()
  while todo:
    name = todo.pop()
    if name in seen:
      continue
    seen.add(name)
    for target, _, _ in _imports(name):
      inside = _internal(target)
      if inside is not None:
        todo.append(inside)
      elif target.split('.')[0] not in sys.stdlib_module_names:
        packages.add(target.split('.')[0])
  return packages


def test_core_needs_only_the_light_install():
  assert _third_party(CORE) <= CORE_PACKAGES, (
      f'the core modules import {sorted(_third_party(CORE) - CORE_PACKAGES)} '
      'beyond the light install')


def test_docs_name_the_light_install():
  with open(os.path.join(os.path.dirname(ROOT), 'docs', 'library.md')) as f:
    readme = f.read()
  pip_names = {'dm_pix': 'dm-pix', 'PIL': 'pillow'}
  line = next(l for l in readme.splitlines() if '--no-deps' in l)
  for package in CORE_PACKAGES:
    assert pip_names.get(package, package) in line.split(), (package, line)


@pytest.mark.slow
def test_core_imports_with_the_training_stack_missing():
  """In a fresh interpreter where the training stack cannot be imported,
  the core modules import and a model trains a step."""
  # (absl and scipy stay: optax and jax need them.)
  blocked = ['tensorflow_datasets', 'grain', 'orbax', 'tensorboard',
             'tensorboardX', 'ml_collections', 'sklearn', 'skimage',
             'matplotlib', 'constriction', 'tqdm', 'png', 'configs']
  script = textwrap.dedent(f'''
      import sys
      class Block:
        def find_spec(self, name, path=None, target=None):
          if name.split('.')[0] in {blocked!r}:
            raise ImportError('blocked: ' + name)
      sys.meta_path.insert(0, Block())
      import jax, jax.numpy as jnp, optax
      from ae_research import {', '.join(CORE)}
      model = models.TinyAutoencoder(out_features=3)
      tx = optax.adam(1e-3)
      x = jnp.ones((2, 16, 16, 3))
      state = steps.create_train_state(model, tx, jax.random.key(0), x.shape)
      loss = lambda pred, batch: metrics.mse(pred, batch['target'])
      step = jax.jit(steps.make_train_step(model, tx, loss))
      state, out = step(state, {{'input': x, 'target': x}}, jax.random.key(1))
      print('loss', float(out['loss']))
  ''')
  env = dict(os.environ, JAX_PLATFORMS='cpu')
  result = subprocess.run([sys.executable, '-c', script], capture_output=True,
                          text=True, env=env, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.startswith('loss ')


@pytest.mark.slow
@pytest.mark.parametrize('command', ['main', 'apply', 'codec', 'rd'])
def test_commands_start(command):
  """Each command imports and prints its help (absl's exits with 1)."""
  result = subprocess.run([sys.executable, '-m', f'ae_research.{command}', '--help'],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode in (0, 1), result.stderr
  assert 'Traceback' not in result.stderr, result.stderr
  assert '--workdir' in result.stdout
