"""The credit a round assigns its clients: a component of the round, as its
policy and its client are (`make_round` takes one).

The round's aggregate as a function of dummy coefficients c, one per
client (`cohort.py`),

    theta_g(c) = theta + sum_i w_i c_i (theta_i - theta)

and client i's one-round credit is dL_val(theta_g(c))/dc_i = w_i
<dL/dtheta_g, theta_i - theta>, taken at c = t 1 (`at`): dL/dc_i(t 1)
integrated over t in [0, 1] sums, over the clients, to the round's loss
change L(theta_g(1)) - L(theta) (the Aumann-Shapley shares of the
change), and t = 1/2 is that integral's midpoint estimate, where t = 1 is
the marginal value of each update at the aggregate. The server still moves
to, and validates, theta_g(1) (one more forward pass of the validation
set). A credit over T rounds is dL_val(theta_{t+T})/dc_t instead, through
the rounds between (`horizon.py`, with its three estimators).

A credit is four pure functions, in the manner of an optax
`GradientTransformation`:

    window               = init(server, table, batch, hparams, key)
    credited             = aggregate(objective, validate, params, val, k)
    inputs               = keep(key, rows, train, hparams, train_key, keys)
    state, dl_dc, window = assign(window, record, dl_dc, parts, learn, state)

`aggregate` forms the round's aggregate (with its one-round dL/dc where the
credit is the round's own), `keep` what a window holds of the round to
train it again, and `assign` credits a round, the policy's state moved by
`learn(state, record, dl_dc, now)` (`now`: the record is this round's). Built
by `one_round`, `over_rounds` or `no_credit`; `make_credit` builds the one a
policy's settings name, its defaults the shipped method's.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from pfhpo.federated.estimators import (Estimator, exact, first_order,
                                        sampled)
from pfhpo.federated.horizon import close, horizon_credit, init_window
from pfhpo.settings import require
from pfhpo.types import CreditSettings, ValBatch

SHIPPED = CreditSettings()


class Credited(NamedTuple):
  """The round's aggregate at c = 1, validated, and its clients' credit."""
  loss: jax.Array  # f32[]: L_val(theta_g(1)) on the whole validation set
  acc: jax.Array  # f32[]
  delta: Any  # theta_g(1) - theta, per leaf
  aux: Any  # what the objective returns beside (`aggregate`)
  dl_dc: jax.Array  # f32[k]; zeros where the round takes no credit of its own


class RoundParts(NamedTuple):
  """What a credit over several rounds replays a later round with."""
  cohort: Callable  # the round's clients trained again (`make_cohort`)
  server_step_at: Callable  # (S, Delta, z) -> S (`horizon.step_at`)
  val_loss: Callable  # params -> f32[] on the round's validation set


class Credit(NamedTuple):
  """A round's credit assignment (the module's docstring)."""
  init: Callable
  aggregate: Callable
  keep: Callable
  assign: Callable
  at: float  # c = at 1, where dL/dc is taken (and the server axis's)
  keeps_updates: bool  # its window keeps each client's update


def aggregate(objective: Callable, validate: Callable, params,
              val: ValBatch, k: int, at: float | None) -> Credited:
  """The aggregate of the round's k clients and, where `at` is a float,
  their credit at c = `at` 1.

  `objective(c, val) -> (loss, (delta, acc, aux))` is the validation loss
  of theta_g(c) (delta = theta_g(c) - theta), `validate(params, val) ->
  (loss, acc)` that of a model; `at` is a Python float (the round is
  compiled for it).
  """
  ones = jnp.ones(k, jnp.float32)
  if at is None:
    loss, (delta, acc, aux) = objective(ones, val)
    return Credited(loss, acc, delta, aux, jnp.zeros(k, jnp.float32))
  (loss, (delta, acc, aux)), dl_dc = jax.value_and_grad(
      objective, has_aux=True)(at * ones, val)
  if at != 1.0:  # the update at c = 1, validated
    delta = jax.tree_util.tree_map(lambda d: d / at, delta)
    loss, acc = validate(jax.tree_util.tree_map(jnp.add, params, delta), val)
  return Credited(loss, acc, delta, aux, dl_dc)


def _now(window, record, dl_dc, parts, learn, state):
  """The round's own credit moves the policy at once."""
  return learn(state, record, dl_dc, True), dl_dc, window


def _none(*args):
  return ()


def no_credit() -> Credit:
  """The aggregate alone: the round takes no dL/dc (a policy that learns
  from other measurements, or none)."""
  return Credit(_none, lambda *a: aggregate(*a, None), _none, _now, 1.0,
                False)


def one_round(at: float = 0.5) -> Credit:
  """dL_val(theta_g(c))/dc at c = `at` 1 of the round's own aggregate."""
  CreditSettings(at=at).checked()
  return Credit(_none, lambda *a: aggregate(*a, at), _none, _now, at, False)


def over_rounds(horizon: int, estimator: Estimator,
                at: float = 0.5) -> Credit:
  """dL_val(theta_{t+T})/dc_t at c = `at` 1, T = `horizon` >= 2, through
  the T - 1 rounds after round t as `estimator` takes them: the round
  closes the window of round t = r - T + 1 and moves that round's
  clients' rows (`horizon.py`)."""
  CreditSettings(horizon, at=at).checked()
  require(horizon >= 2, f'a credit over rounds looks >= 2 ahead, got '
          f'{horizon}')

  def init(server, table, batch, hparams, key):
    return init_window(horizon, server, table, batch, hparams, key, estimator)

  def assign(window, record, dl_dc, parts: RoundParts, learn, state):
    later_round = estimator.replay(parts.cohort, parts.server_step_at)
    return close(
        window, record, lambda first, later: horizon_credit(
            parts.server_step_at, later_round, parts.val_loss, first, later,
            at),
        lambda state, first, dl_dc: learn(state, first, dl_dc, False), state)

  return Credit(init, lambda *a: aggregate(*a, None), estimator.keep, assign,
                at, True)


# `types.ESTIMATORS`'s constructors, each of the sample size
ESTIMATORS = {'exact': lambda m: exact(),
              'first_order': lambda m: first_order(), 'sampled': sampled}


def make_credit(horizon: int = SHIPPED.horizon,
                estimator: str = SHIPPED.estimator,
                sample: int = SHIPPED.sample, at: float = SHIPPED.at) -> Credit:
  """The credit the settings name: the round's own at `horizon` 1, else
  over `horizon` rounds with `estimator` (ESTIMATORS; 'sampled' trains
  `sample` of each later round's clients again), at c = `at` 1. The
  defaults are the shipped method's (`CreditSettings`; docs/ablations.md
  has the ablations)."""
  CreditSettings(horizon, estimator, sample, at).checked()
  if horizon == 1:
    return one_round(at)
  return over_rounds(horizon, ESTIMATORS[estimator](sample), at)

