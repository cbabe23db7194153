"""Learned categorical logits: their table for every scope, how a client
reads its row, and the score-function step that moves them.

The logits alpha are a table with one row per client (`scope='client'`,
personalised), a single shared row (`scope='global'`), or both (`'prior'`:
alpha_i = a + b_i, a shared row that every client's update moves, by
`prior_rate` times the mean of the round's scores, plus a per-client
offset that only client i's moves, so that the shared row learns what the
clients agree on `prior_rate` times as fast as an offset learns one
client), or a
network of the client's features plus the offset (`'features'`: alpha_i =
g_w(phi_i) + b_i, `features.py`, so a client never in a round starts from
what similar clients learned). Client i draws its configuration z_i ~
Categorical(softmax(alpha_i)). Policies that learn move the logits with

    alpha <- alpha - lr * sum_i a_i grad_alpha log p_alpha(z_i)

through an optax optimizer (one optimizer state per row, so Adam's bias
correction counts each client's own updates), where the advantage a_i is
what distinguishes them: the shared delayed reward for REINFORCE, the
back-propagated credit dL/dc_i for the Gumbel reward-assignment method.
Rows of clients that were not in the round are left untouched.

A row holds P parameters and gives the H logits through a fixed basis,
alpha = row @ B with B f32[P, H] (`logit_basis`): the identity ('joint',
one logit per configuration), one indicator row per value of each
hyper-parameter axis ('axes': alpha[z] = sum_a beta_a[z_a] / sqrt(n), so
p is the product of one categorical per axis, the form of FedEx's
released code, Khodak et al., NeurIPS 2021), or both stacked
('joint+axes'), each of the n parts scaled so that a configuration's own
logit moves as under 'joint'. Under the axes every credit to a
configuration also moves each value it holds, so that evidence on lr 0.1
x 10 steps reaches every lr 0.1 and every 10-step configuration; the
joint part keeps what the axes cannot express (an lr that is good at 1
step and bad at 10).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.errors import ConfigError
from pfhpo.policies.base import Policy, optimizer_of
from pfhpo.policies.distribution import distribution_policy
from pfhpo.policies.features import apply_net, init_net, relative_log_loss
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import (check_choice, checked, default_of, require,
                            setting)
from pfhpo.types import Feedback


SCOPES = ('client', 'global', 'prior', 'features')
SCOPE_HELP = (
    "'client' (one row per client: personalised), 'global' (one shared "
    "row), 'prior' (a shared row moved by `prior_rate` times the round's "
    "mean score, plus a per-client offset) or 'features' (a network of "
    "the client's features plus the offset)")
BASES = ('joint', 'axes', 'joint+axes')
BASIS_HELP = (
    "how a row's parameters give the logits: 'joint' (one per "
    "configuration), 'axes' (one per value of each hyper-parameter: a "
    "product of one categorical per axis, so evidence on a configuration "
    "moves every configuration sharing its values) or 'joint+axes' (both, "
    "summed)")
PRIOR_RATE_HELP = (
    "'prior' scope: the shared row moves by this many times the round's "
    "mean score (1: as fast as one client's offset)")


class PolicyState(NamedTuple):
  # f32[R, P]: the rows' parameters, alpha = row @ B (`logit_basis`; P =
  # H under 'joint'); R = C ('client', 'features': client i's offset), 1
  # ('global'), 1 + C ('prior': row 0 is the shared row, row 1 + i client
  # i's offset)
  logits: jax.Array
  opt_state: Any  # optax state with a leading row axis R
  baseline: jax.Array  # f32[] running mean of the advantage signal
  net: Any = ()  # 'features': g_w's parameters (`features.py`)
  net_opt_state: Any = ()  # and their optax state
  seen_loss: Any = ()  # 'features': f32[C] log of each client's last
  # the server's row, for a policy that also chooses the server's
  # configuration (`server_axis.ServerRow`)
  server: Any = ()


@checked
class LogitsConfig:
  """Settings of a policy whose logits an optax optimizer moves."""
  policy_opt: str = setting('sgd', 'optax optimizer of the logits: sgd, adam')
  policy_lr: float = setting(0.5, 'learning rate of the logits')
  policy_scope: str = setting('client', SCOPE_HELP)
  prior_rate: float = setting(1.0, PRIOR_RATE_HELP)
  policy_basis: str = setting('joint', BASIS_HELP)

  def __post_init__(self):
    optimizer_of(self.policy_opt, self.policy_lr)
    check_choice('policy_scope', self.policy_scope, SCOPES)
    check_choice('policy_basis', self.policy_basis, BASES)
    check_prior_rate(self.prior_rate)
    default = default_of(self, 'prior_rate')
    require(self.prior_rate == default or self.policy_scope == 'prior',
            f"`prior_rate` moves the 'prior' scope's shared row; pass "
            f"`policy_scope`=prior or leave it at {default}, got scope "
            f"'{self.policy_scope}'")

  def optimizer(self) -> optax.GradientTransformation:
    return optimizer_of(self.policy_opt, self.policy_lr)


def check_prior_rate(rate: float) -> None:
  require(rate > 0, f'`prior_rate` must be > 0, got {rate}')


def logit_basis(space: SearchSpace, basis: str) -> np.ndarray:
  """B f32[P, H] with alpha = row @ B for `basis` (BASES): the identity
  ('joint'), a 0/1 row per value of each axis of the space that holds two
  values or more, marking the configurations that hold it ('axes'), or
  both stacked ('joint+axes'); its n parts each scaled by 1/sqrt(n), so
  that diag(B^T B) = 1: a configuration's own logit moves under a score
  as under 'joint', and the rest of the step goes to the configurations
  that share its values."""
  check_choice('policy_basis', basis, BASES)
  parts = [np.eye(space.size)] if basis != 'axes' else []
  if basis != 'joint':
    for values in (space.lr, space.local_steps, space.batch_size,
                   space.tuned):
      levels = np.unique(values)
      if len(levels) > 1:
        parts.append(levels[:, None] == values[None, :])
  require(parts, "`policy_basis`='axes' needs an axis of the space with two "
          "values or more; pass 'joint'")
  return (np.concatenate(parts) / np.sqrt(len(parts))).astype(np.float32)


def categorical_policy(space: SearchSpace,
                       optimizer: optax.GradientTransformation, scope: str,
                       update: Callable[[PolicyState, Feedback], PolicyState],
                       basis: np.ndarray,
                       needs: frozenset = frozenset(),
                       features: np.ndarray | None = None) -> Policy:
  """A learned categorical policy over `space` with logits of `scope`
  (SCOPES) through `basis` (f32[P, H], `logit_basis`), sampled by
  `propose` and moved by `update` (which calls `score_update` with the
  same scope, basis and `features`, f32[C, F], the clients' phi that the
  'features' scope reads)."""
  check_choice('policy_scope', scope, SCOPES)
  if scope == 'features' and features is None:
    raise ConfigError("`policy_scope`='features' needs the clients' "
                      'features (a run gives them; pass `features`)')

  def init(key, num_clients):
    rows = {'global': 1, 'prior': 1 + num_clients}.get(scope, num_clients)
    if scope != 'features':
      return init_state(optimizer, rows, basis.shape[0])
    return init_state(optimizer, rows, basis.shape[0],
                      init_net(key, features.shape[1] + 1, space.size)
                      )._replace(seen_loss=jnp.full(num_clients, jnp.nan))

  policy = distribution_policy(
      space, init,
      lambda state, clients: logits_of(state, scope, basis, clients,
                                       features),
      update, needs | ({'pre_loss'} if scope == 'features' else set()))
  if scope != 'features':
    return policy

  def observe(state, clients, pre_loss):
    return state._replace(seen_loss=state.seen_loss.at[clients].set(
        jnp.log(jnp.maximum(pre_loss, 1e-6))))

  return policy._replace(observe=observe)


def init_state(optimizer: optax.GradientTransformation, num_rows: int,
               size: int, net: Any = ()) -> PolicyState:
  """Zero rows of `size` parameters (uniform logits), one optimizer state
  per row, and `net` (g_w's parameters, if any) with its own optimizer
  state."""
  logits = jnp.zeros((num_rows, size), jnp.float32)
  return PolicyState(logits, jax.vmap(optimizer.init)(logits),
                     jnp.zeros((), jnp.float32), net,
                     optimizer.init(net) if net else ())


def logits_of(state: PolicyState, scope: str, basis: np.ndarray,
              clients: jax.Array,
              features: np.ndarray | None = None) -> jax.Array:
  """The logits each client reads: f32[K, H]."""
  return read_logits(state.logits, state.net, state.seen_loss, scope, basis,
                     clients, features)


def read_logits(table: jax.Array, net: Any, seen_loss: Any, scope: str,
                basis: np.ndarray, clients: jax.Array,
                features: np.ndarray | None) -> jax.Array:
  """alpha_i = (the sum of its rows of the table) @ `basis` (and, for
  'features', + g_w(phi_i), phi_i the client's `features` row and its
  relative loss, `features.py`)."""
  alpha = jnp.sum(table[rows_of(scope, clients)], axis=1) @ basis  # f32[K, H]
  if scope == 'features':
    phi = jnp.concatenate([jnp.asarray(features)[clients],
                           relative_log_loss(seen_loss)[clients, None]], 1)
    alpha = alpha + apply_net(net, phi)
  return alpha


def rows_of(scope: str, clients: jax.Array) -> jax.Array:
  """The rows of the logits table whose sum each client reads: i32[K, 1]
  ('client', 'global', 'features') or i32[K, 2] ('prior': the shared row,
  the offset)."""
  clients = clients[:, None]
  if scope in ('client', 'features'):
    return clients
  if scope == 'global':
    return jnp.zeros_like(clients)
  return jnp.concatenate([jnp.zeros_like(clients), 1 + clients], axis=1)


def score_update(state: PolicyState, optimizer: optax.GradientTransformation,
                 scope: str, basis: np.ndarray, clients: jax.Array,
                 choices: jax.Array,
                 advantage: jax.Array,
                 features: np.ndarray | None = None,
                 prior_rate: float = 1.0) -> PolicyState:
  """One optimizer step on S(alpha) = sum_i a_i log p_alpha(z_i).

  grad_alpha log p(z) = onehot(z) - softmax(alpha), taken through
  `basis` (B (onehot(z) - p) for a row) and summed into the rows
  the clients read (for 'prior', into the shared row from every client,
  scaled to `prior_rate` times the round's mean, and into each offset from
  its own client; for 'features' through g_w into its parameters from
  every client, by the same optimizer); the optimizer minimises S, so a
  positive advantage (a cost) makes z_i less likely.
  """
  rows = rows_of(scope, clients)  # i32[K, 1 or 2]

  def surrogate(table, net):
    log_p = jax.nn.log_softmax(read_logits(
        table, net, state.seen_loss, scope, basis, clients,
        features))  # f32[K, H]
    return jnp.sum(advantage * jnp.take_along_axis(
        log_p, choices[:, None], axis=1)[:, 0])

  grads, net_grads = jax.grad(surrogate, argnums=(0, 1))(state.logits,
                                                         state.net)
  if scope == 'prior':  # prior_rate times the round's mean score: at 1 the
    # shared row moves as fast as one client's offset, not K times faster
    grads = grads.at[0].multiply(prior_rate / clients.shape[0])
  if state.net:  # the round's mean score: g_w, which every client reads,
    # moves as fast as one client's offset, not K times faster
    net_grads = jax.tree_util.tree_map(lambda g: g / clients.shape[0],
                                       net_grads)
    net_updates, net_opt_state = optimizer.update(
        net_grads, state.net_opt_state, state.net)
    state = state._replace(net=optax.apply_updates(state.net, net_updates),
                           net_opt_state=net_opt_state)
  updates, opt_state = jax.vmap(optimizer.update)(grads, state.opt_state,
                                                  state.logits)
  touched = jnp.zeros(state.logits.shape[0], bool).at[rows.ravel()].set(True)
  keep = lambda new, old: jnp.where(
      touched.reshape(-1, *[1] * (new.ndim - 1)), new, old)
  return state._replace(
      logits=keep(state.logits + updates, state.logits),
      opt_state=jax.tree_util.tree_map(keep, opt_state, state.opt_state))
