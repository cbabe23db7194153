"""One compiled round: every algorithm pfhpo runs, FedAvg included.

Communication-Efficient Learning of Deep Networks from Decentralized Data.
  H. B. McMahan et al. AISTATS 2017. https://arxiv.org/abs/1602.05629

For the round's K clients, in one jitted function compiled once per run:

    l_i              = L_train_i(theta)           (if the policy needs it)
    z_i, hparams_i   = policy.propose(policy_state, clients)        (per client)
    theta_i          = client.local(theta, hparams_i)                (vmapped)
    L_i^val          = L_val_i(theta_i)           (if the policy needs it)
    theta_g(c)       = theta + sum_i w_i c_i (theta_i - theta)       c = 1
    L, dL/dc         = credit.aggregate: value_and_grad(L_val(theta_g(c)))
    theta           <- ServerOpt(theta, -(theta_g(1) - theta))
    policy_state    <- credit.assign: policy.update(policy_state, feedback)

The round takes its policy, its client and its credit as components
(`make_round`). The policy says what the round measures (`policy.needs`):
the clients' validation losses for 'local_val', the step-gradient
alignment for 'alignment', and for 'pre_loss' each client's loss l_i of
the server model on its training data before it trains, which
`policy.observe` records before the policy proposes. The credit
(`credit.py`) says how the clients are credited: by dL/dc of the round's
own aggregate at c = t_c 1, or of the validation loss T rounds later, in
which case the round closes the window of round r - T + 1 and moves that
round's clients' rows (`horizon.py`; the window lives in
`RoundState.window`). A policy that also chooses the server's
configuration (`Policy.server_axis`) draws one z a round, its step
credited by dL_val(theta + c u(z))/dc at the credit's c = t
(`pfhpo.policies.server_axis`).

The weights are w_i = D_i / D, or the algorithm's own
(`ClientAlgorithm.weights`: uniform for Reptile's second phase and for
MOCHA). FedAvg is this round with the `static` policy of one configuration
(`fedavg`). The validation loss is a weighted sum over `RoundBatch.val` (a
server-held set, or the round's clients' own splits:
`pfhpo.data.validation`). L_i^val, which FedEx learns from, is client i's
mean loss of its own trained model on its own validation split
(`RoundBatch.local_val`).

Divergence (`divergence.py`) is tested twice: a diverged client's update
counts as zero and the others' weights are renormalised, and the server
accepts the aggregate only if its validation loss is finite and at most
EXPLODED * log(classes) (`make_rejected`). A rejected aggregate, or a round
in which every client diverged, leaves the server state (model and
optimizer) as it was: the server keeps the last good model.
The policy hears which clients failed (`Feedback.failed`): those that
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
from pfhpo.federated.credit import (Credit, RoundParts, make_credit,
                                    no_credit)
from pfhpo.federated.divergence import make_diverged, make_rejected
from pfhpo.federated.horizon import ClientUpdates, RoundRecord, step_at
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.federated.metrics import round_metrics
from pfhpo.federated.server import chosen_server_step, init_server
from pfhpo.federated.sharding import replicate
from pfhpo.models import Model, accuracy, cross_entropy
from pfhpo.policies.base import CREDIT, MEASUREMENTS, Policy
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


class Execution(NamedTuple):
  """How the round runs, never what it computes (up to the order of float
  sums): `client_chunk` clients trained side by side (None: all), the
  client axis split over `mesh`'s devices, and with `recompute` a credit's
  backward pass trains each group of clients again instead of keeping
  every client's update (`aggregate_clients`)."""
  client_chunk: int | None = None
  mesh: Mesh | None = None
  recompute: bool = False


def make_round(model: Model, features: Callable,
               server_opt: optax.GradientTransformation, space: SearchSpace,
               policy: Policy, credit: Credit | None = None,
               client: ClientAlgorithm | None = None,
               execution: Execution = Execution()) -> FederatedAlgorithm:
  """The round of `policy` over `space` with `credit` (unset: the shipped
  method's, `make_credit()`, for a policy that learns from a credit, else
  `no_credit()`) and `client` (the algorithm's client side,
  `pfhpo.algorithms.create`, built for this space; unset: FedAvg's local
  SGD), run as `execution` says; `init` places the state on every device
  of its mesh.
  """
  unknown = policy.needs - set(MEASUREMENTS)
  if unknown:
    raise ValueError(f'policy needs unknown measurements {sorted(unknown)}')
  if credit is None:
    credit = make_credit() if CREDIT in policy.needs else no_credit()
  client = client or sgd_client(make_local_update(
      model, features, space.max_steps, space.max_batch,
      track_alignment='alignment' in policy.needs))
  masked_loss = make_masked_loss(model, features)
  diverged_of = make_diverged(model.num_classes)
  rejected_of = make_rejected(model.num_classes)
  chunk, mesh, recompute = execution

  # The model's and the server's initialisation compiled whole, one
  # program each, where eagerly every operation compiles on its own (the
  # digits MLP under gumbel with no compilation cache: 3 programs in 1.3 s
  # against 73 in 3.9 s), to the same bits. The policy's stays eager: its
  # network's first weights (the 'features' scope) would move in their
  # last bit inside a fused program.
  init_params = jax.jit(model.init)

  @jax.jit
  def init_server_window(model_key, params, table, batch):
    server = init_server(server_opt, client.server.init(
        jax.random.fold_in(model_key, 1), params))
    window = ()
    if credit.keeps_updates:
      window = credit.init(
          server, table, batch,
          hparams_for(space, jnp.zeros(batch.clients.shape, jnp.int32)),
          model_key)
    return server, window

  def init(key: jax.Array, num_clients: int, batch: RoundBatch | None = None):
    """The initial state and per-client table; a credit over several
    rounds also needs `batch`, any round's RoundBatch (its shapes), for
    the window of past rounds."""
    if credit.keeps_updates and batch is None:
      raise ValueError('a credit over several rounds keeps the last '
                       'rounds: pass `batch` (any RoundBatch) to `init`')
    model_key, policy_key = jax.random.split(key)
    params = init_params(model_key)
    table = client.init_rows(params, num_clients)
    keeps = credit.keeps_updates  # only a window needs the table and batch
    server, window = init_server_window(model_key, params,
                                        table if keeps else None,
                                        batch if keeps else None)
    state = RoundState(server, policy.init(policy_key, num_clients), window)
    return replicate(state, mesh), table

  def val_metrics(server_params, val: ValBatch):
    logits = model.apply(client.server.model(server_params), features(val.x))
    loss = jnp.sum(val.weight * cross_entropy(logits, val.y))
    acc = jnp.sum(val.weight * accuracy(logits, val.y))
    return loss, acc

  cohort = make_cohort(client, masked_loss, diverged_of, credit.keeps_updates,
                       chunk, mesh, recompute)
  # The later rounds' clients train again outside `shard_map` (the
  # partitioner places them), whose training jax 0.10 cannot transpose.
  later_cohort = make_cohort(client, masked_loss, diverged_of, True, chunk,
                             None, recompute)
  server_step_at = step_at(server_opt, policy.server_axis)

  def observe(pstate, server, clients, data):
    """'pre_loss': the server model's loss on each client's training data,
    before it trains."""
    if 'pre_loss' not in policy.needs:
      return pstate
    return policy.observe(pstate, clients, jax.vmap(
        masked_loss, in_axes=(None, 0, 0, 0))(
            client.server.model(server.params), data.x, data.y, data.count))

  def apply(state: RoundState, rows, batch: RoundBatch, key: jax.Array):
    server, clients, data = state.server, batch.clients, batch.train
    chex.assert_equal_shape([clients, data.count])
    k = clients.shape[0]
    propose_key, train_key = jax.random.split(key)
    train_keys = jax.random.split(train_key, k)  # each client's
    pstate = observe(state.policy, server, clients, data)
    hparams, choices = policy.propose(pstate, clients, propose_key)
    own_val = tuple(batch.local_val) if 'local_val' in policy.needs else ()

    def objective(coeffs, val: ValBatch):  # L_val(theta_g(c))
      delta, trained, weighting = cohort(server, rows, data, hparams,
                                         train_keys, coeffs, own_val)
      loss, acc = val_metrics(
          jax.tree_util.tree_map(jnp.add, server.params, delta), val)
      return loss, (delta, acc, (trained, weighting))

    agg = credit.aggregate(objective, val_metrics, server.params, batch.val,
                           k)
    trained, (weights, kept) = agg.aux  # f32[K], f32[]
    diverged = trained.diverged
    some_kept = ~jnp.all(diverged)
    rejected = some_kept & rejected_of(agg.loss)
    updated = some_kept & ~rejected
    # What the policy hears: also a client whose credit or loss overflowed,
    # and every client of a rejected aggregate.
    failed = (diverged | ~jnp.isfinite(agg.dl_dc)
              | ~jnp.isfinite(trained.val_loss) | rejected)
    stepped, pstate, z_server = chosen_server_step(
        policy.server_axis, pstate, server_opt, server, agg.delta, updated,
        jax.random.fold_in(key, 2), lambda p: val_metrics(p, batch.val)[0],
        credit.at)
    record = RoundRecord(
        server, clients, choices, failed, trained.stats.loss, updated,
        jnp.int32(z_server), ClientUpdates(
            trained.update, jnp.where(diverged, 0.0, weights / kept),
            agg.delta),
        credit.keep(jax.random.fold_in(key, 3), rows, data, hparams,
                    train_key, train_keys))

    def learn(pstate, record: RoundRecord, dl_dc, now: bool):
      count = None if batch.local_val is None else batch.local_val.count
      measured = ((trained.val_loss, count, agg.delta,
                   trained.stats.alignment) if now else ())  # this round's
      return policy.update(pstate, Feedback(
          record.clients, record.choices, dl_dc, agg.loss, agg.acc,
          record.client_loss, *measured,
          failed=record.failed | ~jnp.isfinite(dl_dc)))

    pstate, dl_dc, window = credit.assign(
        state.window, record, agg.dl_dc,
        RoundParts(later_cohort, server_step_at,
                   lambda p: val_metrics(p, batch.val)[0]), learn, pstate)
    # No update to take: keep the previous model and optimizer state.
    server = jax.tree_util.tree_map(
        lambda new, old: jnp.where(updated, new, old), stepped, server)
    metrics = round_metrics(policy, pstate, batch, agg, trained, weights,
                            rejected, updated, hparams, choices, dl_dc,
                            z_server, own_val)
    return RoundState(server, pstate, window), trained.rows, metrics

  # The state is donated, but not with a window of past rounds: the round
  # reads the window's stored client updates after it has written its
  # own, so XLA would first copy a donated window to a temporary
  # (BUILD_NOTES.md has the cost). Undonated, the new window goes to a
  # buffer of its own, and the device holds two windows either way.
  return FederatedAlgorithm(init, apply,
                            () if credit.keeps_updates else (0,))

