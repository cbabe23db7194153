"""A population of P runs on one compiled round: population-based training
(M. Jaderberg et al. 2017, https://arxiv.org/abs/1711.09846) of federated
runs, as FedPop-G does it (H. Chen, X. Chen, Y. Li, J. Wu, V. Tresp, et
al., AAAI 2025, https://arxiv.org/abs/2308.08634).

Member m is a whole round state (server model, server optimizer state,
its policy's state and the credit's window), and the round is vmapped
over the members: every member trains the round's clients from its own
server model, with its own policy's configurations. After the round,
member m's score is the validation loss of its server model,
L_m = L_val(theta_m). Every `exploit_every` rounds,

    exploit:  the worst k members copy a random one of the best k (its
              whole state), k = min(ceil(q P), floor(P / 2));
    explore:  each copy's policy state (and server configuration, where
              the members search one) moves away from its source's, by
              the member policy's own `Members.explore`.

The member policies: FedPop's (`pfhpo.fedpop.members`: a base client
configuration and slots around it, moved to neighbours on the grid) and
the method's (`pfhpo.policies.gumbel.gumbel_population`: the logits of a
policy that learns by credit, perturbed). The run's model is the best
member's by validation (its `server` and `policy` in the outer
`RoundState`), and the round's cost is every member's local steps. A
population of one (searching no server configuration) is the member's
run alone.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pfhpo.federated.round import FederatedAlgorithm
from pfhpo.federated.server import with_server_hparams
from pfhpo.policies.base import Members, Policy
from pfhpo.settings import require
from pfhpo.types import Params, RoundState, ValBatch


class Population(NamedTuple):
  members: RoundState  # every leaf with a leading member axis [P]
  server: jax.Array  # i32[P] each member's server configuration (0: none)
  val_loss: jax.Array  # f32[P] each member's L_val(theta_m), last round
  round: jax.Array  # i32[] rounds run


def member_keys(key: jax.Array, size: int) -> jax.Array:
  """Member m's key of `key`: member 0's is `key` itself (a population of
  one draws what a single run draws), member m's fold_in(key, m)."""
  return jnp.stack([key] + [jax.random.fold_in(key, m)
                            for m in range(1, size)])


def _take(tree, m: jax.Array):
  return jax.tree_util.tree_map(lambda a: a[m], tree)


def _where(mask: jax.Array, new, old):
  """Per member (bool[P]), `new`'s leaves where set, else `old`'s."""
  return jax.tree_util.tree_map(
      lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b),
      new, old)


def exploit(members: RoundState, server: jax.Array, val_loss: jax.Array,
            key: jax.Array, quantile: float
            ) -> tuple[RoundState, jax.Array, jax.Array]:
  """The worst k members (by `val_loss`, f32[P]) replaced by copies of
  random ones of the best k: (members, i32[P] server configurations,
  bool[P] which were replaced)."""
  p = val_loss.shape[0]
  k = min(math.ceil(quantile * p), p // 2)
  order = jnp.argsort(jnp.where(jnp.isfinite(val_loss), val_loss, jnp.inf))
  worst = order[p - k:]
  source = order[:k][jax.random.randint(key, (k,), 0, k)]
  index = jnp.arange(p).at[worst].set(source)
  return (_take(members, index), server[index],
          jnp.zeros(p, bool).at[worst].set(True))


def explore(members: RoundState, server: jax.Array, replaced: jax.Array,
            key: jax.Array, spec: Members) -> tuple[RoundState, jax.Array]:
  """The `replaced` members (bool[P]) moved by the member policy's
  explore: their policy states and server configurations (i32[P]), the
  latter written into their server optimizers where the members search
  them. The weights stay."""

  def move(state: RoundState, s: jax.Array, key: jax.Array):
    policy, s = spec.explore(state.policy, s, key)
    state = state._replace(policy=policy)
    if spec.server is None:
      return state, s
    return state._replace(server=state.server._replace(
        opt_state=with_server_hparams(state.server.opt_state, spec.server,
                                      s))), s

  moved, moved_server = jax.vmap(move)(
      members, server, jax.random.split(key, server.shape[0]))
  return (_where(replaced, moved, members),
          jnp.where(replaced, moved_server, server))


def check_population(policy: Policy, name: str, algorithm: str,
                     mesh: Mesh | None) -> None:
  """What a population needs of a run: FedAvg (an algorithm with per-client
  rows would need them per member) on one device."""
  if policy.population is None:
    return
  require(algorithm == 'fedavg',
          f'`policy`={name} trains a population of FedAvg runs; '
          f'`algorithm`={algorithm} keeps per-client state that each member '
          'would need its own copy of: use `algorithm`=fedavg')
  require(mesh is None or mesh.size == 1,
          f'`policy`={name} runs its population on one device, not the '
          f'{mesh.size if mesh else 1} the clients would be sharded over; '
          'run it on one (CUDA_VISIBLE_DEVICES)')


def population_round(member: FederatedAlgorithm, spec: Members,
                     val_loss: Callable[[Params, ValBatch], jax.Array]
                     ) -> FederatedAlgorithm:
  """The round of `spec.size` members, each `member`'s round (its server
  optimizer injected where `spec.server` searches it),
  `val_loss(server params, ValBatch) -> f32[]` their score.
  Algorithms that keep per-client rows are not supported (their rows
  would be the members'). A population of one that searches no server
  configuration is `member`'s round itself: the run alone, bit for bit
  (vmapped over one member it would differ in the last bits)."""
  size = spec.size
  if size == 1 and spec.server is None:
    return member

  def init(key: jax.Array, num_clients: int, batch=None):
    members = jax.vmap(lambda k: member.init(k, num_clients, batch)[0])(
        member_keys(key, size))
    server = jnp.zeros(size, jnp.int32)
    if spec.server is not None:  # each member's drawn uniformly
      server = jax.random.randint(jax.random.fold_in(key, size), (size,), 0,
                                  spec.server.size)
      members = members._replace(server=members.server._replace(
          opt_state=jax.vmap(lambda o, s: with_server_hparams(
              o, spec.server, s))(members.server.opt_state, server)))
    if spec.spread and size > 1:  # member 0 as a run alone starts
      members, server = explore(members, server, jnp.arange(size) > 0,
                                jax.random.fold_in(key, size + 1), spec)
    population = Population(members, server, jnp.zeros(size, jnp.float32),
                            jnp.int32(0))
    return _outer(population, jnp.int32(0)), ()

  def apply(state: RoundState, rows, batch, key: jax.Array):
    population = state.population
    members, _, metrics = jax.vmap(member.apply, in_axes=(0, None, None, 0))(
        population.members, rows, batch, member_keys(key, size))
    loss = jax.vmap(val_loss, in_axes=(0, None))(members.server.params,
                                                  batch.val)  # f32[P]
    loss = jnp.where(jnp.isfinite(loss), loss, jnp.inf)
    rounds = population.round + 1
    server = population.server
    if size > 1:
      exploit_key, explore_key = jax.random.split(
          jax.random.fold_in(key, size))
      moved, moved_server, replaced = exploit(members, server, loss,
                                              exploit_key, spec.quantile)
      moved, moved_server = explore(moved, moved_server, replaced,
                                    explore_key, spec)
      now = rounds % spec.exploit_every == 0
      members = _where(jnp.full(size, now), moved, members)
      server = jnp.where(now, moved_server, server)
    best = jnp.argmin(loss)  # never replaced: the best k stay
    metrics = _take(metrics, best)._replace(
        local_steps_total=jnp.sum(metrics.local_steps_total, axis=0))
    return _outer(Population(members, server, loss, rounds), best), rows, \
        metrics

  return FederatedAlgorithm(init, apply)


def _outer(population: Population, best: jax.Array) -> RoundState:
  """The run's state: the best member's server and policy, and all."""
  chosen = _take(population.members, best)
  return RoundState(chosen.server, chosen.policy, (), population)
