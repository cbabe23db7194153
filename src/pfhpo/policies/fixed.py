"""Policies that do not learn: `static` (tuned-FedAvg baseline) and `random`.

static: every client uses configuration `index` every round; sweeping
`index` over the H candidates is the grid of tuned FedAvg baselines.
random: each client draws its configuration uniformly, independently each
round (the random-search baseline of Li et al., "Hyperband", JMLR 2018, run
online).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from pfhpo.errors import ConfigError
from pfhpo.policies.base import Policy, init_state
from pfhpo.space import SearchSpace, hparams_for


def static(space: SearchSpace, index: int = 0) -> Policy:
  if not 0 <= index < space.size:
    raise ConfigError(f'--static_index={index} is outside the {space.size} '
                      f'configurations of the search space')

  def init(key, num_clients):
    del key, num_clients
    return init_state(optax.identity(), 1, space.size)._replace(
        logits=jnp.full((1, space.size), -jnp.inf).at[0, index].set(0.0))

  def propose(state, clients, key):
    del state, key
    choices = jnp.full(clients.shape, index, jnp.int32)
    return hparams_for(space, choices), choices

  return Policy(init, propose, lambda state, feedback: state)


def random(space: SearchSpace) -> Policy:

  def init(key, num_clients):
    del key, num_clients
    return init_state(optax.identity(), 1, space.size)

  def propose(state, clients, key):
    del state
    choices = jax.random.randint(key, clients.shape, 0, space.size)
    return hparams_for(space, choices), choices

  return Policy(init, propose, lambda state, feedback: state)
