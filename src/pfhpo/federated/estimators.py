"""The three estimators of a T-round credit (`horizon.py`): how the rounds
after the credited round t are taken in F_t(c) = L_val(theta_{t+T}(c)).


* 'exact': `jax.grad` through the T - 1 later rounds, their local
  training from the aggregate each received (the Jacobian of local SGD:
  second-order terms), their aggregation and the server optimizer. Round
  t's own training does not depend on c_t: its clients' updates are kept.
  The later rounds are trained again from S_{t+1}(c) with what each used
  (its clients' rows, data, hyper-parameters and key); each is a
  `jax.checkpoint` inside a `lax.scan`, so the backward pass keeps T
  server states and one round's intermediates at a time.
* 'first_order': local training's Jacobian taken as the identity, so the
  later rounds' aggregates Delta_u stay the values the run measured and
  theta_{t+T} depends on c only through the server optimizer:

      dF_t/dc_i ~= w_i <dL_val/dtheta (theta_{t+T}), dtheta_{t+T}/dDelta_t (theta_{t,i} - theta_t)>

  which for server SGD at learning rate eta is eta w_i <g_{t+T}, Delta_{t,i}>
  (times (1 - beta^T)/(1 - beta) with momentum beta): the inner product of
  a client's round-t update with the validation gradient T rounds later.
  No second-order terms, and no client trained again.
* 'sampled': the exact Jacobian of each later round u estimated from m of
  its k clients, M_u, drawn uniformly without replacement when the round
  ran. The forward value is the stored aggregate, as 'first_order'; the
  derivative is the sample's, scaled to the round:

      Delta_u(theta) = sum_i s_i Delta_{u,i}
                       + (k/m) sum_{j in M_u} s_j (Delta_{u,j}(theta) - sg(Delta_{u,j}(theta)))

  (sg: stop_gradient; s_i the client's share of the aggregate). The
  added term is zero in value, and its Jacobian (k/m) sum_{j in M_u} s_j
  (J_{u,j} - I) is unbiased for the exact sum_i s_i (J_{u,i} - I), the
  part of local training's Jacobian that 'first_order' drops; for T = 2
  the credit is linear in it, so the credit is unbiased too (for T > 2
  the rounds' samples are independent, so their product is). It trains m
  clients again a later round instead of k, and the window keeps only
  their inputs. With m = k it is the exact credit at c = 1; at
  `credit_at` < 1 its later rounds are the run's own, as for
  'first_order', where the exact credit trains them again from the model
  that c gives.

'exact' and 'sampled' train the later rounds' clients outside the round's
`shard_map` (`make_round`), so every estimator runs over a client mesh.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from pfhpo.types import ClientBatch, ClientHParams, ServerState

tree_map = jax.tree_util.tree_map


class RoundInput(NamedTuple):
  """What training a round's clients again takes ('exact'): [k, ...]."""
  rows: Any  # the clients' rows of per-client state before the round
  train: ClientBatch
  hparams: ClientHParams
  key: jax.Array  # the round's training key


class SampledInput(NamedTuple):
  """What training m of a round's k clients again takes ('sampled'):
  [m, ...]."""
  positions: jax.Array  # i32[m] the sampled clients' places in the round
  rows: Any
  train: ClientBatch
  hparams: ClientHParams
  keys: jax.Array  # [m] their training keys


def sample_inputs(key: jax.Array, m: int, rows, train: ClientBatch,
                  hparams: ClientHParams, keys: jax.Array) -> SampledInput:
  """m of the round's k clients (all of them where m >= k), uniformly
  without replacement, with what each trained on: the [k, ...] `rows`,
  `train`, `hparams` and `keys`."""
  positions = jax.random.permutation(key, keys.shape[0])[:m]  # i32[min(m, k)]
  take = lambda tree: tree_map(lambda a: a[positions], tree)
  return SampledInput(positions, take(rows), take(train), take(hparams),
                      keys[positions])


class Estimator(NamedTuple):
  """How a T-round credit takes the rounds after the credited one: what a
  window keeps of each round to train it again, and the replay of a later
  round from a server state.

    inputs = empty(table, batch, hparams, key)    (a window's zeros)
    inputs = keep(key, rows, train, hparams, train_key, keys)
    step   = replay(cohort, server_step_at)       step(S, record) -> S
  """
  empty: Callable
  keep: Callable
  replay: Callable


def zeros_like_rows(tree, lead: int, n: int):
  """`tree`'s leaves with their first `lead` axes replaced by one of n."""
  return tree_map(lambda a: jnp.zeros((n, *a.shape[lead:]), a.dtype), tree)


def exact() -> Estimator:
  """Every later round's clients trained again with what they used, from
  the model the credited coefficients give: `jax.grad` through their local
  training (second order)."""

  def empty(table, batch, hparams, key):
    return RoundInput(zeros_like_rows(table, 1, batch.clients.shape[0]),
                      batch.train, hparams, key)

  def keep(key, rows, train, hparams, train_key, keys):
    return RoundInput(rows, train, hparams, train_key)

  def replay(cohort, server_step_at):
    def step(server: ServerState, record) -> ServerState:  # horizon.RoundRecord
      again = record.inputs
      k = again.hparams.lr.shape[0]
      delta, _, _ = cohort(server, again.rows, again.train, again.hparams,
                           jax.random.split(again.key, k), jnp.ones(k))
      return server_step_at(server, delta, record.server_choice)
    return step

  return Estimator(empty, keep, replay)


def first_order() -> Estimator:
  """Local training's Jacobian taken as the identity: a later round's
  aggregate is the value the run measured; no client trains again."""

  def replay(cohort, server_step_at):
    def step(server: ServerState, record) -> ServerState:  # horizon.RoundRecord
      return server_step_at(server, record.updates.total,
                            record.server_choice)
    return step

  return Estimator(lambda table, batch, hparams, key: (),
                   lambda key, rows, train, hparams, train_key, keys: (),
                   replay)


def sampled(m: int) -> Estimator:
  """The stored aggregate, its Jacobian estimated without bias from m of
  the round's k clients (at most k) trained again (`sample_inputs`)."""

  def empty(table, batch, hparams, key):
    n = min(m, batch.clients.shape[0])
    return SampledInput(jnp.zeros(n, jnp.int32), zeros_like_rows(table, 1, n),
                        zeros_like_rows(batch.train, 1, n),
                        zeros_like_rows(hparams, 1, n),
                        jax.random.split(key, n))

  def keep(key, rows, train, hparams, train_key, keys):
    return sample_inputs(key, m, rows, train, hparams, keys)

  def replay(cohort, server_step_at):
    def step(server: ServerState, record) -> ServerState:  # horizon.RoundRecord
      again = record.inputs
      k, n = record.updates.shares.shape[0], again.positions.shape[0]
      _, trained, _ = cohort(server, again.rows, again.train, again.hparams,
                             again.keys, jnp.ones(n))
      scaled = k / n * record.updates.shares[again.positions]  # f32[n]
      delta = tree_map(
          lambda d, u: d + jnp.tensordot(
              scaled, u - jax.lax.stop_gradient(u), axes=1),
          record.updates.total, trained.update)
      return server_step_at(server, delta, record.server_choice)
    return step

  return Estimator(empty, keep, replay)
