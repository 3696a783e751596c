"""Sphinx configuration: the MyST pages of docs/ and the API reference.

Build (docs/development.md), every warning an error and every
cross-reference resolved:
  python -m sphinx -W --keep-going -n -b html docs docs/_build/html
"""

import dataclasses
import os
import re
import sys

sys.path.insert(0, os.path.abspath('..'))
# Importing the package must not grab an accelerator or warn about one.
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

project = 'ae_research'
author = 'the ae_research authors'
copyright = 'the ae_research authors'  # pylint: disable=redefined-builtin

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
]
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']
html_theme = 'alabaster'
html_title = 'ae_research'

# Every reference must resolve (with -n, or here): a renamed function that a
# page still names fails the build.
nitpicky = True
# Links to a page's headings: [text](page.md#a-heading).
myst_heading_anchors = 3

autodoc_default_options = {'members': True, 'undoc-members': True}
autodoc_member_order = 'bysource'
autodoc_typehints = 'signature'
# A flax module without a docstring of its own would show flax's.
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
# The docstrings write code as `name`, as Markdown does: show it as code.
default_role = 'code'

# Intersphinx cannot be reached offline, so the names of other libraries in
# signatures stay unlinked; these, and only these, may go unresolved.
_THIRD_PARTY = (r'(jax|jaxlib|flax|numpy|np|optax|ml_collections|grain|absl|'
                r'PIL|orbax|tensorboardX|tensorflow_datasets|types|typing|collections|'
                r'dataclasses|logging)'
                r'(\..+)?')
nitpick_ignore_regex = [(r'py:(class|obj|data|func|meth|attr|exc|mod)',
                         _THIRD_PARTY)]

def _top_level_split(text):
  """`text` split at the commas outside brackets and quotes."""
  parts, depth, quote, start = [], 0, '', 0
  for i, c in enumerate(text):
    if quote:
      quote = '' if c == quote else quote
    elif c in '\'"':
      quote = c
    elif c in '([{<':
      depth += 1
    elif c in ')]}>':
      depth -= 1
    elif c == ',' and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  return parts + [text[start:]]


def _own_fields(cls):
  """The fields the package's own classes in `cls`'s MRO declare (flax
  adds its `parent` and `name` to the annotations of every module)."""
  own = {name for c in cls.__mro__
         if c.__module__.startswith('ae_research')
         for name in vars(c).get('__annotations__', {})}
  if any(c.__module__.startswith('flax.') and c.__name__ == 'Module'
         for c in cls.__mro__):
    own -= {'parent', 'name'}
  return own


_REPR_DEFAULT = re.compile(r'=\s*<.*>\s*$', re.S)


def _signature(app, what, name, obj, options, signature, return_annotation):
  """A dataclass (a flax module, a TFDS builder config) shows the fields
  the package declares, not those of its base in another library (flax's
  `parent` and `name`); a class whose constructor is another library's
  shows none; a default that is not Python (`<factory>`) shows as `...`."""
  del app, name, options
  if signature is None:
    return None
  params = _top_level_split(signature.strip()[1:-1])
  if what in ('class', 'exception'):
    if dataclasses.is_dataclass(obj):
      own = _own_fields(obj)
      params = [p for p in params
                if re.split(r'[:=]', p.strip().lstrip('*'))[0].strip() in own]
    elif not getattr(getattr(obj, '__init__', None), '__module__',
                     '').startswith('ae_research'):
      return '', return_annotation
  params = [_REPR_DEFAULT.sub('= ...', p.strip()) for p in params if p.strip()]
  return '(' + ', '.join(params) + ')', return_annotation


# The package's docstrings are plain text with `code` in backticks and
# Google-style sections (Args:, Returns:...). Three of their conventions are
# not reST, and are made so before napoleon reads them: an indented block
# after a blank line is preformatted (an example, a file layout, a list of
# names), so is a paragraph with hanging indents (a list of fields and what
# they mean), and `*` and `|` are plain characters (a product, a separator).
_SECTION = re.compile(
    r'\s*(Args|Arguments|Attributes|Example|Examples|Keyword Args|Methods|'
    r'Note|Notes|Other Parameters|Parameters|Raises|References|Returns|'
    r'See Also|Todo|Warning|Warns|Yields):\s*$')
_LIST_ITEM = re.compile(r'\s*([-*+]|\d+\.|#\.)\s')
_CODE_OR_MARKUP = re.compile(r'(`[^`]*`)|(?<!\\)([*|])')


def _indent(line):
  return len(line) - len(line.lstrip())


def _hanging_paragraphs(lines):
  """Paragraphs with hanging indents, outside sections and indented
  blocks, as literal blocks."""
  out, i = [], 0
  section = None  # The indent of the last section header, inside one.
  base = 0  # The indent of the last paragraph of the text itself.
  while i < len(lines):
    if not lines[i].strip():
      out.append(lines[i])
      i += 1
      continue
    j = i
    while j < len(lines) and lines[j].strip():
      j += 1
    para, first = lines[i:j], _indent(lines[i])
    if section is not None and first <= section:
      section = None
    if _SECTION.match(para[0]):
      section = first
    elif section is None and (i == 0 or first <= base):  # Not a block.
      base = first
      if (not _LIST_ITEM.match(para[0])
          and any(_indent(l) > first for l in para[1:])):
        para = [' ' * first + '::', ''] + ['  ' + l for l in para]
    out.extend(para)
    i = j
  return out


def _plain_text(app, what, name, obj, options, lines):
  del app, options
  lines[:] = _hanging_paragraphs(lines)
  out = []
  literal_indent = None  # The indent a literal block must exceed.
  for i, line in enumerate(lines):
    if literal_indent is not None and line.strip() and _indent(line) <= literal_indent:
      literal_indent = None
    if literal_indent is None and line.strip() and i >= 1 and not lines[i - 1].strip():
      before = [l for l in lines[:i] if l.strip()]
      if before and _indent(line) > _indent(before[-1]) and not _SECTION.match(before[-1]):
        # The paragraph before the blank line introduces the block:
        # 'text:' becomes 'text::', anything else is followed by '::'.
        j = len(out) - 2
        while j >= 0 and not out[j].strip():
          j -= 1
        if not out[j].rstrip().endswith('::'):
          if out[j].rstrip().endswith(':'):
            out[j] = out[j].rstrip() + ':'
          else:
            out[-1:] = ['', '::', '']
        literal_indent = _indent(before[-1])
    if literal_indent is None:
      line = _CODE_OR_MARKUP.sub(lambda m: m.group(1) or '\\' + m.group(2), line)
    out.append(line)
  lines[:] = out
  if what == 'data' and lines and lines[0].strip() == (
      (type(obj).__doc__ or '').strip().split('\n')[0]):
    lines[:] = []  # A constant without a docstring shows its type's.
  if what in ('attribute', 'property', 'data'):
    # Napoleon reads 'X: y' on an attribute's first line as type X; here it
    # is a sentence.
    _SENTENCES[name] = list(lines)


_SENTENCES = {}


def _restore_sentences(app, what, name, obj, options, lines):
  del app, what, obj, options
  if name in _SENTENCES:
    lines[:] = _SENTENCES.pop(name)


def _skip_flax_fields(app, what, name, obj, skip, options):
  """flax's fields of every module (None on the class) are flax's to
  document."""
  del app, options
  if what == 'class' and name in ('parent', 'name', 'scope') and obj is None:
    return True
  return skip


def setup(app):
  app.connect('autodoc-skip-member', _skip_flax_fields)
  app.connect('autodoc-process-signature', _signature)
  # Before and after napoleon (priority 500).
  app.connect('autodoc-process-docstring', _plain_text, priority=400)
  app.connect('autodoc-process-docstring', _restore_sentences, priority=600)
