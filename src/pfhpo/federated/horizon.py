"""A credit that looks T rounds ahead: the window of past rounds it needs,
and the credit of the oldest round through the rounds after it.

Round t's clients train from theta_t; the server aggregates them with
coefficients c_t and steps, and the rounds after it run as they did:

    S_{t+1}(c) = ServerOpt(S_t, Delta_t(c)),  Delta_t(c) = sum_i w_i c_i (theta_{t,i} - theta_t)
    S_{u+1}(c) = ServerOpt(S_u(c), Delta_u(theta_u(c)))      u = t+1 .. t+T-1
    F_t(c)     = L_val(theta_{t+T}(c))

(S = the server's parameters theta and its optimizer's state; a round
whose aggregate the server rejected leaves S as it was, in the replay as
in the run, so that no credit flows through a model the server threw
away). Client i's T-round credit is dF_t/dc_i at c = t_c 1 (`credit_at`),
and the policy moves its row with it as with the one-round credit
(`pfhpo.policies.gumbel`). T = 1 is the one-round credit through the
server optimizer. A longer horizon answers the short-horizon bias of a
greedy hyper-parameter gradient (Wu, Ren, Liao, Grosse, "Understanding
Short-Horizon Bias in Stochastic Meta-Optimization", ICLR 2018): a step
that raises the next validation loss may still lower the loss a few
rounds on, which one round's credit cannot see.

The rounds after the credited one are taken by an `Estimator`
(`estimators.py`: 'exact', 'first_order' or 'sampled'; `credit.py` builds
the credit from one).

However the later rounds are taken, round t's credit is one backward pass
to v = dF_t/dDelta_t and one pass over its stored client updates,
dF_t/dc_i = s_i <v, Delta_{t,i}> (`horizon_credit`).

The window holds the last T - 1 rounds; the current round closes the
window of the oldest, whose clients' rows the policy then moves (a delay
of T - 1 rounds; no update before the first window closes). It lives in
`RoundState.window`, so a checkpoint holds it and a resumed run continues
mid-window exactly.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.federated.estimators import (Estimator, RoundInput, SampledInput,
                                        zeros_like_rows)
from pfhpo.federated.server import server_step, with_server_hparams
from pfhpo.types import ClientHParams, ServerState

tree_map = jax.tree_util.tree_map


class ClientUpdates(NamedTuple):
  """A round's client updates, what its aggregate is made of."""
  updates: Any  # [k, ...] per leaf: theta_{t,i} - theta_t (0: diverged)
  shares: jax.Array  # f32[k] s_i = w_i / sum of the kept w_j (0: diverged)
  total: Any  # the aggregate sum_i s_i Delta_{t,i}, as the round took it


class RoundRecord(NamedTuple):
  """One round, as the window keeps it."""
  server: ServerState  # the state the round started from
  clients: jax.Array  # i32[k]
  choices: jax.Array  # i32[k]
  failed: jax.Array  # bool[k]: what `Feedback.failed` said of them
  client_loss: jax.Array  # f32[k]
  updated: jax.Array  # bool[]: the server took the round's aggregate
  server_choice: jax.Array  # i32[]: the server configuration drawn (-1: none)
  updates: ClientUpdates
  # 'exact': RoundInput; 'sampled': SampledInput; 'first_order': ()
  inputs: RoundInput | SampledInput | tuple


class Window(NamedTuple):
  """The last W = T - 1 rounds, oldest first ([W, ...] on every leaf)."""
  count: jax.Array  # i32[] rounds held; full at W
  rounds: RoundRecord


def init_window(horizon: int, server: ServerState, table, batch,
                hparams: ClientHParams, key: jax.Array,
                estimator: Estimator) -> Window:
  """An empty window of horizon - 1 rounds of `batch`'s k clients, with
  the server state's, the per-client table's (numpy [C, ...]), the
  hyper-parameters' and the key's shapes, and the inputs that `estimator`
  keeps to train a round again."""
  k = batch.clients.shape[0]
  zeros = jnp.zeros(k, jnp.int32)
  record = RoundRecord(
      server, zeros, zeros, zeros > 0, jnp.zeros(k, jnp.float32),
      jnp.zeros((), bool), jnp.int32(-1), ClientUpdates(
          zeros_like_rows(server.params, 0, k), jnp.zeros(k, jnp.float32),
          tree_map(jnp.zeros_like, server.params)),
      estimator.empty(table, batch, hparams, key))
  return Window(jnp.zeros((), jnp.int32), tree_map(
      lambda a: jnp.zeros((horizon - 1, *jnp.shape(a)), jnp.asarray(a).dtype),
      record))


def close(window: Window, record: RoundRecord, credit: Callable,
          update: Callable, policy_state):
  """The round of `record` closes the window of the oldest round held:
  once the window is full, (the policy state moved by `update(state,
  first, dl_dc)`, dl_dc = `credit(first, later)` of that oldest round
  `first`), else (the state, zeros); and the window with `record` in."""
  first = tree_map(lambda w: w[0], window.rounds)
  later = tree_map(lambda w, r: jnp.concatenate([w[1:], r[None]]),
                   window.rounds, record)  # [W, ...], `record` last
  size = jax.tree_util.tree_leaves(window.rounds)[0].shape[0]

  def credited(state):
    dl_dc = credit(first, later)
    return update(state, first, dl_dc), dl_dc

  state, dl_dc = jax.lax.cond(
      window.count == size, credited,
      lambda state: (state, jnp.zeros(record.clients.shape, jnp.float32)),
      policy_state)
  return state, dl_dc, Window(jnp.minimum(window.count + 1, size), later)


def step_at(server_opt: optax.GradientTransformation,
            axis=None) -> Callable:
  """`step(S, Delta, z)`: the server step of a window's round, at the
  server configuration z that the round drew where the policy chooses it
  (`axis`, a `policies.server_axis.ServerAxis`), else the run's own."""

  def step(server: ServerState, delta, z: jax.Array) -> ServerState:
    if axis is not None:
      server = server._replace(opt_state=with_server_hparams(
          server.opt_state, axis.space, z))
    return server_step(server_opt, server, delta)

  return step


def horizon_credit(server_step_at: Callable, later_round: Callable,
                   val_loss: Callable, first: RoundRecord, later: RoundRecord,
                   at: float) -> jax.Array:
  """dF_t/dc at c = `at` 1 (f32[k]) for the window's oldest round `first`.

  Round t's local training does not depend on c_t, so its aggregate is
  Delta_t(c) = sum_i s_i c_i Delta_{t,i} whatever the estimator, and by
  the chain rule

      dF_t/dc_i = s_i <v, Delta_{t,i}>,   v = dF_t/dDelta_t  at Delta_t(`at` 1)

  one backward pass to v, then one pass over the stored updates.
  `server_step_at(S, Delta, z)` is a round's server step (`step_at`),
  `later_round(S, record)` a later round from server state S (an
  `Estimator`'s replay), each a `jax.checkpoint`; `val_loss(params)` the
  validation loss of the window's last model.
  """
  step = jax.checkpoint(later_round)
  stored = first.updates

  def taken(record, moved, server):
    return tree_map(lambda new, old: jnp.where(record.updated, new, old),
                    moved, server)

  def objective(delta):
    server = taken(first, server_step_at(first.server, delta,
                                         first.server_choice), first.server)
    server, _ = jax.lax.scan(
        lambda s, r: (taken(r, step(s, r), s), None), server, later)
    return val_loss(server.params)

  v = jax.grad(objective)(tree_map(lambda d: at * d, stored.total))
  inner = sum(jnp.tensordot(u, g, axes=g.ndim)
              for u, g in zip(jax.tree_util.tree_leaves(stored.updates),
                              jax.tree_util.tree_leaves(v)))  # f32[k]
  return stored.shares * inner
