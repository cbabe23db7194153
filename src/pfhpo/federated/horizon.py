"""A credit that looks K rounds ahead: the window of past rounds it needs,
and its two estimators.

Round t's clients train from theta_t; the server aggregates them with
coefficients c_t and steps, and the rounds after it run as they did:

    S_{t+1}(c) = ServerOpt(S_t, Delta_t(c)),  Delta_t(c) = sum_i w_i c_i (theta_{t,i} - theta_t)
    S_{u+1}(c) = ServerOpt(S_u(c), Delta_u(theta_u(c)))      u = t+1 .. t+K-1
    F_t(c)     = L_val(theta_{t+K}(c))

(S = the server's parameters theta and its optimizer's state; a round
whose aggregate the server rejected leaves S as it was, in the replay as
in the run, so that no credit flows through a model the server threw
away). Client i's K-round credit is dF_t/dc_i at c = t_c 1 (`credit_at`),
and the policy moves its row with it as with the one-round credit
(`pfhpo.policies.gumbel`). K = 1 is the one-round credit through the
server optimizer. A longer horizon answers the short-horizon bias of a
greedy hyper-parameter gradient (Wu, Ren, Liao, Grosse, "Understanding
Short-Horizon Bias in Stochastic Meta-Optimization", ICLR 2018): a step
that raises the next validation loss may still lower the loss a few
rounds on, which one round's credit cannot see.

Two estimators of dF_t/dc (`HORIZON_CREDITS` in `pfhpo.policies.base`):

* 'exact': `jax.grad` through the K - 1 later rounds, their local
  training from the aggregate each received (the Jacobian of local SGD:
  second-order terms), their aggregation and the server optimizer. Round
  t's own training does not depend on c_t: its clients' updates are kept.
  The later rounds are trained again from S_{t+1}(c) with what each used
  (its clients' rows, data, hyper-parameters and key); each is a
  `jax.checkpoint` inside a `lax.scan`, so the backward pass keeps K
  server states and one round's intermediates at a time.
* 'first_order': local training's Jacobian taken as the identity, so the
  later rounds' aggregates Delta_u stay the values the run measured and
  theta_{t+K} depends on c only through the server optimizer:

      dF_t/dc_i ~= w_i <dL_val/dtheta (theta_{t+K}), dtheta_{t+K}/dDelta_t (theta_{t,i} - theta_t)>

  which for server SGD at learning rate eta is eta w_i <g_{t+K}, Delta_{t,i}>
  (times (1 - beta^K)/(1 - beta) with momentum beta): the inner product of
  a client's round-t update with the validation gradient K rounds later.
  No second-order terms, and no client trained again.

The window holds the last K - 1 rounds; the current round closes the
window of the oldest, whose clients' rows the policy then moves (a delay
of K - 1 rounds; no update before the first window closes). It lives in
`RoundState.window`, so a checkpoint holds it and a resumed run continues
mid-window exactly.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.federated.server import server_step
from pfhpo.types import ClientBatch, ClientHParams, ServerState

tree_map = jax.tree_util.tree_map


class RoundInput(NamedTuple):
  """What training a round's clients again takes ('exact'): [k, ...]."""
  rows: Any  # the clients' rows of per-client state before the round
  train: ClientBatch
  hparams: ClientHParams
  key: jax.Array  # the round's training key


class ClientUpdates(NamedTuple):
  """A round's client updates, what its aggregate is made of."""
  updates: Any  # [k, ...] per leaf: theta_{t,i} - theta_t (0: diverged)
  shares: jax.Array  # f32[k] w_i / sum of the kept w_j (0: diverged)


class RoundRecord(NamedTuple):
  """One round, as the window keeps it."""
  server: ServerState  # the state the round started from
  clients: jax.Array  # i32[k]
  choices: jax.Array  # i32[k]
  failed: jax.Array  # bool[k]: what `Feedback.diverged` said of them
  client_loss: jax.Array  # f32[k]
  updated: jax.Array  # bool[]: the server took the round's aggregate
  updates: ClientUpdates
  inputs: RoundInput | tuple  # 'exact' only; () for 'first_order'


class Window(NamedTuple):
  """The last W = K - 1 rounds, oldest first ([W, ...] on every leaf)."""
  count: jax.Array  # i32[] rounds held; full at W
  rounds: RoundRecord


def init_window(horizon: int, server: ServerState, table, batch,
                hparams: ClientHParams, key: jax.Array, exact: bool) -> Window:
  """An empty window of horizon - 1 rounds of `batch`'s k clients, with
  the server state's, the per-client table's (numpy [C, ...]), the
  hyper-parameters' and the key's shapes; `exact`: with their inputs."""
  k = batch.clients.shape[0]
  like = lambda tree, lead: tree_map(
      lambda a: jnp.zeros((k, *a.shape[lead:]), a.dtype), tree)
  zeros = jnp.zeros(k, jnp.int32)
  record = RoundRecord(
      server, zeros, zeros, zeros > 0, jnp.zeros(k, jnp.float32),
      jnp.zeros((), bool), ClientUpdates(like(server.params, 0),
                                         jnp.zeros(k, jnp.float32)),
      RoundInput(like(table, 1), batch.train, hparams, key) if exact else ())
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


def aggregate_step(server_opt: optax.GradientTransformation,
                   params_form: bool) -> Callable:
  """`step(S, updates, coeffs)`: the server step of a round's client
  updates, Delta(c) = sum_i s_i c_i Delta_i (None: c = 1), or for the
  'params' form of the aggregate (theta_g(c) = sum_i s_i c_i theta_i) its
  change from theta, (sum_i s_i c_i - 1) theta + Delta(c)."""

  def step(server: ServerState, stored: ClientUpdates,
           coeffs: jax.Array | None = None) -> ServerState:
    sc = stored.shares if coeffs is None else stored.shares * coeffs  # f32[k]
    delta = tree_map(lambda u: jnp.tensordot(sc, u, axes=1), stored.updates)
    if params_form and coeffs is not None:
      scale = jnp.sum(sc) - 1.0
      delta = tree_map(lambda d, p: d + scale * p, delta, server.params)
    return server_step(server_opt, server, delta)

  return step


def replay_step(estimator: str, aggregate: Callable, cohort: Callable,
                server_opt: optax.GradientTransformation) -> Callable:
  """`step(S, record)`: a round after the credited one, from server state S:
  its stored aggregate (`aggregate`, 'first_order'), or its clients trained
  again with what they used (`cohort`, 'exact')."""

  def step(server: ServerState, record: RoundRecord) -> ServerState:
    if estimator == 'first_order':
      return aggregate(server, record.updates)
    again = record.inputs
    delta, _, _, _ = cohort(server, again.rows, again.train, again.hparams,
                            again.key, jnp.ones(again.hparams.lr.shape))
    return server_step(server_opt, server, delta)

  return step


def horizon_credit(aggregate: Callable, later_round: Callable,
                   val_loss: Callable, first: RoundRecord,
                   later: RoundRecord, at: float) -> jax.Array:
  """dF_t/dc at c = `at` 1 (f32[k]) for the window's oldest round `first`.

  Round t's local training does not depend on c_t, so its step is
  `aggregate(S, first.updates, c)` (`aggregate_step`) whatever the
  estimator; `later_round(S, record)` is a later round from server state S
  (its stored aggregate again for 'first_order', its clients trained
  again for 'exact'), each a `jax.checkpoint`; `val_loss(params)` the
  validation loss of the window's last model.
  """
  step = jax.checkpoint(later_round)

  def taken(record, moved, server):
    return tree_map(lambda new, old: jnp.where(record.updated, new, old),
                    moved, server)

  def objective(coeffs):
    server = taken(first, aggregate(first.server, first.updates, coeffs),
                   first.server)
    server, _ = jax.lax.scan(
        lambda s, r: (taken(r, step(s, r), s), None), server, later)
    return val_loss(server.params)

  return jax.grad(objective)(jnp.full(first.clients.shape, at, jnp.float32))
