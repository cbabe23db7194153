"""Policies that do not learn: `static` (tuned-FedAvg baseline) and `random`.

static: every client uses configuration `index` every round; sweeping
`index` over the H candidates is the grid of tuned FedAvg baselines.
random: each client draws its configuration uniformly, independently each
round (the random-search baseline of Li et al., "Hyperband", JMLR 2018, run
online); having no preference, it also fine-tunes with a uniform draw.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from pfhpo.errors import ConfigError
from pfhpo.policies.base import Policy
from pfhpo.space import SearchSpace, hparams_for


def static(space: SearchSpace, index: int = 0) -> Policy:
  if not 0 <= index < space.size:
    raise ConfigError(f'--static_index={index} is outside the {space.size} '
                      f'configurations of the search space')

  def init(key, num_clients):
    del key, num_clients
    return ()  # nothing to learn

  def propose(state, clients, key):
    del state, key
    choices = jnp.full(clients.shape, index, jnp.int32)
    return hparams_for(space, choices), choices

  return Policy(init, propose, lambda state, feedback: state,
                lambda state, clients, key: propose(state, clients, key),
                lambda state, clients: jax.nn.one_hot(
                    jnp.full(clients.shape, index), space.size))


def random(space: SearchSpace) -> Policy:

  def init(key, num_clients):
    del key, num_clients
    return ()  # nothing to learn

  def propose(state, clients, key):
    del state
    choices = jax.random.randint(key, clients.shape, 0, space.size)
    return hparams_for(space, choices), choices

  return Policy(init, propose, lambda state, feedback: state, propose,
                lambda state, clients: jnp.full(
                    (*clients.shape, space.size), 1.0 / space.size))
