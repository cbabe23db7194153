"""Weighted aggregation of client models with explicit coefficients.

    Delta_g(c) = sum_i w_i c_i (theta_i - theta_server),   w_i = D_i / D

`c` ("dummy coefficients") is ones in plain FedAvg; keeping it an explicit
argument is what lets the policies take `jax.grad` of a validation loss with
respect to each client's share of the aggregate (the per-client credit).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def example_weights(counts: jax.Array) -> jax.Array:
  """w_i = D_i / sum_j D_j: i32[C] -> f32[C] (McMahan et al., AISTATS 2017)."""
  counts = counts.astype(jnp.float32)
  return counts / jnp.sum(counts)


def weighted_delta(server_params, client_params, weights: jax.Array,
                   coeffs: jax.Array):
  """sum_i w_i c_i (theta_i - theta_server).

  Args:
    server_params: pytree of the server model.
    client_params: the same pytree with a leading client axis [C, ...].
    weights: f32[C] aggregation weights (sum to one).
    coeffs: f32[C] per-client coefficients (ones for FedAvg).
  """
  wc = weights * coeffs  # f32[C]
  return jax.tree_util.tree_map(
      lambda s, c: jnp.tensordot(wc, c - s[None], axes=1), server_params,
      client_params)
