"""Policies that do not learn: `static` (tuned-FedAvg baseline) and `random`.

static: every client uses configuration `static_index` every round;
sweeping it over the H candidates is the grid of tuned FedAvg baselines.
random: each client draws its configuration uniformly, independently each
round (the random-search baseline of Li et al., "Hyperband", JMLR 2018, run
online); having no preference, it also fine-tunes with a uniform draw.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from pfhpo.policies.base import Policy, summarize_probabilities
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.space import SearchSpace, hparams_for
from pfhpo.settings import require, setting


def _nothing(key, num_clients):
  del key, num_clients
  return ()  # nothing to learn


def static(space: SearchSpace, static_index: int | None = None) -> Policy:
  """Every client on configuration `static_index` (None: the space must
  hold exactly one)."""
  if static_index is None:
    require(space.size == 1,
            f'`policy`=static runs one configuration of the {space.size} in '
            f'the search space: pass `static_index` in [0, {space.size}), or '
            f'a space of one configuration.')
    static_index = 0
  require(0 <= static_index < space.size,
          f'`static_index`={static_index} is outside the {space.size} '
          f'configurations of the search space')

  def propose(state, clients, key):
    del state, key
    choices = jnp.full(clients.shape, static_index, jnp.int32)
    return hparams_for(space, choices), choices

  probabilities = lambda state, clients: jax.nn.one_hot(
      jnp.full(clients.shape, static_index), space.size)
  return Policy(_nothing, propose, lambda state, feedback: state, propose,
                probabilities, summarize_probabilities(probabilities))


def random(space: SearchSpace) -> Policy:
  """Every client draws a configuration uniformly, every round."""

  def propose(state, clients, key):
    del state
    choices = jax.random.randint(key, clients.shape, 0, space.size)
    return hparams_for(space, choices), choices

  probabilities = lambda state, clients: jnp.full(
      (*clients.shape, space.size), 1.0 / space.size)
  return Policy(_nothing, propose, lambda state, feedback: state, propose,
                probabilities, summarize_probabilities(probabilities))


@dataclasses.dataclass(frozen=True)
class StaticConfig:
  static_index: int | None = setting(
      None, 'the configuration every client uses (unset: the search space '
      'must hold one)')


@dataclasses.dataclass(frozen=True)
class RandomConfig:
  pass


@register('static', StaticConfig, searches=False)
def _static(config: StaticConfig, context: PolicyContext) -> Policy:
  return static(context.space, config.static_index)


@register('random', RandomConfig)
def _random(config: RandomConfig, context: PolicyContext) -> Policy:
  return random(context.space)
