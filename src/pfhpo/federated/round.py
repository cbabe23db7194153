"""One compiled round: every algorithm pfhpo runs, FedAvg included.

Communication-Efficient Learning of Deep Networks from Decentralized Data.
  H. B. McMahan et al. AISTATS 2017. https://arxiv.org/abs/1602.05629

For the round's K clients, in one jitted function compiled once per run:

    l_i              = L_train_i(theta)           (if the policy needs it)
    z_i, hparams_i   = policy.propose(policy_state, clients)        (per client)
    theta_i          = LocalSGD(theta, hparams_i)                    (vmapped)
    L_i^val          = L_val_i(theta_i)           (if the policy needs it)
    theta_g(c)       = theta + sum_i w_i c_i (theta_i - theta)       c = 1
    L, dL/dc         = value_and_grad(L_val(theta_g(c)))(1)          (credit)
    theta           <- ServerOpt(theta, -(theta_g(1) - theta))
    policy_state    <- policy.update(policy_state, feedback)

and, for a policy that also chooses the server's configuration
(`Policy.server_axis`), one draw z a round, its step's credit
dL_val(theta + c u(z))/dc at c = t (`pfhpo.policies.server_axis`).

with w_i = D_i / D, or the algorithm's own (`ClientAlgorithm.weights`:
uniform for Reptile's second phase and for MOCHA). FedAvg is this round
with the `static` policy of one configuration (`fedavg`). The policy says
what the round measures (`policy.needs`): the backward pass through the
aggregation for 'credit' (`credit.py`: at c = t 1), the clients'
validation losses for 'local_val', the step-gradient alignment for
'alignment', and for 'pre_loss' each client's loss l_i of the server model
on its training data before it trains, which `policy.observe` records
before the policy proposes.

A policy may look further (`Policy.horizon` = K > 1): then the round takes
no credit of its own aggregate; it closes the window of round r - K + 1
instead, crediting that round's clients with dL_val(theta_{r+1})/dc_{r-K+1}
through the rounds between (exactly, to first order, or with a sample of
their clients trained again) and moving their rows (`horizon.py`, whose
window of the last K - 1 rounds lives in `RoundState.window`).

The validation loss is a weighted sum over `RoundBatch.val` (a server-held
set, or the round's clients' own splits: `pfhpo.data.validation`). L_i^val,
which FedEx learns from, is client i's mean loss of its own trained model on
its own validation split (`RoundBatch.local_val`).

Divergence (`divergence.py`) is tested twice: a diverged client's update
counts as zero and the others' weights are renormalised, and the server
accepts the aggregate only if its validation loss is finite and at most
EXPLODED * log(classes) (`make_rejected`). A rejected aggregate, or a round
in which every client diverged, leaves the server state (model and
optimizer) as it was: the server keeps the last good model.
The policy hears which clients failed (`Feedback.diverged`): those that
diverged, and every client of a rejected aggregate, and penalises their
configurations. `RoundMetrics.updated` says whether the server moved, so a
run can stop when it no longer does.

What a client does is the algorithm's (`pfhpo.algorithms`: FedAvg's local
SGD by default, or a personalisation algorithm's client): it returns the
theta_i the round aggregates, and its updated row of per-client state,
which outlives the round on the host (`client_rows.py`); `apply` receives
the round's rows and returns them updated (a failed client keeps its old
row). FedAvg keeps none: its table is `()`.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from pfhpo.federated.client import ClientAlgorithm, sgd_client
from pfhpo.federated.cohort import make_cohort
from pfhpo.federated.credit import one_round_credit
from pfhpo.federated.divergence import make_diverged, make_rejected
from pfhpo.federated.horizon import (ClientUpdates, RoundInput, RoundRecord,
                                     close, horizon_credit, init_window,
                                     replay_step, sample_inputs, step_at)
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.federated.server import chosen_server_step, init_server
from pfhpo.federated.sharding import replicate
from pfhpo.models import Model, accuracy, cross_entropy
from pfhpo.policies.base import CREDIT, MEASUREMENTS, Policy, mean_entropy
from pfhpo.policies.space import SearchSpace, hparams_for
from pfhpo.types import (Feedback, RoundBatch, RoundMetrics, RoundState,
                         ValBatch)


class FederatedAlgorithm(NamedTuple):
  """A federated algorithm as two pure functions (fedjax's interface, with
  the round's clients' host-resident rows passed through `apply`):

  init:  (key, num_clients, batch=None) -> (RoundState, ClientTable)
  apply: (RoundState, rows, RoundBatch, key) -> (RoundState, rows, RoundMetrics)

  (`batch`, any round's RoundBatch, shapes the window of past rounds that a
  credit over several rounds keeps; unused otherwise.)

  `donate`: the arguments of `apply` that its caller may donate
  (`jax.jit`'s donate_argnums).
  """
  init: Callable[[jax.Array, int], tuple[RoundState, Any]]
  apply: Callable[..., tuple[RoundState, Any, RoundMetrics]]
  donate: tuple[int, ...] = (0,)


def make_round(model: Model, features: Callable,
               server_opt: optax.GradientTransformation, space: SearchSpace,
               policy: Policy, momentum: float = 0.0, unroll: bool = False,
               client_chunk: int | None = None,
               mesh: Mesh | None = None,
               client: ClientAlgorithm | None = None,
               recompute: bool = False) -> FederatedAlgorithm:
  """The round of `policy` over `space`, compiled for the space's bounds.

  `client_chunk` sets how many clients train side by side, `mesh` the
  devices the client axis is split over, and `recompute` whether a credit's
  backward pass trains each group of clients again instead of keeping
  every client's update (`aggregate_clients`); `init`
  places the state on every device of `mesh`. `client` is the algorithm's
  client side (`pfhpo.algorithms.create`, built for this space; unset:
  FedAvg's local SGD with `momentum` and `unroll`).
  """
  unknown = policy.needs - set(MEASUREMENTS)
  if unknown:
    raise ValueError(f'policy needs unknown measurements {sorted(unknown)}')
  credit = CREDIT in policy.needs
  client = client or sgd_client(make_local_update(
      model, features, space.max_steps, space.max_batch, momentum, unroll,
      track_alignment='alignment' in policy.needs))
  masked_loss = make_masked_loss(model, features)
  diverged_of = make_diverged(model.num_classes)
  rejected_of = make_rejected(model.num_classes)

  horizon = policy.horizon
  keeps_updates = horizon > 1  # the window keeps each client's update

  def init(key: jax.Array, num_clients: int, batch: RoundBatch | None = None):
    """The initial state and per-client table; a policy whose credit looks
    `horizon` > 1 rounds ahead also needs `batch`, any round's RoundBatch
    (its shapes), for the window of past rounds."""
    model_key, policy_key = jax.random.split(key)
    params = model.init(model_key)
    server = init_server(server_opt, client.server.init(
        jax.random.fold_in(model_key, 1), params))
    table = client.init_rows(params, num_clients)
    window = ()
    if horizon > 1:
      if batch is None:
        raise ValueError(f'a credit over {horizon} rounds keeps the last '
                         'rounds: pass `batch` (any RoundBatch) to `init`')
      window = init_window(
          horizon, server, table, batch,
          hparams_for(space, jnp.zeros(batch.clients.shape, jnp.int32)),
          jax.random.split(key)[0], policy.horizon_credit,
          policy.horizon_sample)
    state = RoundState(server, policy.init(policy_key, num_clients), window)
    return replicate(state, mesh), table

  def val_metrics(server_params, val: ValBatch):
    logits = model.apply(client.server.model(server_params), features(val.x))
    loss = jnp.sum(val.weight * cross_entropy(logits, val.y))
    acc = jnp.sum(val.weight * accuracy(logits, val.y))
    return loss, acc

  cohort = make_cohort(client, masked_loss, diverged_of, keeps_updates,
                       client_chunk, mesh, recompute)

  # The later rounds' clients train again outside `shard_map` (the
  # partitioner places them), whose training jax 0.10 cannot transpose.
  server_step_at = step_at(server_opt, policy.server_axis)
  later_round = replay_step(policy.horizon_credit, make_cohort(
      client, masked_loss, diverged_of, True, client_chunk, None, recompute),
      server_step_at)

  def apply(state: RoundState, rows, batch: RoundBatch, key: jax.Array):
    server, clients, data = state.server, batch.clients, batch.train
    chex.assert_equal_shape([clients, data.count])
    k = clients.shape[0]
    propose_key, train_key = jax.random.split(key)
    train_keys = jax.random.split(train_key, k)  # each client's
    pstate = state.policy
    if 'pre_loss' in policy.needs:  # before it trains: the server model's
      # loss on each client's training data
      pstate = policy.observe(pstate, clients, jax.vmap(
          masked_loss, in_axes=(None, 0, 0, 0))(
              client.server.model(server.params), data.x, data.y, data.count))
    hparams, choices = policy.propose(pstate, clients, propose_key)
    local_split = (tuple(batch.local_val) if 'local_val' in policy.needs
                   else ())
    if local_split:
      chex.assert_equal_shape([clients, batch.local_val.count])

    def objective(coeffs, val: ValBatch):
      delta, aux, weighting = cohort(
          server, rows, data, hparams, train_keys, coeffs, local_split)
      theta_g = jax.tree_util.tree_map(jnp.add, server.params, delta)
      loss, acc = val_metrics(theta_g, val)
      return loss, (delta, acc, (aux, weighting))

    val_loss, val_acc, delta, (aux, (weights, share)), dl_dc = (
        one_round_credit(objective, val_metrics, server.params, batch.val,
                         k, credit and horizon == 1, policy.credit_at))
    stats, client_val_loss, diverged, new_rows, updates = aux  # [K]
    trained = ~jnp.all(diverged)  # some client's update is in the aggregate
    rejected = trained & rejected_of(val_loss)
    updated = trained & ~rejected
    # What the policy hears: also a client whose credit or loss overflowed,
    # and every client of a rejected aggregate.
    failed = (diverged | ~jnp.isfinite(dl_dc) | ~jnp.isfinite(client_val_loss)
              | rejected)
    # No update to take: keep the previous model and optimizer state.
    before = server
    stepped, pstate, z_server = chosen_server_step(
        policy.server_axis, pstate, server_opt, server, delta, updated,
        jax.random.fold_in(key, 2), lambda p: val_metrics(p, batch.val)[0],
        policy.credit_at)
    server = jax.tree_util.tree_map(
        lambda new, old: jnp.where(updated, new, old), stepped, server)
    local_val = batch.local_val
    window = state.window
    if horizon == 1:
      pstate = policy.update(pstate, Feedback(
          clients, choices, dl_dc, val_loss, val_acc, stats.loss,
          client_val_loss, None if local_val is None else local_val.count,
          delta, stats.alignment, failed))
    else:  # this round closes the window of the oldest round it holds
      inputs = ()
      if policy.horizon_credit == 'exact':
        inputs = RoundInput(rows, data, hparams, train_key)
      elif policy.horizon_credit == 'sampled':
        inputs = sample_inputs(jax.random.fold_in(key, 3),
                               policy.horizon_sample, rows, data, hparams,
                               train_keys)
      record = RoundRecord(
          before, clients, choices, failed, stats.loss, updated,
          jnp.int32(z_server),
          ClientUpdates(updates, jnp.where(diverged, 0.0, weights / share),
                        delta), inputs)
      pstate, dl_dc, window = close(
          window, record, lambda first, later: horizon_credit(
              server_step_at, later_round,
              lambda p: val_metrics(p, batch.val)[0], first, later,
              policy.credit_at),
          lambda state, first, dl_dc: policy.update(state, Feedback(
              first.clients, first.choices, dl_dc, val_loss, val_acc,
              first.client_loss,
              diverged=first.failed | ~jnp.isfinite(dl_dc))), pstate)
    kept = jnp.where(diverged, 0.0, weights)
    if 'local_val' in policy.needs:  # what FedEx learns from
      n_val = jnp.where(diverged, 0, local_val.count)
      local_val_loss = jnp.sum(n_val * client_val_loss) / jnp.maximum(
          jnp.sum(n_val), 1)
    else:
      local_val_loss = jnp.float32(jnp.nan)
    entropy = (jnp.float32(jnp.nan) if policy.probabilities is None else
               mean_entropy(policy.probabilities(pstate, clients)))
    metrics = RoundMetrics(
        train_loss=jnp.sum(jnp.where(diverged, 0.0, kept * stats.loss)) /
        jnp.maximum(jnp.sum(kept), 1e-12),
        val_loss=val_loss, val_acc=val_acc,
        dropped_clients=jnp.sum(diverged), rejected=rejected,
        updated=updated,
        local_steps_total=jnp.sum(hparams.local_steps),
        local_val_loss=local_val_loss, policy_entropy=entropy,
        choices=choices, hparams=hparams, credit=dl_dc,
        server_choice=jnp.int32(z_server))
    return RoundState(server, pstate, window), new_rows, metrics

  # The state is donated, but not with a window of past rounds: the round
  # reads the window's stored client updates after it has written its
  # own, so XLA would first copy a donated window to a temporary (one
  # more pass over k updates, on fresh pages each round: first order K = 2
  # at mlp/50 clients 1.55x a static round, against 1.32x undonated;
  # `benchmarks/policy_overhead.py --donate_window`, BUILD_NOTES.md).
  # Undonated, the new window goes to a buffer of its own, and the device
  # holds two windows either way.
  return FederatedAlgorithm(init, apply, (0,) if horizon == 1 else ())

