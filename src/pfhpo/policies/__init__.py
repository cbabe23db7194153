"""Hyper-parameter policies: `init`, `propose`, `update` (see `base.py`)."""
from __future__ import annotations

import numpy as np
import optax

from pfhpo.errors import ConfigError
from pfhpo.policies.base import (MEASUREMENTS, Feedback, Policy, PolicyState,
                                 SCOPES, mean_entropy)
from pfhpo.policies.fathom import fathom
from pfhpo.policies.fedex import fedex
from pfhpo.policies.fixed import random, static
from pfhpo.policies.gumbel import gumbel
from pfhpo.policies.pfedex import pfedex
from pfhpo.policies.reinforce import reinforce

__all__ = ['MEASUREMENTS', 'POLICIES', 'Feedback', 'Policy', 'PolicyState',
           'SCOPES', 'create', 'default_optimizer', 'fathom', 'fedex',
           'gumbel', 'mean_entropy', 'pfedex', 'random', 'reinforce', 'static']

POLICIES = ('static', 'random', 'reinforce', 'gumbel', 'fedex', 'pfedex',
            'fathom')
# The policies moved by an optax optimizer (`--policy_opt`, `--policy_lr`),
# with their defaults: ours, and FederatedScope's for pfedex.
OPTIMIZED = {'reinforce': ('sgd', 0.5), 'gumbel': ('sgd', 0.5),
             'pfedex': ('adam', 0.01)}


def default_optimizer(name: str, opt: str | None = None,
                      lr: float | None = None) -> optax.GradientTransformation:
  """`optax.<opt>(lr)` for policy `name`, either defaulted from OPTIMIZED."""
  default_opt, default_lr = OPTIMIZED[name]
  return getattr(optax, opt or default_opt)(default_lr if lr is None else lr)


def create(name: str, space, optimizer=None, scope: str = 'client',
           static_index: int = 0, baseline_decay: float | None = None,
           normalize: bool = False, *, train_counts: np.ndarray | None = None,
           params_like=None, fathom_epochs: float = 1.0) -> Policy:
  """The policy `--policy=name`; unknown names are errors.

  `optimizer` (None: `default_optimizer(name)`) moves reinforce, gumbel and
  pfedex; fathom starts from configuration `static_index`'s learning rate
  and batch size with `fathom_epochs` epochs and needs the clients'
  `train_counts` and the server model's shapes (`params_like`).
  """
  if name not in POLICIES:
    raise ConfigError(f'unknown --policy={name!r}; choose one of '
                      f'{", ".join(POLICIES)}')
  if name in OPTIMIZED and optimizer is None:
    optimizer = default_optimizer(name)
  if name == 'static':
    return static(space, static_index)
  if name == 'random':
    return random(space)
  if name == 'reinforce':
    return reinforce(space, optimizer, scope, baseline_decay)
  if name == 'gumbel':
    return gumbel(space, optimizer, scope, baseline_decay, normalize)
  if name == 'fedex':
    return fedex(space, baseline_decay)
  if name == 'pfedex':
    return pfedex(space, optimizer, baseline_decay)
  if not 0 <= static_index < space.size:
    raise ConfigError(f'--static_index={static_index} is outside the '
                      f'{space.size} configurations of the search space')
  return fathom(float(space.lr[static_index]),
                int(space.batch_size[static_index]), fathom_epochs,
                space.max_steps, space.max_batch, train_counts, params_like)
