"""Settings records: frozen dataclasses whose fields carry a help line.

Every config in pfhpo (the experiment's groups, each policy's and each
algorithm's own, the comparison's grid) is a frozen dataclass of `setting`s
made by `checked`, which rejects a float setting that is not finite (inf
or nan, alone or in a list) and then runs the config's own `__post_init__`
checks (with `require`), so that a config that exists is a valid one. The command
line is generated from these fields (`pfhpo.experiment.flags`): a setting's
name is its flag's name, its help the flag's help.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from typing import Any

from pfhpo.errors import ConfigError


def setting(default: Any, help: str) -> Any:  # noqa: A002 (argparse's word)
  """A dataclass field with a default and a one-line `help`."""
  return dataclasses.field(default=default, metadata={'help': help})


def checked(cls: type) -> type:
  """`cls` as a frozen dataclass whose float settings must be finite,
  checked before its own `__post_init__`."""
  own = cls.__dict__.get('__post_init__')

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      items = value if isinstance(value, tuple) else (value,)
      require(not any(isinstance(v, float) and not math.isfinite(v)
                      for v in items),
              f'`{f.name}` must be finite, got {value}; give a number')
    if own is not None:
      own(self)

  cls.__post_init__ = __post_init__
  return dataclasses.dataclass(frozen=True)(cls)


def default_of(config, name: str) -> Any:
  """The default of setting `name` of a config (its class or an instance)."""
  return config.__dataclass_fields__[name].default


def param_default(function, name: str) -> Any:
  """The default of parameter `name` of `function`: a config whose
  settings are a builder's parameters takes its defaults from there, so
  that they are written once."""
  return inspect.signature(function).parameters[name].default


def check_choice(name: str, value, allowed) -> None:
  """A ConfigError naming setting `name` unless `value` is in `allowed`."""
  require(value in allowed, f'unknown `{name}`={value!r}; choose one of '
          f'{", ".join(map(str, allowed))}')


def require(ok: bool, message: str) -> None:
  """Raises ConfigError(message) unless `ok`. Messages name parameters in
  backquotes (`lrs`); the command line spells them as flags (--lrs)."""
  if not ok:
    raise ConfigError(message)


def coerce(value: Any, kind: Any, name: str) -> Any:
  """`value` (a string from a flag, or a TOML value) as type `kind`."""
  optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
  if optional:
    if value is None or (isinstance(value, str) and value.lower() == 'none'):
      return None
    kind = next(a for a in kind.__args__ if a is not type(None))
  if typing.get_origin(kind) is tuple:
    item = typing.get_args(kind)[0]
    parts = ([v for v in value.split(',') if v.strip()]
             if isinstance(value, str) else value)
    try:
      return tuple(coerce(v, item, name) for v in parts)
    except (ConfigError, TypeError):
      raise ConfigError(
          f'`{name}`={value!r} is not a comma-separated list of '
          f'{_PLURALS[item]}, e.g. `{name}`={_EXAMPLES[item]}') from None
  if kind is bool:
    words = {'1': True, 'true': True, 'yes': True, '0': False,
             'false': False, 'no': False}
    text = str(value).lower()
    require(text in words, f'`{name}`={value!r} is not a boolean; use 1 or 0')
    return words[text]
  try:
    if isinstance(value, bool) or (kind is int and isinstance(value, float)):
      raise ValueError
    return kind(value)
  except (TypeError, ValueError):
    raise ConfigError(f'`{name}`={value!r} is not {_WORDS[kind]}') from None


_WORDS = {int: 'an integer', float: 'a number', str: 'a string'}
_PLURALS = {int: 'integers', float: 'numbers', str: 'strings'}
_EXAMPLES = {int: '1,5,10', float: '0.01,0.1', str: 'a,b'}
