"""FedRep: a shared representation (the body), a personal head per client.

Exploiting Shared Representations for Personalized Federated Learning.
  L. Collins, H. Hassani, A. Mokhtari, S. Shakkottai. ICML 2021.
  https://arxiv.org/abs/2102.07078

Client i, in a round with server body phi (Algorithm 1):

    h_i  <- LocalSGD over h with phi fixed, from its own h_i   (its configuration)
    phi_i = LocalSGD over phi with h_i fixed                   (body steps)
    sends (phi_i, the server's head): only the body is averaged

at the client's learning rate and batch size; the head's steps are the
client's configuration's local steps and the body's its tuned setting
(`ClientHParams.tuned`, `body_steps`), so a policy chooses each client's
head and body training.
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

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm
from pfhpo.federated.client_rows import repeat_rows
from pfhpo.settings import checked, require, setting
from pfhpo.types import ClientHParams


@checked
class FedRepConfig:
  body_steps: int = setting(
      10, "the local steps on the body after the head's")

  def __post_init__(self):
    require(self.body_steps == int(self.body_steps) and self.body_steps >= 1,
            f'`body_steps` must be an integer >= 1, got {self.body_steps}')


def _has_a_body(config: FedRepConfig, model: str, default_server: bool):
  require(model != 'logreg', 'fedrep trains a body below the head, and '
          '`model`=logreg has none; use mlp or conv.')


def part_of(head: str, of_head: bool) -> Callable:
  """params -> pytree of bools: True on the head's leaves (`of_head`) or on
  the body's."""
  return lambda params: {
      name: jax.tree_util.tree_map(lambda _: (name == head) == of_head, sub)
      for name, sub in params.items()}


def fedrep(sgd: Callable, head: str) -> ClientAlgorithm:
  train_head, train_body = sgd(part_of(head, True)), sgd(part_of(head, False))
  with_head = lambda theta, h: {**theta, head: h}

  def personal(theta, row, x, y, count, hp: ClientHParams, key):
    return train_head(with_head(theta, row), x, y, count, *hp.sgd, key)[0]

  def local(theta, row, x, y, count, hp: ClientHParams, key):
    head_key, body_key = jax.random.split(key)
    params = personal(theta, row, x, y, count, hp, head_key)
    params, stats = train_body(params, x, y, count, hp.lr,
                               jnp.round(hp.tuned).astype(jnp.int32),
                               hp.batch_size, body_key)
    return with_head(params, theta[head]), params[head], stats, params

  return ClientAlgorithm(
      'fedrep', lambda params, num_clients: repeat_rows(params[head],
                                                        num_clients),
      local, personal)


@register('fedrep', FedRepConfig, tuned='body_steps', check=_has_a_body)
def _build(config: FedRepConfig, context: AlgorithmContext) -> ClientAlgorithm:
  most = int(max(context.tuned_values))
  require(most <= context.max_steps,
          f"FedRep's {most} body steps (`body_steps`) exceed the "
          f'{context.max_steps} local steps the round is compiled for; raise '
          '`max_local_steps`.')
  return fedrep(context.sgd, context.model.head)
