"""FATHOM: one-shot online adaptation of the clients' learning rate, epochs
and batch size by hypergradient descent.

Federated Hypergradient Descent. A. K. Kan. 2022.
https://arxiv.org/abs/2211.02106  (code: github.com/andrewkkan/fathom)

Every client of a round uses the same learning rate eta, epochs E and batch
size B; client i takes K_i = max(ceil(E n_i / B), 1) local steps on its n_i
examples (Sec. 3.2; ceil as in the released code). After each round, with
Delta_t the aggregate update and Delta_sm its exponential average (alpha =
0.5, Sec. 3.3.5) *before* Delta_t is folded in,

    H_t = N_t = -cos(Delta_sm, Delta_t)                       (eq. 5, 9)
    G_t = -sum_i (n_i / n) phi_i,
          phi_i = min_s cos(g_s, theta_0 - theta_{s+1})      (eq. 12; client.py)

and the exponentiated-gradient updates (eq. 13-15; gamma_eta = gamma_E =
0.01, gamma_B = 0.1 as in Algorithm 1)

    eta <- eta exp(-gamma_eta H_t)
    E   <- E   exp(-gamma_E (N_t + G_t))
    B   <- B   exp( gamma_B G_t)
    Delta_sm <- alpha Delta_sm + (1 - alpha) Delta_t

A round in which a client diverged sets H_t = N_t = +1 (the worst value),
and G_t averages over the clients that trained.

G_t is the paper's compute penalty: it has no coefficient of its own, and
local gradients that turn against the way a client has already moved
(phi_i < 0) shrink E and grow B, i.e. buy fewer local steps.

Bounds. The round is compiled for at most `max_steps` steps of at most
`max_batch` examples, so B is kept in [1, max_batch] and E in the range
where it still changes some client's step count, [B / n_max, max_steps B /
n_min]. The start E_0 is one epoch, or, where the largest client would then
need more steps than compiled, the most epochs the round holds (max_steps
B_0 / n_max); an E_0 given explicitly that needs more steps than compiled is
a ConfigError, never a silent clip. eta is not bounded (the exponentiated
update keeps it positive; the released code caps it at 0.5 for EMNIST).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.trees import tree_cosine
from pfhpo.policies.base import Policy, failed_of
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.settings import checked, require, setting
from pfhpo.types import ClientHParams, Feedback

STEP_LR, STEP_EPOCHS, STEP_BATCH = 0.01, 0.01, 0.1  # gamma_eta, gamma_E, gamma_B
SMOOTHING = 0.5  # alpha


class FathomState(NamedTuple):
  log_hp: jax.Array  # f32[3]: log E, log eta, log B
  delta_sm: Any  # exponential average of the aggregate updates (server pytree)


def fathom(lr: float, batch_size: int, epochs: float | None, max_steps: int,
           max_batch: int, train_counts: np.ndarray, params_like,
           steps: tuple[float, float, float] = (STEP_EPOCHS, STEP_LR,
                                                STEP_BATCH),
           tuned: float = 0.0) -> Policy:
  """FATHOM starting from (lr, batch_size, epochs).

  Args:
    lr, batch_size, epochs: eta_0, B_0, E_0 (None: one epoch, or fewer where
      the largest client would need more than `max_steps` steps).
    max_steps, max_batch: the bounds the round is compiled for.
    train_counts: i32[C] every client's training examples n_i.
    params_like: a pytree shaped like the server model (arrays or
      `jax.ShapeDtypeStruct`s), for Delta_sm.
    steps: (gamma_E, gamma_eta, gamma_B).
    tuned: the algorithm's own setting (`ClientHParams.tuned`), held fixed.
  """
  counts = np.asarray(train_counts)
  n_min, n_max = max(int(counts.min()), 1), int(counts.max())
  if epochs is None:
    epochs = min(1.0, max_steps * batch_size / n_max)
  first = int(np.ceil(epochs * n_max / batch_size - 1e-6))
  require(batch_size <= max_batch,
          f'fathom starts at batch {batch_size}, above the {max_batch} the '
          f'round is compiled for; pass `max_batch_size` >= {batch_size}.')
  require(first <= max_steps,
          f'fathom starts at {epochs:g} epoch(s) of batch {batch_size}: the '
          f'largest client ({n_max} examples) needs {first} local steps, more '
          f'than the {max_steps} the round is compiled for; pass '
          f'`max_local_steps` >= {first} or a smaller `fathom_epochs`.')
  counts = jnp.asarray(counts, jnp.int32)
  gammas = jnp.asarray(steps, jnp.float32)

  def clip(log_hp):
    log_b = jnp.clip(log_hp[2], 0.0, jnp.log(float(max_batch)))
    b = jnp.exp(log_b)
    log_e = jnp.clip(log_hp[0], jnp.log(b / n_max),
                     jnp.log(max_steps * b / n_min))
    return jnp.stack([log_e, log_hp[1], log_b])

  def init(key, num_clients):
    del key, num_clients
    zeros = jax.tree_util.tree_map(lambda a: jnp.zeros(a.shape, a.dtype),
                                   params_like)
    return FathomState(clip(jnp.log(jnp.array(
        [epochs, lr, batch_size], jnp.float32))), zeros)

  def prefer(state, clients, key=None):
    del key
    e, eta, b = jnp.exp(state.log_hp)
    b = jnp.clip(jnp.round(b), 1, max_batch).astype(jnp.int32)
    k = jnp.ceil(e * counts[clients] / b).astype(jnp.int32)
    hparams = ClientHParams(jnp.full(clients.shape, eta),
                            jnp.clip(k, 1, max_steps),
                            jnp.full(clients.shape, b),
                            jnp.full(clients.shape, tuned, jnp.float32))
    return hparams, jnp.full(clients.shape, -1, jnp.int32)  # not a grid index

  def update(state: FathomState, fb: Feedback) -> FathomState:
    diverged = failed_of(fb)
    n = jnp.where(diverged, 0.0, counts[fb.clients].astype(jnp.float32))
    # H_t = N_t; a diverged client is the clearest sign of a step too large:
    # the worst value, +1 (consecutive updates opposed).
    hyper = jnp.where(jnp.any(diverged), 1.0,
                      -tree_cosine(state.delta_sm, fb.delta))
    penalty = -jnp.sum(jnp.where(diverged, 0.0, n * fb.alignment)) / (
        jnp.maximum(jnp.sum(n), 1.0))  # G_t over the clients that trained
    direction = jnp.stack([hyper + penalty, hyper, -penalty])
    delta_sm = jax.tree_util.tree_map(
        lambda s, d: SMOOTHING * s + (1 - SMOOTHING) * d, state.delta_sm,
        fb.delta)
    return FathomState(clip(state.log_hp - gammas * direction), delta_sm)

  return Policy(init, prefer, update, prefer, None,
                lambda state, clients: hyperparameters(state),
                frozenset({'alignment'}))


def hyperparameters(state: FathomState) -> dict:
  """The current (E, eta, B) as Python floats."""
  e, eta, b = np.exp(np.asarray(state.log_hp))
  return {'epochs': float(e), 'lr': float(eta), 'batch_size': float(b)}


@checked
class FathomConfig:
  static_index: int = setting(
      0, 'the configuration whose learning rate and batch size FATHOM '
      'starts from')
  fathom_epochs: float | None = setting(
      None, 'epochs E_0 FATHOM starts from (unset: one epoch, or the most '
      'the round holds where the largest client would need more than '
      '`max_local_steps` steps)')

  def __post_init__(self):
    require(self.fathom_epochs is None or self.fathom_epochs > 0,
            f'`fathom_epochs` must be > 0, got {self.fathom_epochs}')


@register('fathom', FathomConfig, searches=False)
def _build(config: FathomConfig, context: PolicyContext) -> Policy:
  space, index = context.space, config.static_index
  require(0 <= index < space.size,
          f'`static_index`={index} is outside the {space.size} '
          f'configurations of the search space')
  require(not space.tuned_name,
          f'fathom tunes the learning rate, epochs and batch size, not '
          f'`{space.tuned_name}`; drop `algorithm_values` or choose another '
          f'policy.')
  return fathom(float(space.lr[index]), int(space.batch_size[index]),
                config.fathom_epochs, space.max_steps, space.max_batch,
                context.train_counts, context.params_like,
                tuned=float(space.tuned[index]))
