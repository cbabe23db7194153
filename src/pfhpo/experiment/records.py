"""What a run writes: a metrics row per evaluated round, and its summary."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from pfhpo.tuners import Observation


@dataclasses.dataclass(frozen=True)
class MetricsRow:
  """One line of metrics.jsonl. Figures of the round are the last round's;
  `_total` ones count from the start. Optional ones are left out of the
  line when unmeasured."""
  round: int
  global_acc: float  # test accuracy of the global model, pooled
  global_loss: float
  client_acc_mean: float  # its mean over clients
  train_loss: float
  val_loss: float  # of the aggregate, on the round's validation batch
  mean_lr: float  # the round's clients' mean configuration
  mean_local_steps: float
  mean_batch_size: float
  local_steps_total: int
  dropped_clients: int  # left out of the round's aggregate as diverged
  dropped_clients_total: int
  # Aggregates the server refused as exploded, from the start, and the
  # latest rounds in a row in which the server model did not move.
  rejected_aggregates_total: int
  stalled_rounds: int
  seconds: float
  # of the server's model (the one tested) on the round's validation batch
  # (unset in rows written before pfhpo measured it)
  val_acc: float | None = None
  policy_entropy: float | None = None  # categorical policies
  # the server's learning rate and momentum now, where a policy sets them
  # (`server_lrs`, `server_momenta`: gumbel's draw, FedPop's best member's)
  server_lr: float | None = None
  server_momentum: float | None = None
  local_val_loss: float | None = None  # policies learning from it (FedEx)
  # At the last round: every client fine-tunes with its preferred
  # configuration; mean, bottom decile and pooled test accuracy.
  personal_acc: float | None = None
  personal_acc_p10: float | None = None
  personal_acc_pooled: float | None = None
  # Of them, the clients never in a round, and their mean personal accuracy.
  unseen_clients: int | None = None
  personal_acc_unseen: float | None = None
  # At the last round, per client group of a heterogeneous federation
  # (pfhpo.data.groups): {group: {'clients', 'global_acc' (pooled over the
  # group's test examples), 'personal_acc' (its clients' mean), for a
  # categorical policy 'mean_probabilities' (its clients' mean), and
  # 'unseen' (the same for its clients never in a round, if any)}}.
  groups: dict | None = None

  def to_json(self) -> dict:
    return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

  @staticmethod
  def from_json(row: dict) -> 'MetricsRow':
    return MetricsRow(**row)


@dataclasses.dataclass(frozen=True)
class Summary:
  """summary.json: the last row's figures and the run's own."""
  final: MetricsRow
  best_global_acc: float
  # The test accuracy at the evaluated round of best validation accuracy
  # (the first of ties): the model a run would hand over chosen on
  # validation, never on test (None: no round validated).
  test_at_best_val: float | None
  # Khodak et al.'s two figures: the global model's test error and the
  # error after each client fine-tunes it ("refine"), both pooled.
  global_error: float
  refine_error: float
  rounds: int
  total_seconds: float
  first_round_seconds: float  # since the start, compilation included
  compile_seconds: float  # tracing, lowering and compiling the round (this
  # process's: a resumed run compiles again)
  resumed_from_round: int | None
  round_compilations: int  # one per run; more is a bug
  configurations: list[str]  # the search space, in index order
  policy: dict  # where the policy ended (its own `summarize`)
  # Why the run stopped before `rounds` (None: it ran them all); `final` is
  # then the last round run, with the last model the server accepted.
  stopped: str | None = None

  def to_json(self) -> dict:
    fields = {f.name: getattr(self, f.name)
              for f in dataclasses.fields(self) if f.name != 'final'}
    return {**self.final.to_json(), **fields}


def observations(rows: Sequence[dict]) -> list[Observation]:
  """A run's metrics rows (metrics.jsonl's) as a tuner sees them."""
  return [Observation(r['round'], r['val_acc'],
                      r['global_acc'], r['local_steps_total']) for r in rows]
