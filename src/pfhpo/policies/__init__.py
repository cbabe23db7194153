"""Hyper-parameter policies: `init`, `propose`, `update` (see `base.py`)."""
from pfhpo.errors import ConfigError
from pfhpo.policies.base import (Feedback, Policy, PolicyState, SCOPES,
                                 mean_entropy)
from pfhpo.policies.fixed import random, static
from pfhpo.policies.gumbel import gumbel
from pfhpo.policies.reinforce import reinforce

__all__ = ['POLICIES', 'Feedback', 'Policy', 'PolicyState', 'SCOPES', 'create',
           'gumbel', 'mean_entropy', 'random', 'reinforce',
           'static']

POLICIES = ('static', 'random', 'reinforce', 'gumbel')


def create(name: str, space, optimizer, scope: str = 'client',
           static_index: int = 0, baseline_decay: float | None = None,
           normalize: bool = False) -> Policy:
  """The policy `--policy=name`; unknown names are errors."""
  if name == 'static':
    return static(space, static_index)
  if name == 'random':
    return random(space)
  if name == 'reinforce':
    return reinforce(space, optimizer, scope, baseline_decay)
  if name == 'gumbel':
    return gumbel(space, optimizer, scope, baseline_decay, normalize)
  raise ConfigError(f'unknown --policy={name!r}; choose one of '
                    f'{", ".join(POLICIES)}')
