"""The round's cohort: its K clients trained side by side from the server
model, a failed client's update left out, and the rest aggregated with
coefficients c (`aggregate_clients`):

    Delta = sum_{i kept} w_i c_i (theta_i - theta) / sum_{i kept} w_i
    theta_g(c) = theta + Delta

The weights are w_i = D_i / D, or the
algorithm's own (`ClientAlgorithm.weights`). A diverged client
(`divergence.py`) sends theta_i = theta and keeps its row.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pfhpo.federated.aggregate import aggregate_clients, example_weights
from pfhpo.federated.client import ClientAlgorithm
from pfhpo.types import LocalStats


class Trained(NamedTuple):
  """What the cohort's training leaves per client: [K, ...] each."""
  stats: LocalStats
  val_loss: jax.Array  # f32[K] its own model on its validation split (or 0)
  diverged: jax.Array  # bool[K]
  rows: Any  # its row after the round (a diverged client's as it was)
  update: Any  # theta_i - theta, kept for a credit over several rounds; None


def make_cohort(client: ClientAlgorithm, masked_loss: Callable,
                diverged_of: Callable, keeps_updates: bool,
                client_chunk: int | None, mesh: Mesh | None,
                recompute: bool) -> Callable:
  """`cohort(server, rows, data, hparams, keys, coeffs, local_val=())` ->
  (Delta, Trained, (w: f32[K], the kept weight sum_{i kept} w_i)),
  the clients trained `client_chunk` side by side over `mesh`'s devices
  (trained again in the backward pass where `recompute`)."""

  def cohort(server, rows, data, hparams, keys, coeffs, local_val=()):
    # keys: [K] each client's training key
    weights = (example_weights(data.count) if client.weights is None
               else client.weights(data.count, server))  # f32[K]
    args = (rows, data.x, data.y, data.count, hparams, keys) + tuple(local_val)

    def train(row, x, y, count, hp, key, *val_split):
      params, new_row, stats, own = client.local(
          server.params, row, x, y, count, hp, key)
      diverged = diverged_of(params, stats)
      # A diverged client contributes theta_i - theta = 0 and keeps its row.
      keep = lambda new, old: jax.tree_util.tree_map(
          lambda a, b: jnp.where(diverged, b, a), new, old)
      params = keep(params, server.params)
      val_loss = (masked_loss(own, *val_split) if val_split
                  else jnp.zeros_like(stats.loss))
      update = (jax.tree_util.tree_map(jnp.subtract, params, server.params)
                if keeps_updates else None)
      return params, Trained(stats, val_loss, diverged, keep(new_row, row),
                             update)

    delta, trained = aggregate_clients(
        train, server.params, args, weights, coeffs, client_chunk, mesh,
        recompute)
    kept = jnp.sum(jnp.where(trained.diverged, 0.0, weights))
    kept = jnp.where(kept > 0, kept, 1.0)
    delta = jax.tree_util.tree_map(lambda d: d / kept, delta)
    return delta, trained, (weights, kept)

  return cohort
