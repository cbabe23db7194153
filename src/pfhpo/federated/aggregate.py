"""Weighted aggregation of client models with explicit coefficients.

    Delta_g(c) = sum_i w_i c_i (theta_i - theta_server),   w_i = D_i / D

`c` ("dummy coefficients") is ones in plain FedAvg; keeping it an explicit
argument is what lets the policies take `jax.grad` of a validation loss with
respect to each client's share of the aggregate (the per-client credit).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

tree_map = jax.tree_util.tree_map


def example_weights(counts: jax.Array) -> jax.Array:
  """w_i = D_i / sum_j D_j: i32[C] -> f32[C] (McMahan et al., AISTATS 2017)."""
  counts = counts.astype(jnp.float32)
  return counts / jnp.sum(counts)


def uniform_weights(counts: jax.Array) -> jax.Array:
  """w_i = 1 / K whatever the clients' sizes: i32[K] -> f32[K] (Reptile,
  MOCHA)."""
  return jnp.full(counts.shape, 1.0 / counts.shape[0], jnp.float32)


def weighted_delta(server_params, client_params, weights: jax.Array,
                   coeffs: jax.Array):
  """sum_i w_i c_i (theta_i - theta_server).

  Args:
    server_params: pytree of the server model.
    client_params: the same pytree with a leading client axis [C, ...].
    weights: f32[C] aggregation weights.
    coeffs: f32[C] per-client coefficients (ones for FedAvg).
  """
  wc = weights * coeffs  # f32[C]
  return tree_map(lambda s, c: jnp.tensordot(wc, c - s[None], axes=1),
                  server_params, client_params)


def aggregate_clients(train: Callable, server_params, args: tuple,
                      weights: jax.Array, coeffs: jax.Array,
                      chunk: int | None = None, mesh: Mesh | None = None,
                      recompute: bool = False):
  """Trains every client and aggregates: (Delta_g(c), per-client aux).

  `train(*client_args) -> (theta_i, aux_i)` is one client's local update;
  `args` holds the clients' arguments with a leading client axis [C, ...].

  How the clients are walked changes speed and memory, never the result
  (up to the order of the float sum):

  * `chunk=None`: one vmap over all C clients, then `weighted_delta` over
    their stacked parameters [C, P] (the GPU/TPU default).
  * `chunk=c`: a `scan` over groups of c clients (vmapped within a group;
    a group of one is not batched, so its conditionals, such as a local
    update's steps past the client's own, are skipped rather than
    selected) whose carry is the running sum, so only c clients'
    parameters exist at a time. On a CPU a client's weights stay in cache
    through its local steps, and the round needs no [C, P] buffer, which
    XLA:CPU would map and page-fault in afresh on every call (the strace
    figures: BUILD_NOTES.md as of commit 51153f0).
    `jax.grad` with respect to `coeffs` still works: it keeps each client's
    update as a residual, [C, P] in all, unless `recompute`: then each
    group is a `jax.checkpoint`, whose clients the backward pass trains
    again, so that device memory no longer grows with C (for twice the
    clients' compute in a round that takes the gradient; the same
    gradient).
  * `mesh`: the client axis is split over the mesh's one axis; each device
    aggregates its share as above and the partial sums are added with a
    `psum`. C must be a multiple of the mesh size.
  """
  if mesh is not None and mesh.size > 1:
    axis = mesh.axis_names
    spec = PartitionSpec(axis)

    def shard(a, w, c):
      delta, aux = aggregate_clients(train, server_params, a, w, c, chunk,
                                     recompute=recompute)
      return jax.lax.psum(delta, axis), aux

    # `train` closes over the replicated server parameters; the clients
    # are independent, so no varying-axes bookkeeping is needed.
    return jax.shard_map(shard, mesh=mesh, in_specs=(spec, spec, spec),
                         out_specs=(PartitionSpec(), spec),
                         check_vma=False)(args, weights, coeffs)
  k = weights.shape[0]
  if chunk is None or chunk >= k:
    params, aux = jax.vmap(lambda a: train(*a))(args)
    return weighted_delta(server_params, params, weights, coeffs), aux
  n = k // chunk * chunk
  groups = tree_map(lambda a: a[:n].reshape(n // chunk, chunk, *a.shape[1:]),
                    (args, weights, coeffs))

  def add_group(total, group):
    a, w, c = group
    if chunk == 1:  # unbatched: a client skips the steps it does not take
      params, aux = tree_map(lambda v: v[None], train(*tree_map(
          lambda v: v[0], a)))
    else:
      params, aux = jax.vmap(lambda a: train(*a))(a)
    return tree_map(jnp.add, total,
                    weighted_delta(server_params, params, w, c)), aux

  zeros = tree_map(lambda a: jnp.zeros(a.shape, a.dtype), server_params)
  delta, aux = jax.lax.scan(jax.checkpoint(add_group) if recompute
                            else add_group, zeros, groups)
  aux = tree_map(lambda a: a.reshape(n, *a.shape[2:]), aux)
  if n < k:  # the last k - n clients, one vmap
    rest = tree_map(lambda a: a[n:], (args, weights, coeffs))
    rest_delta, rest_aux = aggregate_clients(train, server_params, *rest)
    delta = tree_map(jnp.add, delta, rest_delta)
    aux = tree_map(lambda a, b: jnp.concatenate([a, b]), aux, rest_aux)
  return delta, aux
