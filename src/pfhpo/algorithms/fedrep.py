"""FedRep: a shared representation (the body), a personal head per client.

Exploiting Shared Representations for Personalized Federated Learning.
  L. Collins, H. Hassani, A. Mokhtari, S. Shakkottai. ICML 2021.
  https://arxiv.org/abs/2102.07078

Client i, in a round with server body phi (Algorithm 1):

    h_i  <- LocalSGD over h with phi fixed, from its own h_i   (its configuration)
    phi_i = LocalSGD over phi with h_i fixed                   (`body_steps`)
    sends (phi_i, the server's head): only the body is averaged

at the client's learning rate and batch size; the head's steps are the
client's configuration, so a policy chooses each client's head training.
h_i lives in the host table and persists across rounds, through rounds the
client is not in. Its personal model for evaluation is (phi, h_i) after
one more head update. The server's head is never trained: the global
model's accuracy is the body under the initial head, so FedRep's figure is
its personal accuracy.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pfhpo.algorithms.base import ClientAlgorithm, repeat_rows


def part_of(head: str, of_head: bool) -> Callable:
  """params -> pytree of bools: True on the head's leaves (`of_head`) or on
  the body's."""
  return lambda params: {
      name: jax.tree_util.tree_map(lambda _: (name == head) == of_head, sub)
      for name, sub in params.items()}


def fedrep(sgd: Callable, head: str, body_steps: int) -> ClientAlgorithm:
  train_head, train_body = sgd(part_of(head, True)), sgd(part_of(head, False))
  with_head = lambda theta, h: {**theta, head: h}

  def personal(theta, row, x, y, count, lr, steps, batch, key):
    return train_head(with_head(theta, row), x, y, count, lr, steps, batch,
                      key)[0]

  def local(theta, row, x, y, count, lr, steps, batch, key):
    head_key, body_key = jax.random.split(key)
    params = personal(theta, row, x, y, count, lr, steps, batch, head_key)
    params, stats = train_body(params, x, y, count, lr,
                               jnp.int32(body_steps), batch, body_key)
    return with_head(params, theta[head]), params[head], stats, params

  return ClientAlgorithm(
      'fedrep', lambda params, num_clients: repeat_rows(params[head],
                                                        num_clients),
      local, personal)
