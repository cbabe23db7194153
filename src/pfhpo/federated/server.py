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


# Inside Adam's denominator sqrt(v + EPS_ROOT) + tau: sqrt has no
# derivative at 0, and v is 0 wherever every client left a coordinate alone
# (a pixel no client has, a part of the model no client sends): the credit,
# which differentiates through the server's step, was NaN for every client.
# 1e-16 moves the step by at most 1e-5 of itself (sqrt(1e-16) against tau).
EPS_ROOT = 1e-16


def fedadam(lr: float) -> optax.GradientTransformation:
  """Adam with Reddi et al.'s tau = 1e-3 as its epsilon (Reddi et al.,
  "Adaptive Federated Optimization", ICLR 2021), differentiable where a
  coordinate's second moment is zero (`EPS_ROOT`)."""
  return optax.adam(lr, b1=0.9, b2=0.99, eps=1e-3, eps_root=EPS_ROOT)


def server_optimizer(server_opt: str, server_lr: float,
                     server_momentum: float | None = None,
                     injected: bool = False) -> optax.GradientTransformation:
  """FedAvg (`'sgd'`), FedAvgM (`'momentum'`) or FedAdam (`'adam'`, with
  Reddi et al.'s tau = 1e-3 as Adam's epsilon). `server_momentum` is the
  heavy-ball momentum of 'sgd' and 'momentum' (unset: none for 'sgd', 0.9
  for 'momentum'). `injected`: its learning rate and momentum live in its
  state (`optax.inject_hyperparams`), traced, so that a run may set them
  per round or per population member (`with_server_hparams`); sgd then
  keeps a momentum buffer even at momentum 0 (the same steps)."""
  check_choice('server_opt', server_opt, SERVER_OPTS)
  require(server_lr > 0, f'`server_lr` must be > 0, got {server_lr}')
  require(server_momentum is None or 0 <= server_momentum < 1,
          f'`server_momentum` must be in [0, 1), got {server_momentum}')
  require(server_momentum is None or server_opt != 'adam',
          '`server_momentum` is the momentum of `server_opt`=sgd or '
          'momentum; adam has its own (drop it, or choose sgd)')
  if server_opt == 'adam':
    return (optax.inject_hyperparams(fedadam)(server_lr) if injected
            else fedadam(server_lr))
  if server_momentum is None:
    server_momentum = (0.9 if server_opt == 'momentum' else
                       0.0 if injected else None)
  if injected:
    return optax.inject_hyperparams(optax.sgd)(
        learning_rate=server_lr, momentum=server_momentum)
  return optax.sgd(server_lr, momentum=server_momentum)


def with_server_hparams(opt_state, space, s: jax.Array):
  """An injected server optimizer's state (`server_optimizer(...,
  injected=True)`) set to server configuration `s` (i32[]) of `space` (a
  `policies.space.ServerSpace`): the
  searched axes' values, the others as they were."""
  lrs, momenta = (jnp.asarray(v)[s] for v in space.values())
  hparams = dict(opt_state.hyperparams)
  if space.lrs:
    hparams['learning_rate'] = lrs
  if space.momenta:
    hparams['momentum'] = momenta
  return opt_state._replace(hyperparams=hparams)


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


def credited_server_step(server_opt: optax.GradientTransformation,
                         state: ServerState, delta, space,
                         z: jax.Array, val_loss, at: float = 1.0
                         ) -> tuple[ServerState, jax.Array]:
  """The server step at configuration `z` of `space` (an injected
  optimizer's), and its credit dL_val(theta + c u)/dc at c = `at`, u the
  step's update and `val_loss(params) -> f32[]`
  (`pfhpo.policies.server_axis`)."""
  state = state._replace(opt_state=with_server_hparams(state.opt_state,
                                                       space, z))
  stepped = server_step(server_opt, state, delta)
  u = jax.tree_util.tree_map(jnp.subtract, stepped.params, state.params)
  credit = jax.grad(lambda c: val_loss(jax.tree_util.tree_map(
      lambda p, d: p + c * d, state.params, u)))(jnp.float32(at))
  return stepped, credit


def chosen_server_step(axis, policy_state, server_opt, state: ServerState,
                       delta, updated: jax.Array, key: jax.Array, val_loss,
                       at: float):
  """The round's server step: at the run's own configuration where the
  policy has no server `axis` (`policies.server_axis.ServerAxis`), else at
  the one it draws, whose row learns from the step's credit (a round that
  did not move the server, `updated` False, is a failure).
  (stepped ServerState, policy state, i32[] the draw or -1)."""
  if axis is None:
    return server_step(server_opt, state, delta), policy_state, jnp.int32(-1)
  z = axis.propose(policy_state, key)
  stepped, credit = credited_server_step(server_opt, state, delta,
                                         axis.space, z, val_loss, at)
  return stepped, axis.update(policy_state, z, credit, ~updated), z
