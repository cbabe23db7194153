"""FedPop's member policy (FedPop-L) and the population it belongs to.

Federated Population-based Hyperparameter Tuning. H. Chen, X. Chen, Y. Li,
J. Wu, V. Tresp, et al. AAAI 2025. https://arxiv.org/abs/2308.08634

FedPop trains a population of P members at once (`pfhpo.federated.population`,
FedPop-G), each a server model with its own hyper-parameters. This module
is one member's client side. A member holds a base configuration b and C
slots, each a configuration near b (slot 0 is b itself). Each round, client
c trains with slot pi_r(c), pi_r a fresh permutation (so a slot is not tied
to one client's data), and each slot scores the discounted mean of the
validation losses l it was measured at since it last changed,

    S_j = sum_t gamma^(T - t) l_{j,t} / sum_t gamma^(T - t),   gamma = 0.9

(l: the client's validation loss of its own trained model; a failed client
scores BIG). Every `local_every` rounds the ceil(q n) worst of the n slots
measured each copy a random one of the ceil(q n) best and move it to a
neighbour (`neighbour`), and every score starts again (FedPop-L's exploit
and explore). The member prefers its best slot: its personal models'
configuration. `local_every` = 0 keeps every slot at b: the member is a
static run of b.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


from pfhpo.policies.base import Members, Policy, check_members, failed_of
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.space import (SearchSpace, ServerSpace, hparams_for,
                                 server_space)
from pfhpo.settings import checked, require, setting
from pfhpo.types import Feedback

DISCOUNT = 0.9  # gamma of a slot's score (FedPop's discounted mean)
BIG = 1e9  # a failed client's validation loss


class Slots(NamedTuple):
  """One member's client-side state."""
  key: jax.Array  # the rounds' permutations derive from (key, round)
  round: jax.Array  # i32[] rounds seen
  base: jax.Array  # i32[] b, the member's base configuration
  slots: jax.Array  # i32[C] each slot's configuration
  num: jax.Array  # f32[C] sum_t gamma^(T - t) l_{j,t}
  den: jax.Array  # f32[C] sum_t gamma^(T - t)
  best: jax.Array  # i32[] the best-scored slot at the last exploit


def axis_sizes(space: SearchSpace) -> tuple[int, ...]:
  """The sizes of the space's axes (lr, steps, batch, tuned): FedPop moves
  a configuration along them."""
  sizes = tuple(len(np.unique(a)) for a in (space.lr, space.local_steps,
                                            space.batch_size, space.tuned))
  require(math.prod(sizes) == space.size,
          'FedPop moves configurations along the axes of a grid space; '
          'this space is not a full grid')
  return sizes


def neighbour(key: jax.Array, z: jax.Array, grid: tuple[int, ...],
              resample: float) -> jax.Array:
  """Configuration z (i32[]) of a row-major grid of axis sizes `grid`, each
  axis drawn uniformly with probability `resample`, else moved one step
  up or down (half each; at an end of the axis it stays): PBT's explore
  on a grid (Jaderberg et al. 2017)."""
  index = jnp.stack(jnp.unravel_index(z, grid))  # i32[A]
  sizes = jnp.asarray(grid)
  draw, step, fresh = jax.random.split(key, 3)
  moved = jnp.clip(index + jnp.where(
      jax.random.bernoulli(step, 0.5, index.shape), 1, -1), 0, sizes - 1)
  afresh = jax.random.randint(fresh, index.shape, 0, sizes)
  index = jnp.where(jax.random.uniform(draw, index.shape) < resample,
                    afresh, moved)
  return jnp.ravel_multi_index(tuple(index), grid, mode='clip')


def fedpop(space: SearchSpace, population: int = 4, exploit_every: int = 10,
           local_every: int = 5, quantile: float = 0.25,
           resample: float = 0.2,
           server: ServerSpace | None = None) -> Policy:
  """A FedPop member over `space` (FedPop-L every `local_every` rounds, 0:
  never), in a population of `population` whose worst ceil(`quantile` P)
  take the best's weights and hyper-parameters every `exploit_every` rounds
  and move them, each axis drawn afresh with probability `resample`, over
  the client space and the `server` configurations."""
  check(population, exploit_every, local_every, quantile, resample)
  grid = axis_sizes(space)

  def reseed(state: Slots, base: jax.Array, key: jax.Array) -> Slots:
    c = state.slots.shape[0]
    around = jax.vmap(lambda k: neighbour(k, base, grid, resample))(
        jax.random.split(key, c))
    # each slot a neighbour of the base, as in FedPop's released code (the
    # first at the base itself); all at the base where FedPop-L never runs
    slots = jnp.where(local_every > 0, around, base).at[0].set(base)
    zeros = jnp.zeros(c, jnp.float32)
    return state._replace(base=base, slots=slots.astype(jnp.int32),
                          num=zeros, den=zeros, best=jnp.int32(0))

  def explore(state: Slots, s: jax.Array, key: jax.Array):
    """A copy's base configuration and server configuration moved to
    neighbours on their grids, its slots reseeded around the new base."""
    base_key, server_key, slot_key = jax.random.split(key, 3)
    state = reseed(state, neighbour(base_key, state.base, grid, resample),
                   slot_key)
    if server is not None:
      s = neighbour(server_key, s, server.shape, resample)
    return state, s

  def init(key, num_clients):
    base_key, slot_key, perm_key = jax.random.split(key, 3)
    empty = Slots(perm_key, jnp.int32(0), jnp.int32(0),
                  jnp.zeros(num_clients, jnp.int32),
                  jnp.zeros(num_clients), jnp.zeros(num_clients),
                  jnp.int32(0))
    return reseed(empty, jax.random.randint(base_key, (), 0, space.size),
                  slot_key)

  def slot_of(state: Slots, clients: jax.Array) -> jax.Array:
    """i32[K] the slot each of the round's clients trains with."""
    perm = jax.random.permutation(jax.random.fold_in(state.key, state.round),
                                  state.slots.shape[0])
    return perm[clients]

  def propose(state: Slots, clients, key):
    del key  # the slots' permutation is the state's
    choices = state.slots[slot_of(state, clients)]
    return hparams_for(space, choices), choices

  def update(state: Slots, fb: Feedback) -> Slots:
    s = slot_of(state, fb.clients)  # i32[K]
    loss = jnp.where(failed_of(fb) | ~jnp.isfinite(fb.local_val_loss),
                     BIG, fb.local_val_loss)
    state = state._replace(
        round=state.round + 1,
        num=state.num.at[s].set(DISCOUNT * state.num[s] + loss),
        den=state.den.at[s].set(DISCOUNT * state.den[s] + 1.0))
    if local_every == 0:
      return state
    moved = exploit_slots(state, jax.random.fold_in(state.key, -state.round))
    now = state.round % local_every == 0
    return jax.tree_util.tree_map(lambda a, b: jnp.where(now, a, b), moved,
                                  state)

  def exploit_slots(state: Slots, key: jax.Array) -> Slots:
    """The worst ceil(q n) measured slots each copy a random one of the
    best ceil(q n), moved to a neighbour; every score starts again."""
    c = state.slots.shape[0]
    measured = state.den > 0
    score = jnp.where(measured, state.num / jnp.where(measured, state.den, 1),
                      jnp.inf)
    order = jnp.argsort(score)  # measured slots first, best first
    n = jnp.sum(measured)
    k = jnp.ceil(quantile * n).astype(jnp.int32)
    position = jnp.zeros(c, jnp.int32).at[order].set(jnp.arange(c))
    worst = (position >= jnp.maximum(k, n - k)) & (position < n)
    pick, move = jax.random.split(key)
    source = order[jax.random.randint(pick, (c,), 0, jnp.maximum(k, 1))]
    moved = jax.vmap(lambda key, z: neighbour(key, z, grid, resample))(
        jax.random.split(move, c), state.slots[source])
    zeros = jnp.zeros(c, jnp.float32)
    return state._replace(
        slots=jnp.where(worst, moved, state.slots).astype(jnp.int32),
        num=zeros, den=zeros,
        best=jnp.where(n > 0, order[0], state.best).astype(jnp.int32))

  def prefer(state: Slots, clients, key):
    del key
    choices = jnp.full(clients.shape, state.slots[state.best], jnp.int32)
    return hparams_for(space, choices), choices

  def summarize(state: Slots, clients) -> dict:
    del clients
    return {'base': space.describe(int(state.base)),
            'best_slot': space.describe(int(state.slots[state.best])),
            'slots': np.bincount(np.asarray(state.slots),
                                 minlength=space.size).tolist()}

  return Policy(init, propose, update, prefer, None, summarize,
                frozenset({'local_val'}),
                population=Members(population, exploit_every, quantile,
                                   server, explore))


def check(population: int, exploit_every: int, local_every: int,
          quantile: float, resample: float) -> None:
  check_members(population, exploit_every, quantile)
  require(local_every >= 0,
          f'`local_every` must be >= 0 rounds (0: never), got {local_every}')
  require(0 <= resample <= 1,
          f'`resample_probability` must be in [0, 1], got {resample}')


@checked
class FedPopConfig:
  population: int = setting(4, 'members of the population, each a server '
                            'model with its own hyper-parameters')
  exploit_every: int = setting(
      10, 'rounds between exploit-and-explore steps of the population '
      '(FedPop-G)')
  local_every: int = setting(
      5, "rounds between a member's clients' exploit-and-explore steps "
      '(FedPop-L; 0: never, every client on the base configuration)')
  quantile: float = setting(
      0.25, 'the worst fraction of members (and of slots) that copy one of '
      'the best fraction')
  resample_probability: float = setting(
      0.2, 'the probability that explore draws an axis afresh instead of '
      'moving it one step')
  server_lrs: tuple[float, ...] = setting(
      (), "server learning rates the population searches (unset: the run's "
      '`server_lr`)')
  server_momenta: tuple[float, ...] = setting(
      (), "server momenta the population searches (unset: the run's)")

  def __post_init__(self):
    check(self.population, self.exploit_every, self.local_every,
          self.quantile, self.resample_probability)
    server_space(self.server_lrs, self.server_momenta, 'sgd')


@register('fedpop', FedPopConfig, searches=False)
def _build(config: FedPopConfig, context: PolicyContext) -> Policy:
  server = server_space(config.server_lrs, config.server_momenta,
                        context.server_opt)
  require(context.space.size > 1 or server is not None,
          '`policy`=fedpop searches the client configurations and the '
          'server ones, but the search space holds one client configuration '
          'and no server axis is given; give several `lrs`, `local_steps` '
          'or `batch_sizes`, or `server_lrs`/`server_momenta`.')
  return fedpop(context.space, config.population, config.exploit_every,
                config.local_every, config.quantile,
                config.resample_probability, server)
