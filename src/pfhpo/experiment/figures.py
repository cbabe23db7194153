"""A run's figures, read from its state: the metrics row of an evaluated
round (with each client group's figures and, at the last round, personalised
accuracy), the run's summary, and why a run that no longer moves stops."""
from __future__ import annotations

import collections

import jax.numpy as jnp
import numpy as np

from pfhpo.evaluate import group_means
from pfhpo.experiment.checkpoints import RunState
from pfhpo.experiment.records import MetricsRow, Summary, observations
from pfhpo.experiment.setup import Experiment, sample_clients
from pfhpo.policies.space import describe
from pfhpo.tuners import single_run
from pfhpo.types import RoundMetrics, ValBatch


def stall_message(exp: Experiment, r: int, stalled: int, recent,
                  out_path) -> str:
  """Why the run stops at round `r`, the `stalled`-th round in a row that
  moved no model: what its last rounds (`recent`, their RoundMetrics; fewer
  than `stalled` after a resume) rejected, and the configurations used."""
  used = collections.Counter()
  rejected = 0
  for m in recent:
    rejected += int(m.rejected)
    for z, *hp in zip(*map(np.asarray, (m.choices, *m.hparams))):
      used[exp.space.describe(z) if z >= 0 else
           describe(*hp, exp.space.tuned_name)] += 1
  total = sum(used.values())
  named = ', '.join(f'{c} ({n} of {total})' for c, n in used.most_common(3))
  largest = max(float(jnp.max(m.hparams.lr)) for m in recent)
  n = len(recent)
  causes = [f'the server rejected {rejected} aggregates as exploded'
            if rejected else '',
            f'every client diverged in {n - rejected} rounds'
            if n > rejected else '']
  return (f'no update for {stalled} rounds in a row (rounds '
          f'{r - stalled + 1}-{r}){"" if n == stalled else f"; of the last {n}"}'
          f': {" and ".join(c for c in causes if c)}; the clients used '
          f'{named}. Lower the learning rate (largest {largest:g}: `lrs`) or '
          f'the `local_steps`, or pass `stall_rounds`=0 to go on; the last '
          f"good model's checkpoint and summary are in {out_path}.")


def metrics_row(exp: Experiment, state: RunState, m: RoundMetrics,
                val: ValBatch, seconds: float, final: bool) -> MetricsRow:
  """The metrics row of the round just run (`m`, on validation batch
  `val`), evaluated now: the test figures and the validation accuracy of
  the server's model (after its optimizer's step; the last accepted one
  where it rejected the round's aggregate)."""
  ev = exp.evaluate(state.algorithm.server.params)
  personal = {}
  if final:
    cfg = exp.cfg
    seen = np.zeros(exp.data.num_clients, bool)
    for r in range(1, state.round + 1):
      seen[sample_clients(cfg.run.seed, r, exp.pool,
                          cfg.run.clients_per_round)] = True
    p = exp.personalize(state.algorithm, state.client_table, seen)
    personal = dict(personal_acc=p.mean, personal_acc_p10=p.p10,
                    personal_acc_pooled=p.pooled, unseen_clients=p.unseen,
                    personal_acc_unseen=None if p.unseen == 0
                    else p.unseen_mean,
                    groups=group_figures(exp, state, ev.client_acc,
                                         p.client_acc, seen))
  optional = lambda v: None if np.isnan(v) else float(v)
  # an injected server optimizer's (`server_optimizer`), where searched
  hp = getattr(state.algorithm.server.opt_state, 'hyperparams', {})
  searched = lambda name: (float(hp[name]) if name in hp and (
      exp.policy.server_axis is not None or exp.policy.population is not None)
      else None)
  return MetricsRow(
      round=state.round, global_acc=float(ev.acc),
      global_loss=float(ev.loss), client_acc_mean=float(ev.client_acc_mean),
      train_loss=float(m.train_loss), val_loss=float(m.val_loss),
      mean_lr=float(jnp.mean(m.hparams.lr)),
      mean_local_steps=float(jnp.mean(m.hparams.local_steps)),
      mean_batch_size=float(jnp.mean(m.hparams.batch_size)),
      local_steps_total=int(state.totals.local_steps),
      dropped_clients=int(m.dropped_clients),
      dropped_clients_total=int(state.totals.dropped_clients),
      rejected_aggregates_total=int(state.totals.rejected_aggregates),
      stalled_rounds=int(state.totals.stalled_rounds),
      seconds=round(seconds, 3),
      val_acc=float(exp.validate(state.algorithm.server.params, val)),
      policy_entropy=optional(m.policy_entropy),
      server_lr=searched('learning_rate'),
      server_momentum=searched('momentum'),
      local_val_loss=optional(m.local_val_loss), **personal)


def group_figures(exp: Experiment, state: RunState, global_acc,
                  personal_acc, seen: np.ndarray) -> dict | None:
  """MetricsRow.groups: per client group, the global model's accuracy on
  its test examples, its clients' personal accuracy and where the policy
  put their mass, and the same for those never `seen` in a round (None
  for a federation of one group)."""
  data = exp.data
  if len(data.groups) < 2:
    return None
  group, counts = data.group_of, data.test.counts
  pooled = group_means(np.asarray(global_acc), counts, group,
                       len(data.groups))

  def figures(mine: np.ndarray) -> dict:  # mine: i32[n] clients of a group
    acc = np.asarray(personal_acc)[mine]
    out = {'clients': int(mine.size),
           'personal_acc': float(np.nanmean(acc)) if np.any(~np.isnan(acc))
           else float('nan')}
    if exp.policy.probabilities is not None and mine.size:
      p = np.asarray(exp.policy.probabilities(state.algorithm.policy,
                                              jnp.asarray(mine)))
      out['mean_probabilities'] = p.mean(0).round(4).tolist()
    return out

  out = {}
  for g, name in enumerate(data.groups):
    mine = np.flatnonzero(group == g).astype(np.int32)
    out[name] = {**figures(mine), 'global_acc': float(pooled[g])}
    unseen = mine[~seen[mine]]
    if unseen.size:
      out[name]['unseen'] = figures(unseen)
  return out


def run_summary(exp: Experiment, state: RunState, seconds: float,
                compile_seconds: float, resumed_from: int | None,
                stopped: str | None) -> Summary:
  final = state.rows[-1]
  everyone = jnp.arange(exp.data.num_clients, dtype=jnp.int32)
  return Summary(
      final=final,
      best_global_acc=max(row.global_acc for row in state.rows),
      test_at_best_val=_test_at_best_val(state.rows),
      global_error=1.0 - final.global_acc,
      refine_error=1.0 - final.personal_acc_pooled,
      rounds=exp.cfg.run.rounds, total_seconds=round(seconds, 3),
      first_round_seconds=round(state.first_round_seconds, 3),
      compile_seconds=round(compile_seconds, 3),
      resumed_from_round=resumed_from,
      round_compilations=len(exp.traces),
      configurations=[exp.space.describe(z) for z in range(exp.space.size)],
      policy=exp.policy.summarize(state.algorithm.policy, everyone),
      stopped=stopped)



def _test_at_best_val(rows) -> float | None:
  """The test accuracy of the first evaluated row of best validation
  accuracy (`pfhpo.tuners.single_run`; None: no row validated)."""
  choice = single_run(observations([r.to_json() for r in rows])).choice
  return choice and choice.test_acc
