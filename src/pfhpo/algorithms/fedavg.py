"""Federated averaging with per-client hyper-parameters, one compiled round.

Communication-Efficient Learning of Deep Networks from Decentralized Data.
  H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Aguera y Arcas.
  AISTATS 2017. https://arxiv.org/abs/1602.05629
Adaptive Federated Optimization (server optimizers: FedAvgM, FedAdam).
  S. Reddi, Z. Charles, M. Zaheer, Z. Garrett, K. Rush, J. Konecny, S. Kumar,
  H. B. McMahan. ICLR 2021. https://arxiv.org/abs/2003.00295

One round, for the K sampled clients:

    theta_i   = LocalSGD(theta, lr_i, steps_i, batch_i)          (vmapped)
    Delta     = sum_i (D_i / D) c_i (theta_i - theta),   c = 1
    theta    <- ServerOpt(theta, pseudo-gradient = -Delta)

With server SGD at learning rate 1 this is McMahan et al.'s FedAvg; any optax
optimizer can be the server optimizer (Reddi et al.).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from pfhpo.aggregate import aggregate_clients, example_weights
from pfhpo.client import ClientHParams, make_local_update
from pfhpo.models import Model


class ServerState(NamedTuple):
  params: Any
  opt_state: Any


class RoundBatch(NamedTuple):
  """The sampled clients' training data for one round, and their own
  validation splits where a policy learns from them ('local_val')."""
  x: jax.Array  # u8/f32[K, N_max, *feature_shape]
  y: jax.Array  # i32[K, N_max]
  count: jax.Array  # i32[K]
  val_x: jax.Array | None = None  # u8/f32[K, Nv_max, *feature_shape]
  val_y: jax.Array | None = None  # i32[K, Nv_max]
  val_count: jax.Array | None = None  # i32[K]


class FederatedAlgorithm(NamedTuple):
  """init: key -> state;  apply: (state, batch, hparams, key) -> (state, metrics)."""
  init: Callable
  apply: Callable


def server_step(server_opt: optax.GradientTransformation, state: ServerState,
                delta) -> ServerState:
  """theta <- ServerOpt(theta, pseudo-gradient = -Delta) (Reddi et al.)."""
  pseudo_grad = jax.tree_util.tree_map(jnp.negative, delta)
  updates, opt_state = server_opt.update(pseudo_grad, state.opt_state,
                                         state.params)
  return ServerState(optax.apply_updates(state.params, updates), opt_state)


def fedavg(model: Model, features: Callable,
           server_opt: optax.GradientTransformation, max_steps: int,
           max_batch: int, momentum: float = 0.0, unroll: bool = False,
           client_chunk: int | None = None,
           mesh: Mesh | None = None) -> FederatedAlgorithm:
  """FedAvg whose round is a pure function of traced per-client hparams.

  `max_steps` and `max_batch` fix the shapes the round is compiled for; every
  client's `local_steps` and `batch_size` must not exceed them.
  `client_chunk` sets how many clients train side by side, and `mesh` the
  devices the client axis is split over (`aggregate_clients`).
  """
  one_client = make_local_update(model, features, max_steps, max_batch,
                                 momentum, unroll)

  def init(key) -> ServerState:
    params = model.init(key)
    return ServerState(params, server_opt.init(params))

  def apply(state: ServerState, batch: RoundBatch, hparams: ClientHParams,
            key: jax.Array):
    chex.assert_rank([batch.y, batch.count], [2, 1])
    chex.assert_equal_shape([batch.count, hparams.lr, hparams.local_steps,
                             hparams.batch_size])
    keys = jax.random.split(key, batch.y.shape[0])
    weights = example_weights(batch.count)  # f32[K]
    delta, stats = aggregate_clients(
        lambda *a: one_client(state.params, *a), state.params,
        (batch.x, batch.y, batch.count, hparams.lr, hparams.local_steps,
         hparams.batch_size, keys), weights, jnp.ones_like(weights),
        client_chunk, mesh)
    metrics = {'train_loss': jnp.sum(weights * stats.loss)}
    return server_step(server_opt, state, delta), metrics

  return FederatedAlgorithm(init, apply)
