"""The architectures `config.model.arch` can name, each declared once.

An `Arch` is everything the rest of the code knows about an architecture:
the linen module that implements it (a class of `ae_research/zoo.py`, by
name), its config fields with their defaults and checks, the sizes of the
'smoke' variant, and what it can do (take a noise map, take the
low-resolution image). The configs (`use_arch`, the smoke variant), the
config checks (`config_lib`), `zoo.from_config`, the command line's
`--config.model.arch=X` and the speed benchmark all read `REGISTRY`.

This module is plain data and imports no jax (the benchmarks read it
without building a model); `zoo` checks at import that each class agrees
with its declaration, and names what is missing and where.

To add an architecture: write its module in zoo.py (fields `out_features`
and `norm_axis_name`, plus `scale` if it takes the low-resolution image;
attributes `downsampling` and `upscale`; its other fields' defaults read
from here), and add its `Arch` to `REGISTRY` below:

  Arch('vdsr', module='VDSR',
       fields=dict(depth=Field(20, at_least(2)),
                   width=Field(64, checks.positive)),
       smoke=dict(depth=3, width=8))

Then `--config.model.arch=vdsr` trains it, with its defaults, in any
image-to-image experiment.
"""

import dataclasses
from typing import Any, Mapping, Optional

from ae_research import checks

# The names of the building blocks' kinds (the modules are in models.py).
DOWNSAMPLE_KINDS = ('stride', 'avgpool', 'space_to_depth')
UPSAMPLE_KINDS = ('pixel_shuffle', 'nearest', 'transpose')
NORM_KINDS = ('none', 'batch', 'group', 'layer')
ACTIVATIONS = ('relu', 'gelu', 'silu', 'leaky_relu', 'tanh')
OUTPUT_ACTIVATIONS = ('none', 'sigmoid')

# Set by the code that builds a model, never by config.model.
RESERVED = ('arch', 'out_features', 'norm_axis_name', 'scale')


class ArchError(ValueError):
  """A declaration that is incomplete, or disagrees with its class."""


def at_least(n: int) -> checks.Check:
  """An integer >= n."""
  def check(x):
    ok = isinstance(x, int) and not isinstance(x, bool) and x >= n
    return None if ok else f'an integer >= {n}'
  return check


@dataclasses.dataclass(frozen=True)
class Field:
  """A field of config.model: its default and its check (a `checks` check:
  None when a value is allowed, else a phrase saying what is)."""
  default: Any
  check: checks.Check


@dataclasses.dataclass(frozen=True)
class Arch:
  """One architecture; see the module docstring.

  name: the value of config.model.arch.
  module: the name of its linen module in ae_research/zoo.py.
  fields: {field of config.model: Field(default, check)}.
  smoke: the fields the 'smoke' variant changes ({} if none).
  noise_map: its input's last channel is the noise level (sigma / 255).
  low_resolution: it takes the low-resolution image and upsamples by its
    field `scale` (super-resolution); otherwise its output has the input's
    size.
  """
  name: str
  # None is missing: __post_init__ says what to give.
  module: Optional[str] = None
  fields: Optional[Mapping[str, Field]] = None
  smoke: Optional[Mapping[str, Any]] = None
  noise_map: bool = False
  low_resolution: bool = False

  def __post_init__(self):
    if not isinstance(self.name, str) or not self.name.isidentifier():
      raise ArchError(f'Arch(name={self.name!r}): the name is what '
                      'config.model.arch holds, an identifier')
    where = f'architecture {self.name!r} (ae_research/archs.py)'
    if not isinstance(self.module, str) or not self.module:
      raise ArchError(f'{where} names no module: give module=NAME, its linen '
                      'module in ae_research/zoo.py')
    if not isinstance(self.fields, Mapping):
      raise ArchError(f'{where} declares no fields: give fields=dict(NAME='
                      'Field(default, check), ...), or {} if it has none')
    for name, field in self.fields.items():
      if name in RESERVED:
        raise ArchError(f'{where} declares field {name!r}, which the code '
                        f'that builds a model sets; fields cannot be any of '
                        f'{RESERVED}')
      if not isinstance(field, Field) or not callable(field.check):
        raise ArchError(f'{where}: field {name!r} is {field!r}; give '
                        'Field(default, check) with a check from '
                        'ae_research/checks.py')
      self._check_value(f'the default of {name!r}', name, field.default)
    if not isinstance(self.smoke, Mapping):
      raise ArchError(f'{where} has no smoke sizes: give smoke=dict(...), the '
                      "fields the 'smoke' variant shrinks ({} if its "
                      'defaults are small)')
    for name, value in self.smoke.items():
      if name not in self.fields:
        raise ArchError(f'{where}: smoke sets {name!r}, which is not one of '
                        f'its fields {sorted(self.fields)}')
      self._check_value(f'smoke {name!r}', name, value)
    for flag in ('noise_map', 'low_resolution'):
      if not isinstance(getattr(self, flag), bool):
        raise ArchError(f'{where}: {flag}={getattr(self, flag)!r}; give True '
                        'or False')

  def _check_value(self, what: str, name: str, value: Any) -> None:
    allowed = self.fields[name].check(value)
    if allowed is not None:
      raise ArchError(f'architecture {self.name!r} (ae_research/archs.py): '
                      f'{what} is {value!r}, which its check refuses: use '
                      f'{allowed}')

  @property
  def defaults(self) -> dict[str, Any]:
    """{field: default}."""
    return {name: field.default for name, field in self.fields.items()}

  def config(self, **changes: Any) -> dict[str, Any]:
    """What config.model holds for this architecture: 'arch' and every
    field, at its default unless `changes` sets it."""
    unknown = set(changes) - set(self.fields)
    if unknown:
      raise ValueError(f'{self.name} has no field(s) {sorted(unknown)}; its '
                       f'fields: {sorted(self.fields)}')
    return dict(arch=self.name, **{**self.defaults, **changes})

  def problems(self, model_config: Mapping[str, Any]) -> list[str]:
    """One message per field of config.model that is missing, not allowed,
    or not one of this architecture's."""
    found = checks.problems({'model': model_config}, {
        f'model.{name}': field.check for name, field in self.fields.items()})
    extra = sorted(set(model_config.keys()) - set(self.fields) - {'arch'})
    if extra:
      found.append(f'config.model has {extra}, which config.model.arch='
                   f'{self.name!r} does not take; its fields: '
                   f'{sorted(self.fields)}')
    return found


def registry(*declared: Arch) -> dict[str, Arch]:
  """{name: Arch}, refusing two declarations of one name."""
  out = {}
  for arch in declared:
    if not isinstance(arch, Arch):
      raise ArchError(f'the registry holds Arch(...) declarations; got '
                      f'{arch!r}')
    if arch.name in out:
      raise ArchError(f'architecture {arch.name!r} is declared twice in '
                      'ae_research/archs.py')
    out[arch.name] = arch
  return out


_DOWNSAMPLE = checks.one_of(DOWNSAMPLE_KINDS)
_UPSAMPLE = checks.one_of(UPSAMPLE_KINDS)
_NORM = checks.one_of(NORM_KINDS)
_ACTIVATION = checks.one_of(ACTIVATIONS)
_OUTPUT_ACTIVATION = checks.one_of(OUTPUT_ACTIVATIONS)

# Published sizes: DnCNN 17 x 64 with batch norm; FFDNet (color) 12 x 96;
# ESPCN 64, 32; FSRCNN d=56, s=12, m=4; EDSR baseline 16 blocks x 64. The
# autoencoder's avgpool + pixel_shuffle is the fastest pair in jax on CPU
# (benchmarks/train_speed.py --kinds); transposed convolutions are the
# slowest, their weight gradient being slow in XLA:CPU.
REGISTRY = registry(
    Arch('autoencoder', module='Autoencoder',
         fields=dict(features=Field((16, 32), checks.positive_ints),
                     latent_features=Field(32, checks.positive),
                     blocks_per_level=Field(1, checks.non_negative),
                     downsample=Field('avgpool', _DOWNSAMPLE),
                     upsample=Field('pixel_shuffle', _UPSAMPLE),
                     norm=Field('none', _NORM),
                     activation=Field('relu', _ACTIVATION),
                     output_activation=Field('none', _OUTPUT_ACTIVATION),
                     residual=Field(False, checks.boolean)),
         smoke=dict(features=(8, 16), latent_features=16)),
    Arch('unet', module='UNet',
         fields=dict(features=Field((32, 64, 128), checks.positive_ints),
                     blocks_per_level=Field(2, checks.non_negative),
                     downsample=Field('avgpool', _DOWNSAMPLE),
                     upsample=Field('pixel_shuffle', _UPSAMPLE),
                     norm=Field('none', _NORM),
                     activation=Field('relu', _ACTIVATION),
                     output_activation=Field('none', _OUTPUT_ACTIVATION),
                     residual=Field(True, checks.boolean)),
         smoke=dict(features=(8, 16))),
    Arch('dncnn', module='DnCNN',
         fields=dict(depth=Field(17, at_least(2)),
                     width=Field(64, checks.positive),
                     norm=Field('batch', _NORM),
                     residual=Field(True, checks.boolean)),
         smoke=dict(depth=4, width=8)),
    Arch('ffdnet', module='FFDNet', noise_map=True,
         fields=dict(depth=Field(12, at_least(2)),
                     width=Field(96, checks.positive),
                     norm=Field('none', _NORM),
                     residual=Field(False, checks.boolean)),
         smoke=dict(depth=4, width=8)),
    Arch('espcn', module='ESPCN', low_resolution=True,
         fields=dict(widths=Field((64, 32), checks.positive_ints),
                     activation=Field('tanh', _ACTIVATION),
                     bicubic_skip=Field(False, checks.boolean)),
         smoke=dict(widths=(8, 8))),
    Arch('fsrcnn', module='FSRCNN', low_resolution=True,
         fields=dict(width=Field(56, checks.positive),
                     shrink=Field(12, checks.positive),
                     mapping_layers=Field(4, checks.non_negative),
                     bicubic_skip=Field(False, checks.boolean)),
         smoke=dict(width=8, shrink=4, mapping_layers=1)),
    Arch('edsr', module='EDSR', low_resolution=True,
         fields=dict(num_blocks=Field(16, checks.non_negative),
                     width=Field(64, checks.positive),
                     res_scale=Field(1.0, checks.positive_float),
                     bicubic_skip=Field(False, checks.boolean)),
         smoke=dict(num_blocks=1, width=8)),
)


def names() -> tuple[str, ...]:
  """Every architecture's name, in the order declared."""
  return tuple(REGISTRY)


def get(name: str) -> Arch:
  """The architecture config.model.arch=`name` names."""
  if name not in REGISTRY:
    raise ValueError(f'config.model.arch={name!r}; choose one of {names()}')
  return REGISTRY[name]
