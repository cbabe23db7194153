"""What every policy shares: its interface, the feedback it learns from, and
the penalty of a client whose update failed.

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
categorical ones share `PolicyState` (`logits.py`), and those that are a
distribution per client share its sampling and argmax
(`distribution.py`). Each policy module also registers its name and its
own config (`registry.py`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.errors import ConfigError
from pfhpo.settings import check_choice, require
from pfhpo.types import Feedback


# What a policy may ask the round to measure (each costs compute):
#   'credit'     dL/dc_i, as the round's `Credit` takes it (gumbel);
#   'local_val'  each client's validation loss of its own trained theta_i
#                (FedEx, personalised FedEx);
#   'alignment'  each client's min over local steps of the cosine between
#                its gradient and its cumulative update (FATHOM).
#   'pre_loss'   each client's loss of the server model on its training
#                data, before it trains, given to `Policy.observe` before
#                the round proposes (the 'features' scope).
MEASUREMENTS = ('credit', 'local_val', 'alignment', 'pre_loss')
CREDIT = 'credit'


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
  # (state, clients, f32[K] losses) -> state: records the 'pre_loss'
  # measurement (None for a policy that does not ask for it)
  observe: Callable | None = None
  # A member of a population the round runs P copies of (`Members`, the
  # population's round `pfhpo.federated.population`); None for a single
  # run.
  population: Any = None
  # The server's configuration as one more choice, one draw a round
  # (`server_axis.ServerAxis`, its row in the state's `server`); None:
  # the run's own server settings.
  server_axis: Any = None


class Members(NamedTuple):
  """What a population (`pfhpo.federated.population`) runs a member
  policy with: how many members, when and how many the worst copy the best
  (PBT's exploit), and how a copy moves away from its source (explore)."""
  size: int  # P members
  exploit_every: int  # rounds between exploit-and-explore steps
  quantile: float  # q: the worst ceil(q P) copy one of the best ceil(q P)
  # the server configurations the members search (`ServerSpace`); None:
  # the run's own
  server: Any
  # (policy state, i32[] server configuration, key) -> both moved: a
  # copy's explore (the server configuration as given where `server` is
  # None)
  explore: Callable
  # whether members 1..P-1 start explored from their first state (members
  # whose first states are alike, as the method's uniform logits are)
  spread: bool = False


def check_members(size: int, exploit_every: int, quantile: float) -> None:
  """The settings every population shares (`Members`), checked."""
  require(size >= 1, f'`population` must be >= 1, got {size}')
  require(exploit_every >= 1,
          f'`exploit_every` must be >= 1 rounds, got {exploit_every}')
  require(0 < quantile <= 0.5,
          f'`quantile` must be in (0, 0.5] (the best and the worst must not '
          f'overlap), got {quantile}')


def failed_of(fb: Feedback) -> jax.Array:
  """bool[K]: the clients whose update failed, diverged or rejected with its
  aggregate (none if unreported)."""
  if fb.failed is None:
    return jnp.zeros(fb.clients.shape, bool)
  return fb.failed


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


def mean_entropy(p: jax.Array) -> jax.Array:
  """Mean over rows of the entropy of the distributions p: f32[K, H], nats."""
  plogp = jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0)
  return jnp.maximum(-jnp.mean(jnp.sum(plogp, axis=-1)), 0.0)  # no -0.0
