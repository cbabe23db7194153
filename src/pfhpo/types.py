"""The records that pfhpo's modules exchange.

Shapes: C clients in the federation, K clients in a round, H candidate
configurations, M validation examples, N_max / Nv_max the padded examples
per client; T rounds a credit looks ahead (its horizon). Every record is a
NamedTuple, hence a pytree: it passes through `jax.jit`, `vmap` and orbax
as it is.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax

from pfhpo.settings import require

Params = Any  # a model's parameter pytree


class ServerState(NamedTuple):
  """The server model and its optimizer's state."""
  params: Params
  opt_state: Any


class ClientHParams(NamedTuple):
  """Per-client hyper-parameters: traced arrays, one entry per client (or
  one client's scalars, inside the vmapped round)."""
  lr: jax.Array  # f32[K]
  local_steps: jax.Array  # i32[K]
  batch_size: jax.Array  # i32[K]
  # f32[K] the algorithm's own searched setting (Ditto's lambda, FedRep's
  # body steps: its module registers it as `tuned`); 0 for an algorithm without one
  tuned: jax.Array

  @property
  def sgd(self) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(lr, local_steps, batch_size): what `make_local_update` takes."""
    return self.lr, self.local_steps, self.batch_size


class LocalStats(NamedTuple):
  """What a client reports besides its parameters."""
  loss: jax.Array  # f32[] mean training loss over its steps
  alignment: jax.Array  # f32[] FATHOM's phi_i (1 unless tracked)
  start_loss: jax.Array  # f32[] the first step's loss, at the start params
  end_loss: jax.Array  # f32[] the trained params' loss on that same batch


class ClientBatch(NamedTuple):
  """K clients' padded examples; client i's real ones are its first count[i]."""
  x: jax.Array  # u8/f32[K, N_max, *feature_shape]
  y: jax.Array  # i32[K, N_max]
  count: jax.Array  # i32[K]


class ValBatch(NamedTuple):
  """Validation examples of the aggregated model, weights summing to one."""
  x: jax.Array  # u8/f32[M, *feature_shape]
  y: jax.Array  # i32[M]
  weight: jax.Array  # f32[M]


class RoundBatch(NamedTuple):
  """What one round reads: its clients, their training data, the validation
  examples of the aggregate, and (for policies that learn from them) the
  clients' own validation splits."""
  clients: jax.Array  # i32[K] indices into the federation
  train: ClientBatch
  val: ValBatch
  local_val: ClientBatch | None = None


class RoundState(NamedTuple):
  """What a round carries to the next, on the device."""
  server: ServerState
  policy: Any  # the policy's own state record
  # the last rounds a credit over several rounds replays
  # (`pfhpo.federated.horizon.Window`; () for a one-round credit)
  window: Any = ()
  # a population's members, whose best is `server` and `policy`
  # (`pfhpo.federated.population.Population`; () for a single run)
  population: Any = ()


class CreditSettings(NamedTuple):
  """The settings of a round's credit (`pfhpo.federated.credit.make_credit`);
  the defaults are the shipped method's: dL/dc at c = `at` 1 of the
  validation loss `horizon` rounds on, the rounds after the first taken by
  `estimator` ('exact', 'first_order' or 'sampled', from `sample` of
  their clients trained again)."""
  horizon: int = 2
  estimator: str = 'sampled'
  sample: int = 2
  at: float = 0.5

  def checked(self) -> 'CreditSettings':
    require(self.horizon >= 1,
            f'`horizon` must be >= 1 rounds, got {self.horizon}')
    require(self.estimator in ESTIMATORS, f'unknown `horizon_credit`='
            f'{self.estimator!r}; choose one of {", ".join(ESTIMATORS)}')
    require(self.sample >= 1,
            f'`horizon_sample` must be >= 1 clients, got {self.sample}')
    require(0 < self.at <= 1, f'`credit_at` must be in (0, 1], got {self.at}')
    return self


# How a credit over T rounds takes the rounds after the first
# (`pfhpo.federated.estimators`).
ESTIMATORS = ('exact', 'first_order', 'sampled')


class RoundMetrics(NamedTuple):
  """What one round measured. Scalars are f32[]/i32[]; per-client arrays [K]."""
  train_loss: jax.Array  # mean training loss of the clients kept
  val_loss: jax.Array  # validation loss of the aggregated model
  val_acc: jax.Array  # validation accuracy of the aggregated model
  dropped_clients: jax.Array  # clients left out as diverged
  rejected: jax.Array  # bool: the server's divergence test refused it
  updated: jax.Array  # bool: the server moved (a client kept, aggregate taken)
  local_steps_total: jax.Array  # local steps the round's clients took
  local_val_loss: jax.Array  # clients' own validation loss (NaN: unmeasured)
  policy_entropy: jax.Array  # mean entropy of the round's rows (NaN: none)
  choices: jax.Array  # i32[K] configuration index (-1: not a grid point)
  hparams: ClientHParams  # [K] each, what every client used
  # f32[K] dL/dc_i of the clients this round credited: its own, or with a
  # credit over T rounds, round r - T + 1's (zeros unless measured)
  credit: jax.Array
  # i32[] the server configuration the policy drew (-1: the run's own)
  server_choice: jax.Array


class Feedback(NamedTuple):
  """What a round measured, for the policy to learn from."""
  clients: jax.Array  # i32[K] client indices of the round
  choices: jax.Array  # i32[K] configuration index each client used
  credit: jax.Array  # f32[K] dL/dc_i at the credit's c = t_c 1 (zeros unless
  # measured; for a credit over T rounds, of that round's validation loss)
  val_loss: jax.Array  # f32[] validation loss of the aggregated model
  val_acc: jax.Array  # f32[] validation accuracy of the aggregated model
  client_loss: jax.Array  # f32[K] each client's mean local training loss
  # f32[K] client i's validation loss of its own locally trained theta_i
  # (zeros unless measured), and i32[K] its validation examples.
  local_val_loss: jax.Array | None = None
  local_val_count: jax.Array | None = None
  delta: Any = None  # the aggregate update theta_g - theta (server pytree)
  alignment: jax.Array | None = None  # f32[K] (ones unless measured)
  # bool[K] the clients whose update failed: diverged (left out), or in an
  # aggregate the server rejected, or whose credit or loss overflowed
  failed: jax.Array | None = None
