"""The compiled round of personalised hyper-parameter tuning.

One jitted function, compiled once per run:

    z_i, hparams_i   = policy.propose(policy_state, clients)        (per client)
    theta_i          = LocalSGD(theta, hparams_i)                    (vmapped)
    L_i^val          = L_val_i(theta_i)           (if the policy needs it)
    theta_g(c)       = theta + sum_i w_i c_i (theta_i - theta)       c = 1
    L, dL/dc         = value_and_grad(L_val(theta_g(c)))(1)          (credit)
    theta           <- ServerOpt(theta, -(theta_g(1) - theta))
    policy_state    <- policy.update(policy_state, feedback)

`credit='params'` differentiates the faithful form of the aggregate,
theta_g(c) = sum_i w_i c_i theta_i (equal at c = 1), whose gradient is
dL/dc_i = w_i <dL/dtheta_g, theta_i>; the default `'delta'` gives
w_i <dL/dtheta_g, theta_i - theta>, which does not carry the server model's
own direction into every client's credit.

The validation loss is a weighted sum over a `ValBatch` of examples: a
server-held set (`val_source='server'`, uniform weights) or the round's
clients' own validation splits (`'federated'`, client i's examples weighted
w_i / n_i^val, i.e. the server averages the clients' validation losses).
L_i^val, which FedEx learns from, is client i's mean validation loss of its
own locally trained model, measured on the client beside its training
(`RoundBatch.val_*`).

Divergence: a client whose parameters or training loss come back
non-finite, or whose trained model's loss on its own first examples ends
above EXPLODED times the larger of its loss before training and a uniform
guess's (finite weights that overflow the logits: a learning rate that
explodes), is left out: its update counts as zero and the
others' weights are renormalised, Delta = sum_{i kept} w_i c_i Delta_i /
sum_{i kept} w_i; a round in which every client diverged keeps the previous
server state. The policy learns which clients diverged (`Feedback.diverged`)
and penalises their configurations.

Only what the policy reads is computed (`policy.needs`): the backward pass
through the aggregation for 'credit', the clients' validation losses for
'local_val', the step-gradient alignment for 'alignment'.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from pfhpo.aggregate import aggregate_clients, example_weights
from pfhpo.algorithms.fedavg import RoundBatch, ServerState, server_step
from pfhpo.client import make_local_update
from pfhpo.data.federated import ClientSplit
from pfhpo.models import Model, cross_entropy
from pfhpo.policies.base import MEASUREMENTS, Feedback, Policy, mean_entropy
from pfhpo.space import SearchSpace

CREDITS = ('delta', 'params')
# A client's update is left out as diverged when its loss on its own examples
# ends above EXPLODED x max(its loss before training, log num_classes).
EXPLODED = 10.0


class ValBatch(NamedTuple):
  """Validation examples and their weights (summing to one)."""
  x: jax.Array  # u8/f32[M, *feature_shape]
  y: jax.Array  # i32[M]
  weight: jax.Array  # f32[M]


def server_val_batch(split: ClientSplit, size: int, seed: int) -> ValBatch:
  """A fixed server-held set: `size` examples drawn without replacement from
  all clients' validation splits (all of them if there are fewer)."""
  x, y = split.x[split.mask], split.y[split.mask]
  pick = np.random.default_rng(seed).permutation(len(y))[:size]
  return ValBatch(x[pick], y[pick],
                  np.full(len(pick), 1.0 / len(pick), np.float32))


def federated_val_batch(split: ClientSplit, clients: np.ndarray,
                        train_counts: np.ndarray) -> ValBatch:
  """The round's clients' validation splits, client i weighted w_i / n_i."""
  mask = split.mask[clients]  # bool[K, Nv]
  n_val = np.maximum(mask.sum(1, keepdims=True), 1)
  w = train_counts / train_counts.sum()
  weight = np.where(mask, w[:, None] / n_val, 0.0).astype(np.float32)
  weight /= weight.sum()
  x = split.x[clients]
  return ValBatch(x.reshape(-1, *x.shape[2:]), split.y[clients].reshape(-1),
                  weight.reshape(-1))


def make_round(model: Model, features: Callable,
               server_opt: optax.GradientTransformation, space: SearchSpace,
               policy: Policy, momentum: float = 0.0, unroll: bool = False,
               client_chunk: int | None = None, mesh: Mesh | None = None,
               credit: str = 'delta') -> Callable:
  """round(server, policy_state, clients, batch, val, key)
       -> (server, policy_state, metrics).

  Metrics: the round's mean `train_loss`, `val_loss` and `val_acc` of the
  aggregated model, each client's `choices`, `lr`, `local_steps`,
  `batch_size` and `credit`, `local_steps_total`, `dropped_clients` (left
  out as diverged), for a categorical policy
  the mean `policy_entropy` of the round's clients after the update, and
  where measured the `local_val_loss` of the clients' own trained models
  (weighted by their validation examples).
  """
  if credit not in CREDITS:
    raise ValueError(f'credit must be one of {CREDITS}, got {credit!r}')
  unknown = policy.needs - set(MEASUREMENTS)
  if unknown:
    raise ValueError(f'policy needs unknown measurements {sorted(unknown)}')
  one_client = make_local_update(model, features, space.max_steps,
                                 space.max_batch, momentum, unroll,
                                 track_alignment='alignment' in policy.needs)

  def val_metrics(params, val: ValBatch):
    logits = model.apply(params, features(val.x))
    loss = jnp.sum(val.weight * cross_entropy(logits, val.y))
    acc = jnp.sum(val.weight * (logits.argmax(-1) == val.y))
    return loss, acc

  uniform_loss = float(np.log(model.num_classes))  # cross-entropy of a guess

  def all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a))
                              for a in jax.tree_util.tree_leaves(tree)]))

  def masked_loss(params, x, y, count):
    """Mean loss of one client's model on its first `count` examples."""
    real = jnp.arange(y.shape[0]) < count
    losses = cross_entropy(model.apply(params, features(x)), y)
    return jnp.sum(jnp.where(real, losses, 0.0)) / jnp.maximum(
        jnp.minimum(count, y.shape[0]), 1)

  def run(server: ServerState, pstate, clients: jax.Array, batch: RoundBatch,
          val: ValBatch, key: jax.Array):
    chex.assert_equal_shape([clients, batch.count])
    k = clients.shape[0]
    propose_key, train_key = jax.random.split(key)
    hparams, choices = policy.propose(pstate, clients, propose_key)
    weights = example_weights(batch.count)  # f32[K]
    args = (batch.x, batch.y, batch.count, *hparams,
            jax.random.split(train_key, k))
    if 'local_val' in policy.needs:
      chex.assert_equal_shape([clients, batch.val_count])
      args += (batch.val_x, batch.val_y, batch.val_count)

    def train(x, y, count, lr, steps, batch_size, key, *val_split):
      params, stats = one_client(server.params, x, y, count, lr, steps,
                                 batch_size, key)
      # Probe the model on up to max_batch of the client's own examples:
      # finite but exploded weights show as a loss that grew tenfold.
      probe = (x[:space.max_batch], y[:space.max_batch], count)
      before, after = masked_loss(server.params, *probe), masked_loss(
          params, *probe)
      diverged = ~(all_finite(params) & jnp.isfinite(stats.loss) &
                   (after <= EXPLODED * jnp.maximum(before, uniform_loss)))
      # A diverged client contributes theta_i - theta = 0.
      params = jax.tree_util.tree_map(
          lambda p, s: jnp.where(diverged, s, p), params, server.params)
      val_loss = (masked_loss(params, *val_split) if val_split
                  else jnp.zeros_like(stats.loss))
      return params, (stats, val_loss, diverged)

    def objective(coeffs):
      delta, aux = aggregate_clients(
          train, server.params, args, weights, coeffs, client_chunk, mesh)
      kept = jnp.sum(jnp.where(aux[2], 0.0, weights))  # weight that trained
      share = jnp.where(kept > 0, kept, 1.0)
      scale = (jnp.sum(jnp.where(aux[2], 0.0, weights * coeffs)) / share
               if credit == 'params' else 1.0)
      delta = jax.tree_util.tree_map(lambda d: d / share, delta)
      theta_g = jax.tree_util.tree_map(lambda s, d: scale * s + d,
                                       server.params, delta)
      loss, acc = val_metrics(theta_g, val)
      return loss, (delta, aux, acc)

    ones = jnp.ones(k, jnp.float32)
    if 'credit' in policy.needs:
      (val_loss, (delta, aux, val_acc)), dl_dc = jax.value_and_grad(
          objective, has_aux=True)(ones)
    else:
      val_loss, (delta, aux, val_acc) = objective(ones)
      dl_dc = jnp.zeros(k, jnp.float32)
    stats, client_val_loss, diverged = aux  # per client: [K] each
    # What the policy hears: also a client whose credit or loss overflowed.
    failed = diverged | ~jnp.isfinite(dl_dc) | ~jnp.isfinite(client_val_loss)
    # Every client diverged: keep the previous model and optimizer state.
    server = jax.tree_util.tree_map(
        lambda new, old: jnp.where(jnp.all(diverged), old, new),
        server_step(server_opt, server, delta), server)
    pstate = policy.update(pstate, Feedback(
        clients, choices, dl_dc, val_loss, val_acc, stats.loss,
        client_val_loss, batch.val_count, delta, stats.alignment, failed))
    kept = jnp.where(diverged, 0.0, weights)
    metrics = {
        'train_loss': jnp.sum(jnp.where(diverged, 0.0, kept * stats.loss)) /
                      jnp.maximum(jnp.sum(kept), 1e-12),
        'dropped_clients': jnp.sum(diverged),
        'val_loss': val_loss,
        'val_acc': val_acc,
        'choices': choices,
        **hparams._asdict(),
        'credit': dl_dc,
        'local_steps_total': jnp.sum(hparams.local_steps),
    }
    if 'local_val' in policy.needs:  # what FedEx learns from
      n_val = jnp.where(diverged, 0, batch.val_count)
      metrics['local_val_loss'] = jnp.sum(n_val * client_val_loss) / (
          jnp.maximum(jnp.sum(n_val), 1))
    if policy.probabilities is not None:
      metrics['policy_entropy'] = mean_entropy(
          policy.probabilities(pstate, clients))
    return server, pstate, metrics

  return run
