"""What every policy shares: its interface, the feedback it learns from, and
the score-function update of per-client categorical logits.

A policy is a few pure functions, in the style of an optax
`GradientTransformation`:

    state            = policy.init(key, num_clients)
    hparams, choices = policy.propose(state, clients, key)
    state            = policy.update(state, feedback)
    hparams, choices = policy.prefer(state, clients, key)   (the argmax)
    p                = policy.probabilities(state, clients)   (categorical only)

and `needs`, the set of measurements the round must make for it beyond the
default (MEASUREMENTS below). Each policy owns its state's type; the
categorical ones share `PolicyState`.

The logits alpha are a table with one row per client (`scope='client'`,
personalised) or a single shared row (`scope='global'`). Client i draws its
configuration z_i ~ Categorical(softmax(alpha_i)). Policies that learn move
the logits with

    alpha <- alpha - lr * sum_i a_i grad_alpha log p_alpha(z_i)

through an optax optimizer (one optimizer state per row, so Adam's bias
correction counts each client's own updates), where the advantage a_i is
what distinguishes them: the shared delayed reward for REINFORCE, the
back-propagated credit dL/dc_i for the Gumbel reward-assignment method.
Rows of clients that were not in the round are left untouched.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.errors import ConfigError
from pfhpo.space import SearchSpace, hparams_for

SCOPES = ('client', 'global')
# What a policy may ask the round to measure (each costs compute):
#   'credit'     dL/dc_i, a backward pass through the aggregation (gumbel);
#   'local_val'  each client's validation loss of its own trained theta_i
#                (FedEx, personalised FedEx);
#   'alignment'  each client's min over local steps of the cosine between
#                its gradient and its cumulative update (FATHOM).
MEASUREMENTS = ('credit', 'local_val', 'alignment')


class Feedback(NamedTuple):
  """What a round measured, for the policy to learn from."""
  clients: jax.Array  # i32[K] client indices of the round
  choices: jax.Array  # i32[K] configuration index each client used
  credit: jax.Array  # f32[K] dL/dc_i at c = 1 (zeros unless measured)
  val_loss: jax.Array  # f32[] validation loss of the aggregated model
  val_acc: jax.Array  # f32[] validation accuracy of the aggregated model
  client_loss: jax.Array  # f32[K] each client's mean local training loss
  # f32[K] client i's validation loss of its own locally trained theta_i
  # (zeros unless measured), and i32[K] its validation examples.
  local_val_loss: jax.Array | None = None
  local_val_count: jax.Array | None = None
  delta: Any = None  # the aggregate update theta_g - theta (server pytree)
  alignment: jax.Array | None = None  # f32[K] (ones unless measured)
  diverged: jax.Array | None = None  # bool[K] non-finite update, left out


class PolicyState(NamedTuple):
  logits: jax.Array  # f32[R, H], R = num_clients ('client') or 1 ('global')
  opt_state: Any  # optax state with a leading row axis R
  baseline: jax.Array  # f32[] running mean of the advantage signal


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
  needs: frozenset = frozenset()  # a subset of MEASUREMENTS


def diverged_of(fb: Feedback) -> jax.Array:
  """bool[K]: the clients whose update was non-finite (none if unreported)."""
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


def check_scope(scope: str) -> None:
  if scope not in SCOPES:
    raise ConfigError(f'unknown --policy_scope={scope!r}; choose one of '
                      f'{", ".join(SCOPES)}')


def categorical_policy(space: SearchSpace,
                       optimizer: optax.GradientTransformation, scope: str,
                       update: Callable[[PolicyState, Feedback], PolicyState],
                       needs: frozenset = frozenset()) -> Policy:
  """A learned categorical policy over `space`: one logits row per client
  (`scope='client'`) or one shared row (`'global'`), sampled by `propose`
  and moved by `update`."""
  check_scope(scope)

  def init(key, num_clients):
    del key
    return init_state(optimizer, num_clients if scope == 'client' else 1,
                      space.size)

  return Policy(init, sample_of(space, logits_of), update,
                argmax_of(space, logits_of),
                lambda state, clients: jax.nn.softmax(logits_of(state, clients)),
                needs)


def logits_of(state: PolicyState, clients: jax.Array) -> jax.Array:
  """The logits row each client reads: f32[K, H]."""
  return state.logits[rows_of(state, clients)]


def sample_of(space: SearchSpace, logits: Callable) -> Callable:
  """`propose` of a categorical policy: z_i ~ Categorical(softmax(logits_i))."""

  def propose(state, clients, key):
    choices = jax.random.categorical(key, logits(state, clients))
    return hparams_for(space, choices), choices

  return propose


def argmax_of(space: SearchSpace, logits: Callable) -> Callable:
  """`prefer` of a categorical policy: each client's most likely candidate."""

  def prefer(state, clients, key):
    del key
    choices = jnp.argmax(logits(state, clients), axis=-1).astype(jnp.int32)
    return hparams_for(space, choices), choices

  return prefer


def init_state(optimizer: optax.GradientTransformation, num_rows: int,
               size: int) -> PolicyState:
  """Uniform logits (zeros), one optimizer state per row."""
  logits = jnp.zeros((num_rows, size), jnp.float32)
  return PolicyState(logits, jax.vmap(optimizer.init)(logits),
                     jnp.zeros((), jnp.float32))


def rows_of(state: PolicyState, clients: jax.Array) -> jax.Array:
  """Row of the logits table each client reads: i32[K]."""
  if state.logits.shape[0] == 1:
    return jnp.zeros_like(clients)
  return clients


def mean_entropy(p: jax.Array) -> jax.Array:
  """Mean over rows of the entropy of the distributions p: f32[K, H], nats."""
  plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
  return jnp.maximum(-jnp.mean(jnp.sum(plogp, axis=-1)), 0.0)  # no -0.0


def score_update(state: PolicyState, optimizer: optax.GradientTransformation,
                 clients: jax.Array, choices: jax.Array,
                 advantage: jax.Array) -> PolicyState:
  """One optimizer step on S(alpha) = sum_i a_i log p_alpha(z_i).

  grad_alpha log p(z) = onehot(z) - softmax(alpha), summed into the rows
  the clients read; the optimizer minimises S, so a positive advantage
  (a cost) makes z_i less likely.
  """
  rows = rows_of(state, clients)

  def surrogate(logits):
    log_p = jax.nn.log_softmax(logits[rows])  # f32[K, H]
    return jnp.sum(advantage * jnp.take_along_axis(
        log_p, choices[:, None], axis=1)[:, 0])

  grads = jax.grad(surrogate)(state.logits)  # f32[R, H]
  updates, opt_state = jax.vmap(optimizer.update)(grads, state.opt_state,
                                                  state.logits)
  touched = jnp.zeros(state.logits.shape[0], bool).at[rows].set(True)
  keep = lambda new, old: jnp.where(
      touched.reshape(-1, *[1] * (new.ndim - 1)), new, old)
  return state._replace(
      logits=keep(state.logits + updates, state.logits),
      opt_state=jax.tree_util.tree_map(keep, opt_state, state.opt_state))
