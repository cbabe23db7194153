"""The server side of a round: its optimizer and the step it takes.

Adaptive Federated Optimization. S. Reddi, Z. Charles, M. Zaheer, Z. Garrett,
K. Rush, J. Konecny, S. Kumar, H. B. McMahan. ICLR 2021.
https://arxiv.org/abs/2003.00295

The aggregate update Delta is a pseudo-gradient -Delta for any optax
optimizer: server SGD at learning rate 1 is McMahan et al.'s FedAvg,
momentum 0.9 FedAvgM, Adam FedAdam.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from pfhpo.settings import check_choice, require
from pfhpo.types import Params, ServerState

SERVER_OPTS = ('sgd', 'momentum', 'adam')


def fedadam(lr: float) -> optax.GradientTransformation:
  """Adam with Reddi et al.'s tau = 1e-3 as its epsilon."""
  return optax.adam(lr, b1=0.9, b2=0.99, eps=1e-3)


def server_optimizer(server_opt: str, server_lr: float,
                     server_momentum: float | None = None
                     ) -> optax.GradientTransformation:
  """FedAvg (`'sgd'`), FedAvgM (`'momentum'`) or FedAdam (`'adam'`, with
  Reddi et al.'s tau = 1e-3 as Adam's epsilon). `server_momentum` is the
  heavy-ball momentum of 'sgd' and 'momentum' (unset: none for 'sgd', 0.9
  for 'momentum')."""
  check_choice('server_opt', server_opt, SERVER_OPTS)
  require(server_lr > 0, f'`server_lr` must be > 0, got {server_lr}')
  require(server_momentum is None or 0 <= server_momentum < 1,
          f'`server_momentum` must be in [0, 1), got {server_momentum}')
  require(server_momentum is None or server_opt != 'adam',
          '`server_momentum` is the momentum of `server_opt`=sgd or '
          'momentum; adam has its own (drop it, or choose sgd)')
  if server_opt == 'adam':
    return fedadam(server_lr)
  if server_momentum is None:
    server_momentum = 0.9 if server_opt == 'momentum' else None
  return optax.sgd(server_lr, momentum=server_momentum)


def init_server(server_opt: optax.GradientTransformation,
                params: Params) -> ServerState:
  return ServerState(params, server_opt.init(params))


def server_step(server_opt: optax.GradientTransformation, state: ServerState,
                delta) -> ServerState:
  """theta <- ServerOpt(theta, pseudo-gradient = -Delta)."""
  pseudo_grad = jax.tree_util.tree_map(jnp.negative, delta)
  updates, opt_state = server_opt.update(pseudo_grad, state.opt_state,
                                         state.params)
  return ServerState(optax.apply_updates(state.params, updates), opt_state)
