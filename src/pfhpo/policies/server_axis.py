"""The server's configuration as one more choice of the project's method: a
categorical row over S server configurations (learning rate x momentum,
`policies.space.ServerSpace`), one draw a round, credited by
back-propagation through the server step.

With u(z) the update the server optimizer makes of the round's aggregate
at configuration z (its learning rate and momentum, set in its state) and a
dummy scale c on it,

    theta'(c) = theta + c u(z),    g = dL_val(theta'(c))/dc at c = t

(`federated.server.credited_server_step`; t is the round's credit's `at`).
At t = 1/2, g is the midpoint estimate of the step's own effect,
integral_0^1 dL/dc dc = L_val(theta + u) - L_val(theta): a step that is too
short lowers the loss a little, a good one a lot, one that overshoots
raises it; at t = 1, g is the marginal value of a longer step (which
favours short ones). For sgd with or without momentum u is linear in the
learning rate eta, so g = eta dL_val(theta + u(e))/de at e = t eta, which
`tests/test_server_axis.py` checks against finite differences in eta.
The row moves like a client's (`gumbel`), by the score-function step

    beta <- beta - lr * a * grad_beta log p_beta(z),    a = g / sqrt(v)

with v a running mean of g^2 (decay 0.9; one draw a round has no spread
to normalise by); a rejected aggregate, or a credit that overflowed,
counts as a = 3, a penalty. The round validates the aggregate theta_g =
theta + Delta before the server step, as without the axis; the axis's
credit is of the models along the step, theta'(c).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.policies.space import ServerSpace

DECAY = 0.9  # of the credit's running second moment
PENALTY = 3.0  # a failed round's normalised credit


class ServerRow(NamedTuple):
  logits: jax.Array  # f32[S]
  opt_state: optax.OptState
  second: jax.Array  # f32[] running mean of g^2 (NaN before the first)


class ServerAxis(NamedTuple):
  """A policy's server choice; its row lives in the policy's state, at
  `state.server`."""
  space: ServerSpace
  init: Callable[[], ServerRow]
  # (policy state, key) -> i32[] the round's server configuration
  propose: Callable
  # (policy state, i32[] z, f32[] g, bool[] failed) -> policy state
  update: Callable
  # policy state -> f32[S] the row's distribution
  probabilities: Callable


def server_axis(space: ServerSpace,
                optimizer: optax.GradientTransformation) -> ServerAxis:
  """The row over `space`'s configurations, moved by `optimizer`."""

  def init() -> ServerRow:
    logits = jnp.zeros(space.size, jnp.float32)
    return ServerRow(logits, optimizer.init(logits), jnp.float32(jnp.nan))

  def propose(state, key):
    return jax.random.categorical(key, state.server.logits)

  def update(state, z, g, failed):
    row = state.server
    ok = ~failed & jnp.isfinite(g)
    second = jnp.where(
        ok, jnp.where(jnp.isnan(row.second), g**2,
                      DECAY * row.second + (1 - DECAY) * g**2), row.second)
    a = jnp.where(ok, g / jnp.sqrt(jnp.maximum(second, 1e-30)), PENALTY)
    # d/dbeta of a * log p_beta(z)
    score = a * (jax.nn.one_hot(z, space.size) - jax.nn.softmax(row.logits))
    updates, opt_state = optimizer.update(score, row.opt_state, row.logits)
    return state._replace(server=ServerRow(
        optax.apply_updates(row.logits, updates), opt_state, second))

  return ServerAxis(space, init, propose, update,
                    lambda state: jax.nn.softmax(state.server.logits))
