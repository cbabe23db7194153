"""The one-round credit: dL_val(theta_g(c))/dc_i at c = t 1.

The round's aggregate as a function of dummy coefficients c, one per
client (`cohort.py`),

    theta_g(c) = theta + sum_i w_i c_i (theta_i - theta)      ('credit')
    theta_g(c) = sum_i w_i c_i theta_i                        ('credit_params')

equal at c = 1, and client i's credit is dL_val(theta_g(c))/dc_i:
w_i <dL/dtheta_g, theta_i - theta>, or w_i <dL/dtheta_g, theta_i> for the
faithful 'params' form. A policy may take it at c = t 1 instead of 1
(`Policy.credit_at`): dL/dc_i(t 1) integrated over t in [0, 1] sums, over
the clients, to the round's loss change L(theta_g(1)) - L(theta) (the
Aumann-Shapley shares of the change), and t = 1/2 is that integral's
midpoint estimate, where t = 1 is the marginal value of each update at the
aggregate. The server still moves to, and validates, theta_g(1) (one more
forward pass of the validation set). A policy may take its credit on a
fresh weighted sample of m validation examples each round
(`Policy.credit_examples`, `sample_val`): an unbiased estimate of the
credit on the whole set, whose backward pass costs m examples, not all.
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


def sample_val(key: jax.Array, val: ValBatch, m: int) -> ValBatch:
  """m validation examples drawn with replacement in proportion to their
  weights, each weighted 1/m: sum_j (1/m) l_j is an unbiased estimate of
  the weighted loss sum_i w_i l_i, and so is its gradient (padding, of
  weight 0, is never drawn)."""
  pick = jax.random.choice(key, val.y.shape[0], (m,), p=val.weight)  # i32[m]
  return ValBatch(jnp.take(val.x, pick, axis=0), jnp.take(val.y, pick),
                  jnp.full(m, 1.0 / m, jnp.float32))


def credit_set(key: jax.Array, val: ValBatch, m: int | None) -> ValBatch:
  """The examples a credit is taken on: a fresh sample of m (`sample_val`)
  where m is set and smaller than the set, else `val` itself."""
  return val if m is None or m >= val.y.shape[0] else sample_val(key, val, m)


def one_round_credit(objective: Callable, validate: Callable, params,
                     val: ValBatch, credit_val: ValBatch, k: int,
                     take: bool, at: float) -> Credited:
  """The aggregate of the round's k clients and, where `take`, their
  credit at c = `at` 1 on `credit_val` (`credit_set` of `val`).

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
      objective, has_aux=True)(at * ones, credit_val)
  if at != 1.0:  # the update at c = 1
    delta = jax.tree_util.tree_map(lambda d: d / at, delta)
  if at != 1.0 or credit_val is not val:  # validated at c = 1, on all of val
    loss, acc = validate(jax.tree_util.tree_map(jnp.add, params, delta), val)
  return Credited(loss, acc, delta, aux, dl_dc)
