"""What every policy shares: its interface, the feedback it learns from, and
the score-function update of per-client categorical logits.

A policy is a few pure functions, in the style of an optax
`GradientTransformation`:

    state            = policy.init(key, num_clients)
    hparams, choices = policy.propose(state, clients, key)
    state            = policy.update(state, feedback)
    hparams, choices = policy.prefer(state, clients, key)   (the argmax)
    p                = policy.probabilities(state, clients)   (categorical only)
    figures          = policy.summarize(state, clients)       (for a run's summary)

and `needs`, the set of measurements the round must make for it beyond the
default (MEASUREMENTS below). Each policy owns its state's type; the
categorical ones share `PolicyState`. Each policy module also registers
its name and its own config (`registry.py`).

The logits alpha are a table with one row per client (`scope='client'`,
personalised), a single shared row (`scope='global'`), or both (`'shared'`:
alpha_i = a + b_i, a shared row that every client's update moves plus a
per-client offset that only client i's moves; `'prior'`: the same, the
shared row moved by the mean of the round's scores, so that it learns
what the clients agree on as fast as an offset learns one client), or a
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
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.errors import ConfigError
from pfhpo.policies.features import apply_net, init_net, relative_log_loss
from pfhpo.policies.space import SearchSpace, hparams_for
from pfhpo.settings import check_choice, setting
from pfhpo.types import ClientHParams, Feedback

SCOPES = ('client', 'global', 'shared', 'prior', 'features')
# What a policy may ask the round to measure (each costs compute):
#   'credit'     dL/dc_i, a backward pass through the aggregation (gumbel);
#   'credit_params'  the same through theta_g(c) = sum_i w_i c_i theta_i;
#   'local_val'  each client's validation loss of its own trained theta_i
#                (FedEx, personalised FedEx);
#   'alignment'  each client's min over local steps of the cosine between
#                its gradient and its cumulative update (FATHOM).
#   'pre_loss'   each client's loss of the server model on its training
#                data, before it trains, given to `Policy.observe` before
#                the round proposes (the 'features' scope).
MEASUREMENTS = ('credit', 'credit_params', 'local_val', 'alignment',
                'pre_loss')
# Which credit measurement each form of the aggregate asks for.
CREDITS = {'delta': 'credit', 'params': 'credit_params'}
# How a credit over several rounds goes through the rounds after the first:
# all of their computation ('exact'), or their local training's Jacobian
# taken as the identity ('first_order').
HORIZON_CREDITS = ('exact', 'first_order')


class PolicyState(NamedTuple):
  # f32[R, H]: R = C ('client', 'features': client i's offset), 1
  # ('global'), 1 + C ('shared': row 0 is the shared row, row 1 + i client
  # i's offset)
  logits: jax.Array
  opt_state: Any  # optax state with a leading row axis R
  baseline: jax.Array  # f32[] running mean of the advantage signal
  net: Any = ()  # 'features': g_w's parameters (`features.py`)
  net_opt_state: Any = ()  # and their optax state
  seen_loss: Any = ()  # 'features': f32[C] log of each client's last
  # loss before training (NaN: not measured yet)


class Policy(NamedTuple):
  init: Callable[[jax.Array, int], Any]
  propose: Callable[..., tuple]  # (state, clients, key) -> (hparams, choices)
  update: Callable[[Any, Feedback], Any]
  # (state, clients, key) -> (hparams, choices): the configuration each
  # client would use now, for personalised evaluation (argmax for the
  # learned categorical policies)
  prefer: Callable[..., tuple]
  # (state, clients) -> f32[K, H]; None for a policy that is no distribution
  probabilities: Callable[..., jax.Array] | None
  # (state, clients) -> {name: JSON-able value}: where the policy ended
  summarize: Callable[..., dict]
  needs: frozenset = frozenset()  # a subset of MEASUREMENTS
  # Where the round takes a 'credit' measurement: dL/dc at c = credit_at 1
  # (1: the aggregate's own gradient; see pfhpo.federated.round).
  credit_at: float = 1.0
  # How many validation examples the credit's backward pass sees: a fresh
  # sample each round, drawn in proportion to their weights (None: all).
  credit_examples: int | None = None
  # (state, clients, f32[K] losses) -> state: records the 'pre_loss'
  # measurement (None for a policy that does not ask for it)
  observe: Callable | None = None
  # Over how many rounds a 'credit' measurement looks (1: the round's own
  # aggregate), and how the rounds after the first are differentiated
  # (HORIZON_CREDITS; `pfhpo.federated.horizon`).
  horizon: int = 1
  horizon_credit: str = 'exact'


def diverged_of(fb: Feedback) -> jax.Array:
  """bool[K]: the clients whose update failed, diverged or rejected with its
  aggregate (none if unreported)."""
  if fb.diverged is None:
    return jnp.zeros(fb.clients.shape, bool)
  return fb.diverged


def penalized(values: jax.Array, diverged: jax.Array,
              floor: jax.Array | float = 0.0) -> jax.Array:
  """A cost per client with each diverged client's replaced by one worse than
  every client that trained: the round's largest finite cost (at least
  `floor`) plus three standard deviations of the finite costs (or plus the
  largest magnitude, or 1, when they do not spread). f32[K]."""
  ok = ~diverged
  n = jnp.maximum(jnp.sum(ok), 1)
  finite = jnp.where(ok, values, 0.0)
  mean = jnp.sum(finite) / n
  std = jnp.sqrt(jnp.sum(jnp.where(ok, (values - mean)**2, 0.0)) / n)
  top = jnp.maximum(jnp.max(jnp.where(ok, values, -jnp.inf)), floor)
  top = jnp.where(jnp.any(ok), top, floor)
  spread = jnp.where(std > 0, std, jnp.maximum(jnp.max(jnp.abs(finite)), 1.0))
  return jnp.where(diverged, top + 3.0 * spread, values)


def check_decay(value: float | None, closed: bool) -> None:
  """`baseline_decay` in [0, 1) (a running mean's), or [0, 1] when `closed`
  (a discount, whose 1 is the plain mean)."""
  if value is not None and not (0 <= value <= 1 if closed else 0 <= value < 1):
    raise ConfigError(f'`baseline_decay` must be in [0, 1{"]" if closed else ")"}'
                      f', got {value}')


def optimizer_of(policy_opt: str, policy_lr: float
                 ) -> optax.GradientTransformation:
  """`optax.<policy_opt>(policy_lr)`, for `sgd` or `adam`."""
  check_choice('policy_opt', policy_opt, ('sgd', 'adam'))
  if not policy_lr > 0:
    raise ConfigError(f'`policy_lr` must be > 0, got {policy_lr}')
  return getattr(optax, policy_opt)(policy_lr)


@dataclasses.dataclass(frozen=True)
class LogitsConfig:
  """Settings of a policy whose logits an optax optimizer moves."""
  policy_opt: str = setting('sgd', 'optax optimizer of the logits: sgd, adam')
  policy_lr: float = setting(0.5, 'learning rate of the logits')
  policy_scope: str = setting(
      'client', "'client' (one row per client: personalised), 'global' "
      "(one shared row), 'shared' (a shared row plus a per-client offset), "
      "'prior' (the same, the shared row moved by the round's mean score) "
      "or 'features' (a network of the client's features plus the offset)")

  def __post_init__(self):
    optimizer_of(self.policy_opt, self.policy_lr)
    check_choice('policy_scope', self.policy_scope, SCOPES)

  def optimizer(self) -> optax.GradientTransformation:
    return optimizer_of(self.policy_opt, self.policy_lr)


def summarize_probabilities(probabilities: Callable) -> Callable:
  """`summarize` of a categorical policy: its mean distribution over the
  clients asked about."""

  def summarize(state, clients) -> dict:
    p = np.asarray(probabilities(state, clients))  # f32[K, H]
    return {'mean_probabilities': p.mean(0).round(4).tolist()}

  return summarize


def categorical_policy(space: SearchSpace,
                       optimizer: optax.GradientTransformation, scope: str,
                       update: Callable[[PolicyState, Feedback], PolicyState],
                       needs: frozenset = frozenset(),
                       features: np.ndarray | None = None) -> Policy:
  """A learned categorical policy over `space` with logits of `scope`
  (SCOPES), sampled by `propose` and moved by `update` (which calls
  `score_update` with the same scope and `features`, f32[C, F], the
  clients' phi that the 'features' scope reads)."""
  check_choice('policy_scope', scope, SCOPES)
  if scope == 'features' and features is None:
    raise ConfigError("`policy_scope`='features' needs the clients' "
                      'features (a run gives them; pass `features`)')

  def init(key, num_clients):
    rows = {'global': 1, 'shared': 1 + num_clients,
            'prior': 1 + num_clients}.get(scope, num_clients)
    if scope != 'features':
      return init_state(optimizer, rows, space.size)
    return init_state(optimizer, rows, space.size,
                      init_net(key, features.shape[1] + 1, space.size)
                      )._replace(seen_loss=jnp.full(num_clients, jnp.nan))

  policy = distribution_policy(
      space, init,
      lambda state, clients: logits_of(state, scope, clients, features),
      update, needs | ({'pre_loss'} if scope == 'features' else set()))
  if scope != 'features':
    return policy

  def observe(state, clients, pre_loss):
    return state._replace(seen_loss=state.seen_loss.at[clients].set(
        jnp.log(jnp.maximum(pre_loss, 1e-6))))

  return policy._replace(observe=observe)


def distribution_policy(space: SearchSpace, init: Callable, logits: Callable,
                        update: Callable, needs: frozenset) -> Policy:
  """A policy that is a categorical distribution over `space` per client,
  `logits(state, clients) -> f32[K, H]`: it samples from it, prefers its
  argmax, and summarises its mean."""
  probabilities = lambda state, clients: jax.nn.softmax(logits(state, clients))
  return Policy(init, sample_of(space, logits), update,
                argmax_of(space, logits), probabilities,
                summarize_probabilities(probabilities), needs)


def logits_of(state: PolicyState, scope: str, clients: jax.Array,
              features: np.ndarray | None = None) -> jax.Array:
  """The logits each client reads: f32[K, H]."""
  return read_logits(state.logits, state.net, state.seen_loss, scope,
                     clients, features)


def read_logits(table: jax.Array, net: Any, seen_loss: Any, scope: str,
                clients: jax.Array, features: np.ndarray | None
                ) -> jax.Array:
  """alpha_i from the table's rows (and, for 'features', g_w(phi_i), phi_i
  the client's `features` row and its relative loss, `features.py`)."""
  alpha = jnp.sum(table[rows_of(scope, clients)], axis=1)  # f32[K, H]
  if scope == 'features':
    phi = jnp.concatenate([jnp.asarray(features)[clients],
                           relative_log_loss(seen_loss)[clients, None]], 1)
    alpha = alpha + apply_net(net, phi)
  return alpha


def sample_of(space: SearchSpace, logits: Callable) -> Callable:
  """`propose` of a categorical policy: z_i ~ Categorical(softmax(logits_i))."""

  def propose(state, clients, key):
    choices = jax.random.categorical(key, logits(state, clients))
    return hparams_for(space, choices), choices

  return propose


TIE = 1e-6  # probabilities closer than this are a tie


def argmax_of(space: SearchSpace, logits: Callable) -> Callable:
  """`prefer` of a categorical policy: each client's most likely candidate.

  A row whose largest probability is tied (a client the policy never
  updated has uniform logits) does not take the tie's first index, which
  is the smallest value of every axis: it takes the candidate the asked
  clients prefer together (the argmax of their mean distribution), and if
  that is tied too (a policy that learned nothing), the row's expected
  configuration E_p[lr, steps, batch, tuned] (steps and batch rounded;
  choice -1, off the grid).
  """
  values = [jnp.asarray(a, jnp.float32)
            for a in (space.lr, space.local_steps, space.batch_size,
                      space.tuned)]

  def prefer(state, clients, key):
    del key
    p = jax.nn.softmax(logits(state, clients))  # f32[K, H]
    tied = lambda q: jnp.sum(q >= q.max(-1, keepdims=True) - TIE, -1) > 1
    shared = jnp.mean(p, 0)  # f32[H]
    choices = jnp.where(tied(p), jnp.argmax(shared), jnp.argmax(p, -1))
    choices = jnp.where(tied(shared[None])[0] & tied(p), -1,
                        choices).astype(jnp.int32)
    grid = hparams_for(space, jnp.maximum(choices, 0))
    lr, steps, batch, tuned = (p @ v for v in values)  # f32[K] each
    off = choices < 0
    return ClientHParams(
        jnp.where(off, lr, grid.lr),
        jnp.where(off, jnp.round(steps).astype(jnp.int32), grid.local_steps),
        jnp.where(off, jnp.round(batch).astype(jnp.int32), grid.batch_size),
        jnp.where(off, tuned, grid.tuned)), choices

  return prefer


def init_state(optimizer: optax.GradientTransformation, num_rows: int,
               size: int, net: Any = ()) -> PolicyState:
  """Zero logits, one optimizer state per row, and `net` (g_w's parameters,
  if any) with its own optimizer state."""
  logits = jnp.zeros((num_rows, size), jnp.float32)
  return PolicyState(logits, jax.vmap(optimizer.init)(logits),
                     jnp.zeros((), jnp.float32), net,
                     optimizer.init(net) if net else ())


def rows_of(scope: str, clients: jax.Array) -> jax.Array:
  """The rows of the logits table whose sum each client reads: i32[K, 1]
  ('client', 'global', 'features') or i32[K, 2] ('shared', 'prior': the
  shared row, the offset)."""
  clients = clients[:, None]
  if scope in ('client', 'features'):
    return clients
  if scope == 'global':
    return jnp.zeros_like(clients)
  return jnp.concatenate([jnp.zeros_like(clients), 1 + clients], axis=1)


def mean_entropy(p: jax.Array) -> jax.Array:
  """Mean over rows of the entropy of the distributions p: f32[K, H], nats."""
  plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
  return jnp.maximum(-jnp.mean(jnp.sum(plogp, axis=-1)), 0.0)  # no -0.0


def score_update(state: PolicyState, optimizer: optax.GradientTransformation,
                 scope: str, clients: jax.Array, choices: jax.Array,
                 advantage: jax.Array, entropy_weight: float = 0.0,
                 features: np.ndarray | None = None) -> PolicyState:
  """One optimizer step on S(alpha) = sum_i [a_i log p_alpha(z_i) - beta
  H(p_alpha_i)], beta = `entropy_weight` (an exploration bonus; 0: none).

  grad_alpha log p(z) = onehot(z) - softmax(alpha), summed into the rows
  the clients read (for 'shared', into the shared row from every client and
  into each offset from its own client, and for 'features' through g_w
  into its parameters from every client, by the same optimizer); the
  optimizer minimises S, so a positive advantage (a cost) makes z_i less
  likely, and beta > 0 pulls each client's distribution towards uniform.
  """
  rows = rows_of(scope, clients)  # i32[K, 1 or 2]

  def surrogate(table, net):
    log_p = jax.nn.log_softmax(read_logits(
        table, net, state.seen_loss, scope, clients, features))  # f32[K, H]
    entropy = -jnp.sum(jnp.exp(log_p) * log_p, axis=1)  # f32[K]
    return jnp.sum(advantage * jnp.take_along_axis(
        log_p, choices[:, None], axis=1)[:, 0] - entropy_weight * entropy)

  grads, net_grads = jax.grad(surrogate, argnums=(0, 1))(state.logits,
                                                         state.net)
  if scope == 'prior':  # the round's mean score: the shared row moves as
    # fast as one client's offset, not K times faster
    grads = grads.at[0].divide(clients.shape[0])
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
