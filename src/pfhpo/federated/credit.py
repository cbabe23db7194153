"""The one-round credit: dL_val(theta_g(c))/dc_i at c = t 1.

The round's aggregate as a function of dummy coefficients c, one per
client (`cohort.py`),

    theta_g(c) = theta + sum_i w_i c_i (theta_i - theta)

and client i's credit is dL_val(theta_g(c))/dc_i = w_i <dL/dtheta_g,
theta_i - theta>. A policy may take it at c = t 1 instead of 1
(`Policy.credit_at`): dL/dc_i(t 1) integrated over t in [0, 1] sums, over
the clients, to the round's loss change L(theta_g(1)) - L(theta) (the
Aumann-Shapley shares of the change), and t = 1/2 is that integral's
midpoint estimate, where t = 1 is the marginal value of each update at the
aggregate. The server still moves to, and validates, theta_g(1) (one more
forward pass of the validation set).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from pfhpo.types import ValBatch


class Credited(NamedTuple):
  """The round's aggregate at c = 1, validated, and its clients' credit."""
  loss: jax.Array  # f32[]: L_val(theta_g(1)) on the whole validation set
  acc: jax.Array  # f32[]
  delta: Any  # theta_g(1) - theta, per leaf
  aux: Any  # what the objective returns beside (`one_round_credit`)
  dl_dc: jax.Array  # f32[k]; zeros where the round takes no credit


def one_round_credit(objective: Callable, validate: Callable, params,
                     val: ValBatch, k: int, take: bool,
                     at: float) -> Credited:
  """The aggregate of the round's k clients and, where `take`, their
  credit at c = `at` 1.

  `objective(c, val) -> (loss, (delta, acc, aux))` is the validation loss of
  theta_g(c) (delta = theta_g(c) - theta), `validate(params, val) -> (loss,
  acc)` that of a model; `at` is a Python float (the round is compiled for
  it).
  """
  ones = jnp.ones(k, jnp.float32)
  if not take:
    loss, (delta, acc, aux) = objective(ones, val)
    return Credited(loss, acc, delta, aux, jnp.zeros(k, jnp.float32))
  (loss, (delta, acc, aux)), dl_dc = jax.value_and_grad(
      objective, has_aux=True)(at * ones, val)
  if at != 1.0:  # the update at c = 1, validated
    delta = jax.tree_util.tree_map(lambda d: d / at, delta)
    loss, acc = validate(jax.tree_util.tree_map(jnp.add, params, delta), val)
  return Credited(loss, acc, delta, aux, dl_dc)
