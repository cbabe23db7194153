"""The run loop: one compiled round per round, metrics as they come.

    summary = run(cfg)

builds the run (`setup.build`: every check, nothing written), claims its
directory (`outputs.RunDirectory`), starts from the initial state or the
last checkpoint, and per round: samples the clients from (seed, round),
takes their rows of per-client state, runs the round, puts the rows back.
Every `eval_every` rounds it evaluates the global model and logs a
`MetricsRow`; at the last round every client also fine-tunes (personalised
accuracy). Choices are logged at evaluations and checkpoints, so no round
waits for the host.
"""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from pfhpo.experiment.checkpoints import RunCheckpoints, RunState, Totals
from pfhpo.experiment.config import Config
from pfhpo.experiment.outputs import (RunDirectory, check_resumable,
                                      config_record)
from pfhpo.experiment.plots import plot_run
from pfhpo.experiment.records import MetricsRow, Summary
from pfhpo.experiment.setup import Experiment, build, keys, sample_clients
from pfhpo.federated import put_rows, take_rows
from pfhpo.settings import require
from pfhpo.types import RoundMetrics


def run(cfg: Config) -> Summary:
  """Runs `cfg`; returns the summary (also written to its directory)."""
  experiment = build(cfg)
  out = RunDirectory(cfg.run.out_dir,
                     f'{cfg.data.dataset}-{cfg.policy.policy}', cfg.run.resume)
  try:
    return _train(experiment, out)
  finally:
    out.close()


def _train(exp: Experiment, out: RunDirectory) -> Summary:
  run, data = exp.cfg.run, exp.data
  record = config_record(exp.cfg, exp.resolved)
  init_key, round_key = keys(run.seed)
  algorithm, table = exp.algorithm.init(init_key, data.num_clients)
  zero = jnp.zeros((), jnp.int32)
  state = RunState(0, algorithm, table, Totals(zero, zero), (), (), None, 0.0)
  checkpoints = RunCheckpoints(out.path)
  if run.resume:  # read before anything is written: a bad one changes nothing
    check_resumable(out.path, record)
    state = checkpoints.restore(state)
    require(state.round <= run.rounds,
            f'`resume`: the checkpoint is at round {state.round}, past '
            f'`rounds`={run.rounds}; pass `rounds` >= {state.round}.')
  resumed_from = state.round if run.resume else None
  out.start(record, state.rows, state.round)
  start = time.perf_counter() - state.seconds
  pending = []  # rounds whose choices are not logged yet

  categorical = exp.policy.probabilities is not None

  def flush() -> tuple:
    """Logs the pending rounds' choices; all rounds' choice counts."""
    counts = []
    for r, clients, m in pending:
      out.log_choices(r, clients, m.choices, m.hparams)
      if categorical:
        counts.append(tuple(np.bincount(
            m.choices, minlength=exp.space.size).tolist()))
    pending.clear()
    out.flush()
    return state.choice_counts + tuple(counts)

  with tqdm(total=run.rounds, initial=state.round, unit='round',
            desc=f'{exp.cfg.policy.policy} {exp.cfg.data.dataset}/'
            f'{exp.cfg.model.model}', mininterval=2.0) as bar:
    for r in range(state.round + 1, run.rounds + 1):
      clients = sample_clients(run.seed, r, data.num_clients,
                               run.clients_per_round)
      algorithm, rows, metrics = exp.step(
          state.algorithm, take_rows(state.client_table, clients),
          exp.batch(clients), jax.random.fold_in(round_key, r))
      put_rows(state.client_table, clients, rows)
      state = state._replace(round=r, algorithm=algorithm, totals=Totals(
          state.totals.local_steps + metrics.local_steps_total,
          state.totals.dropped_clients + metrics.dropped_clients))
      pending.append((r, clients, metrics))
      if state.first_round_seconds is None:
        jax.block_until_ready(algorithm)
        state = state._replace(first_round_seconds=time.perf_counter() - start)
      last = r == run.rounds
      if r % run.eval_every == 0 or last:
        state = state._replace(choice_counts=flush())
        row = _row(exp, state, metrics, time.perf_counter() - start, last)
        state = state._replace(rows=state.rows + (row,))
        out.log_metrics(row)
        bar.set_postfix(acc=f'{row.global_acc:.3f}',
                        loss=f'{row.global_loss:.3f}')
      if last or (run.checkpoint_every and r % run.checkpoint_every == 0):
        state = state._replace(choice_counts=flush(),
                               seconds=time.perf_counter() - start)
        checkpoints.save(state)
      bar.update(1)
  checkpoints.close()
  summary = _summary(exp, state, time.perf_counter() - start, resumed_from)
  out.write_summary(summary)
  plot_run(out.path, exp, state, summary)
  return summary


def _row(exp: Experiment, state: RunState, m: RoundMetrics, seconds: float,
         final: bool) -> MetricsRow:
  """The metrics row of the round just run (`m`), evaluated now."""
  ev = exp.evaluate(state.algorithm.server.params)
  personal = {}
  if final:
    p = exp.personalize(state.algorithm)
    personal = dict(personal_acc=p.mean, personal_acc_p10=p.p10,
                    personal_acc_pooled=p.pooled)
  optional = lambda v: None if np.isnan(v) else float(v)
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
      seconds=round(seconds, 3),
      policy_entropy=optional(m.policy_entropy),
      local_val_loss=optional(m.local_val_loss), **personal)


def _summary(exp: Experiment, state: RunState, seconds: float,
             resumed_from: int | None) -> Summary:
  final = state.rows[-1]
  everyone = jnp.arange(exp.data.num_clients, dtype=jnp.int32)
  return Summary(
      final=final,
      best_global_acc=max(row.global_acc for row in state.rows),
      global_error=1.0 - final.global_acc,
      refine_error=1.0 - final.personal_acc_pooled,
      rounds=exp.cfg.run.rounds, total_seconds=round(seconds, 3),
      first_round_seconds=round(state.first_round_seconds, 3),
      resumed_from_round=resumed_from,
      round_compilations=len(exp.traces),
      configurations=[exp.space.describe(z) for z in range(exp.space.size)],
      policy=exp.policy.summarize(state.algorithm.policy, everyone))
