"""Policies that do not learn: `static` (tuned-FedAvg baseline) and `random`.

static: every client uses configuration `static_index` every round;
sweeping it over the H candidates is the grid of tuned FedAvg baselines.
With `static_groups`, each client group (`pfhpo.data.groups`) has its own
fixed configuration: the per-group oracle of the comparison.
random: each client draws its configuration uniformly, independently each
round (the random-search baseline of Li et al., "Hyperband", JMLR 2018, run
online); having no preference, it also fine-tunes with a uniform draw.
"""
from __future__ import annotations


import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.policies.base import Policy
from pfhpo.policies.distribution import summarize_probabilities
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.space import SearchSpace, hparams_for
from pfhpo.settings import checked, require, setting


def _nothing(key, num_clients):
  del key, num_clients
  return ()  # nothing to learn


def static(space: SearchSpace, static_index: int | None = None,
           per_client: np.ndarray | None = None) -> Policy:
  """Every client on configuration `static_index` (None: the space must
  hold exactly one), or client i on `per_client[i]` (i32[C]: a fixed
  configuration per client, e.g. per group for the per-group oracle)."""
  if per_client is not None:
    table = np.asarray(per_client, np.int32)  # i32[C]
    require(bool(np.all((table >= 0) & (table < space.size))),
            f'a per-client configuration (`static_groups`) is outside the '
            f'{space.size} configurations of the search space')
    choose = lambda clients: jnp.asarray(table)[clients]
  else:
    if static_index is None:
      require(space.size == 1,
              f'`policy`=static runs one configuration of the {space.size} '
              f'in the search space: pass `static_index` in [0, '
              f'{space.size}), or a space of one configuration.')
      static_index = 0
    require(0 <= static_index < space.size,
            f'`static_index`={static_index} is outside the {space.size} '
            f'configurations of the search space')
    choose = lambda clients: jnp.full(clients.shape, static_index, jnp.int32)

  def propose(state, clients, key):
    del state, key
    choices = choose(clients)
    return hparams_for(space, choices), choices

  probabilities = lambda state, clients: jax.nn.one_hot(choose(clients),
                                                         space.size)
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


@checked
class StaticConfig:
  static_index: int | None = setting(
      None, 'the configuration every client uses (unset: the search space '
      'must hold one)')
  static_groups: tuple[int, ...] | None = setting(
      None, "one configuration per client group (the data's `groups`), "
      'instead of `static_index`')

  def __post_init__(self):
    require(self.static_index is None or self.static_groups is None,
            '`static_index` and `static_groups` are two ways to fix the '
            'configurations; give one')


@checked
class RandomConfig:
  pass


@register('static', StaticConfig, searches=False)
def _static(config: StaticConfig, context: PolicyContext) -> Policy:
  if config.static_groups is None:
    return static(context.space, config.static_index)
  require(context.client_group is not None,
          "`static_groups` needs each client's group (a run gives it; pass "
          '`groups` and `client_group`)')
  groups = context.groups
  require(len(config.static_groups) == len(groups),
          f'`static_groups` gives {len(config.static_groups)} configurations '
          f'for the {len(groups)} client groups ({", ".join(groups)}); give '
          'one per group')
  return static(context.space, per_client=np.asarray(
      config.static_groups)[context.client_group])


@register('random', RandomConfig)
def _random(config: RandomConfig, context: PolicyContext) -> Policy:
  return random(context.space)
