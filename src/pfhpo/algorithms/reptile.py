"""Personalised FedAvg: FedAvg, then Reptile, then fine-tuning.

Improving Federated Learning Personalization via Model Agnostic Meta
  Learning. Y. Jiang, J. Konecny, K. Rush, S. Kannan. 2019.
  https://arxiv.org/abs/1909.12488

Algorithm 1 of the paper, read as one run of the round:

  1. FedAvg(E): the first `reptile_start` server steps aggregate the
     clients' updates weighted by their examples, w_i = D_i / D, and take
     the run's server optimizer (momentum SGD in the paper);
  2. Reptile(K): from then on every client counts alike, w_i = 1 / K
     (Reptile ignores the tasks' sizes), and the server takes Adam at
     `reptile_lr` on the pseudo-gradient -sum_i w_i (theta_i - theta);
  3. each client's personal model is the final model fine-tuned with its
     own configuration (FedAvg's `personalize`).

The clients' local SGD is FedAvg's in both phases; its epochs E, steps K,
learning rate and batch are the client's configuration, chosen by the
policy. The phase is the server's: the count of server steps taken
(`phased`), so a rejected round does not advance it.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.aggregate import example_weights, uniform_weights
from pfhpo.federated.client import ClientAlgorithm, sgd_client
from pfhpo.federated.server import fedadam
from pfhpo.settings import checked, require, setting
from pfhpo.types import ServerState


@checked
class ReptileConfig:
  reptile_start: int = setting(
      50, 'the server steps of FedAvg (weighted by '
      'examples, `server_opt`) before Reptile (uniform weights, Adam)')
  reptile_lr: float = setting(
      0.003, "the server's Adam step in the Reptile phase")

  def __post_init__(self):
    require(self.reptile_start >= 0,
            f'`reptile_start` must be >= 0, got {self.reptile_start}')
    require(self.reptile_lr > 0,
            f'`reptile_lr` must be > 0, got {self.reptile_lr}')


class PhasedState(NamedTuple):
  count: jax.Array  # i32[] updates taken
  first: optax.OptState
  second: optax.OptState


def phased(first: optax.GradientTransformation,
           second: optax.GradientTransformation,
           boundary: int) -> optax.GradientTransformation:
  """`first` for the first `boundary` updates, then `second` (each keeps
  its own state, moved only while it is the one in use)."""

  def init(params):
    return PhasedState(jnp.zeros([], jnp.int32), first.init(params),
                       second.init(params))

  def update(updates, state: PhasedState, params=None):
    early = state.count < boundary
    u1, s1 = first.update(updates, state.first, params)
    u2, s2 = second.update(updates, state.second, params)
    pick = lambda a, b: jax.tree_util.tree_map(
        lambda x, y: jnp.where(early, x, y), a, b)
    return pick(u1, u2), PhasedState(state.count + 1, pick(s1, state.first),
                                     pick(state.second, s2))

  return optax.GradientTransformation(init, update)


def reptile_server(server_opt: optax.GradientTransformation, start: int,
                   lr: float) -> optax.GradientTransformation:
  """The run's `server_opt` for `start` steps (FedAvg), then FedAdam at
  `lr` (Reptile)."""
  return phased(server_opt, fedadam(lr), start)


def reptile(sgd: Callable, start: int) -> ClientAlgorithm:
  """FedAvg's client, with example weights for the first `start` server
  steps and uniform weights after (the server runs `reptile_server`)."""

  def weights(count: jax.Array, server: ServerState) -> jax.Array:
    return jnp.where(server.opt_state.count < start, example_weights(count),
                     uniform_weights(count))

  return sgd_client(sgd(), 'reptile')._replace(weights=weights)


@register('reptile', ReptileConfig, server_optimizer=lambda config, opt, k:
          reptile_server(opt, config.reptile_start, config.reptile_lr))
def _build(config: ReptileConfig, context: AlgorithmContext
           ) -> ClientAlgorithm:
  return reptile(context.sgd, config.reptile_start)
