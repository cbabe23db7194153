"""Ditto: a global model by FedAvg and a personal model per client.

Ditto: Fair and Robust Federated Learning Through Personalization.
  T. Li, S. Hu, A. Beirami, V. Smith. ICML 2021.
  https://arxiv.org/abs/2012.04221

Client i, in a round with server model theta (Algorithm 1):

    theta_i = LocalSGD(theta; F_i)                       sent, averaged
    v_i    <- argmin_v F_i(v) + lam/2 |v - theta|^2      kept, personal

the personal objective taken by the same number of SGD steps, at the same
learning rate and batch, with the client's lam (`ClientHParams.tuned`, so
a policy may choose each client's), each step's proximal part in closed form
(`make_local_update`'s anchor): v <- (v' + lr lam theta) / (1 + lr lam).
lam -> inf gives v_i = theta (FedAvg's global model); lam = 0 local
training alone. v_i starts, the first time client i is in a round, from
that round's theta. Its personal model for evaluation is one more such
update against the final global model.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm
from pfhpo.federated.client_rows import repeat_rows
from pfhpo.settings import checked, require, setting
from pfhpo.types import ClientHParams, Params


@checked
class DittoConfig:
  ditto_lambda: float = setting(
      0.1, "the pull of each personal model towards the global one")

  def __post_init__(self):
    require(self.ditto_lambda >= 0,
            f'`ditto_lambda` must be >= 0, got {self.ditto_lambda}')


class DittoRow(NamedTuple):
  model: Params  # v_i, the personal model
  started: jax.Array  # bool[]: v_i has been trained


def ditto(sgd: Callable) -> ClientAlgorithm:
  train = sgd()

  def personal(theta, row: DittoRow, x, y, count, hp: ClientHParams, key):
    start = jax.tree_util.tree_map(lambda v, s: jnp.where(row.started, v, s),
                                   row.model, theta)
    return train(start, x, y, count, *hp.sgd, key, anchor=theta,
                 lam=hp.tuned)[0]

  def local(theta, row: DittoRow, x, y, count, hp: ClientHParams, key):
    global_key, personal_key = jax.random.split(key)
    params, stats = train(theta, x, y, count, *hp.sgd, global_key)
    v = personal(theta, row, x, y, count, hp, personal_key)
    return params, DittoRow(v, jnp.ones_like(row.started)), stats, v

  def init_rows(params, num_clients: int):
    return repeat_rows(DittoRow(params, np.bool_(False)), num_clients)

  return ClientAlgorithm('ditto', init_rows, local, personal)


@register('ditto', DittoConfig, tuned='ditto_lambda')
def _build(config: DittoConfig, context: AlgorithmContext) -> ClientAlgorithm:
  return ditto(context.sgd)
