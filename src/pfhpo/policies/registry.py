"""The policies by name, each with its own config.

A policy module registers a builder for its name:

    @register('gumbel', GumbelConfig)
    def _build(config: GumbelConfig, context: PolicyContext) -> Policy: ...

`GumbelConfig` is a frozen dataclass holding that policy's settings, with
their defaults and a `help` line each (field metadata); it checks its values
in `__post_init__`. The command line offers every registered config's
fields as flags, so a new policy's settings need no other edit. A policy
that `searches` chooses among the search space's configurations: a space
of one configuration is an error for it, unless it also searches server
axes (its `server_lrs`, `server_momenta`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np

from pfhpo.errors import ConfigError
from pfhpo.policies.base import Policy
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import check_choice
from pfhpo.types import CreditSettings


class PolicyContext(NamedTuple):
  """What a run knows that a policy may be built from."""
  space: SearchSpace
  train_counts: np.ndarray | None = None  # i32[C] training examples n_i
  params_like: Any = None  # the server model's shapes (a pytree)
  groups: tuple[str, ...] | None = None  # the data's client groups
  client_group: np.ndarray | None = None  # i32[C] each client's group
  client_features: np.ndarray | None = None  # f32[C, F] phi (`features.py`)
  server_opt: str = 'sgd'  # the run's server optimizer (`server_optimizer`)


class PolicyEntry(NamedTuple):
  config: type  # the policy's settings: a frozen dataclass
  build: Callable[[Any, PolicyContext], Policy]
  searches: bool
  # config -> the settings of the round's credit it names
  # (`CreditSettings`); None: the round's own choice for the policy
  credit: Callable[[Any], CreditSettings] | None = None


REGISTRY: dict[str, PolicyEntry] = {}


def register(name: str, config: type, searches: bool = True,
             credit: Callable[[Any], CreditSettings] | None = None
             ) -> Callable:
  """Registers the decorated `build(config, context) -> Policy` as `name`
  (`credit(config)`: the round's credit its settings name)."""

  def decorate(build):
    REGISTRY[name] = PolicyEntry(config, build, searches, credit)
    return build

  return decorate


def entry(name: str) -> PolicyEntry:
  check_choice('policy', name, tuple(REGISTRY))
  return REGISTRY[name]


def create(name: str, space: SearchSpace, config: Any = None,
           **context: Any) -> Policy:
  """Policy `name` over `space` with its `config` (None: its defaults);
  `context` holds PolicyContext's other fields where the policy needs them."""
  spec = entry(name)
  config = spec.config() if config is None else config
  if not isinstance(config, spec.config):
    raise TypeError(f'policy {name!r} takes a {spec.config.__name__}, got '
                    f'{type(config).__name__}')
  server_axes = any(getattr(config, name, ()) for name in
                    ('server_lrs', 'server_momenta'))
  if spec.searches and space.size == 1 and not server_axes:
    raise ConfigError(
        f'`policy`={name} chooses among the search space\'s configurations, '
        f'but it holds one; give several `lrs`, `local_steps` or '
        f'`batch_sizes`.')
  return spec.build(config, PolicyContext(space, **context))


def credit_of(name: str, config: Any = None) -> CreditSettings | None:
  """The settings of the round's credit that policy `name`'s `config`
  (None: its defaults) names, or None where the policy leaves it to the
  round (`make_round`)."""
  spec = entry(name)
  if spec.credit is None:
    return None
  return spec.credit(spec.config() if config is None else config)
