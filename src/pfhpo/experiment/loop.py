"""The run loop: one compiled round per round, metrics as they come.

    summary = run(cfg)

builds the run (`setup.build`: every check, nothing written), claims its
directory (`outputs.RunDirectory`), starts from the initial state or the
last checkpoint, and per round: samples the clients from (seed, round),
takes their rows of per-client state, runs the round, puts the rows back;
the next round's data is gathered and sent while a round computes. Over
many processes (`pfhpo.distributed`) every process runs this loop on the
same replicated state, and process 0 alone writes. Every
`eval_every` rounds it evaluates the global model and logs a `MetricsRow`;
at the last round every client also fine-tunes (personalised accuracy).
Choices are logged at evaluations and checkpoints; the one figure read back
every round is how many rounds in a row the server model has not moved.

A run that cannot make progress stops: after `stall_rounds` rounds in a row
in which every client diverged or the server rejected the aggregate
(`pfhpo.federated.round`), it evaluates the last good model, writes its
checkpoint and summary (`Summary.stopped` says why) and raises `RunStopped`
naming the configurations the clients used and the fix.
"""
from __future__ import annotations

import collections
import time

import jax
import numpy as np
from jax.experimental import multihost_utils
from tqdm import tqdm

from pfhpo.distributed import is_writer
from pfhpo.experiment.checkpoints import RunCheckpoints, RunState, Totals
from pfhpo.experiment.config import Config
from pfhpo.experiment.figures import metrics_row, run_summary, stall_message
from pfhpo.experiment.outputs import (RunDirectory, check_resumable,
                                      config_record)
from pfhpo.experiment.plots import plot_run
from pfhpo.experiment.records import Summary
from pfhpo.experiment.setup import Experiment, build, keys, sample_clients
from pfhpo.federated import put_rows, take_rows
from pfhpo.errors import RunStopped
from pfhpo.settings import require


# The round's compile time, read from jax's own compile events: the seconds
# spent tracing, lowering and compiling, summed over this process.
COMPILE_EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
                  '/jax/core/compile/jaxpr_to_mlir_module_duration',
                  '/jax/core/compile/backend_compile_duration')
_compiling = [0.0]


def _on_duration(event: str, duration: float, **_) -> None:
  if event in COMPILE_EVENTS:
    _compiling[0] += duration


jax.monitoring.register_event_duration_secs_listener(_on_duration)


def run(cfg: Config) -> Summary:
  """Runs `cfg`; returns the summary (also written to its directory)."""
  experiment = build(cfg)
  out = RunDirectory(cfg.run.out_dir,
                     f'{cfg.data.dataset}-{cfg.policy.policy}', cfg.run.resume,
                     writes=is_writer())
  if jax.process_count() > 1:  # every process has checked `out_dir` before
    # process 0 writes into it
    multihost_utils.sync_global_devices('pfhpo: out_dir checked')
  try:
    return _train(experiment, out)
  finally:
    out.close()


def _train(exp: Experiment, out: RunDirectory) -> Summary:
  run, data = exp.cfg.run, exp.data
  record = config_record(exp.cfg, exp.resolved)
  init_key, round_key = keys(run.seed)

  def round_input(r: int):
    clients = sample_clients(run.seed, r, exp.pool, run.clients_per_round)
    return clients, exp.batch(clients)

  # (a credit over several rounds keeps a window of rounds shaped like
  # round 1's)
  algorithm, table = exp.algorithm.init(init_key, data.num_clients,
                                        round_input(1)[1])
  state = RunState(0, algorithm, table, Totals.zeros(), (), (), None, 0.0)
  checkpoints = RunCheckpoints(out.path, writes=out.writes)
  if run.resume:  # read before anything is written: a bad one changes nothing
    check_resumable(out.path, record)
    state = checkpoints.restore(state)
    require(state.round <= run.rounds,
            f'`resume`: the checkpoint is at round {state.round}, past '
            f'`rounds`={run.rounds}; pass `rounds` >= {state.round}.')
  resumed_from = state.round if run.resume else None
  out.start(record, state.rows, state.round)
  start = time.perf_counter() - state.seconds
  compile_seconds = 0.0  # the round's, in this process
  pending = []  # rounds whose choices are not logged yet
  final = None  # the last round's state as its figures see it
  recent = collections.deque(maxlen=max(run.stall_rounds, 1))
  stopped = None

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

  if state.round < run.rounds:
    clients, batch = round_input(state.round + 1)
  with tqdm(total=run.rounds, initial=state.round, unit='round',
            desc=f'{exp.cfg.policy.policy} {exp.cfg.data.dataset}/'
            f'{exp.cfg.model.model}', mininterval=2.0,
            disable=not out.writes) as bar:
    for r in range(state.round + 1, run.rounds + 1):
      compiled_before = _compiling[0]
      algorithm, rows, metrics = exp.step(
          state.algorithm, take_rows(state.client_table, clients, exp.mesh),
          batch, jax.random.fold_in(round_key, r))
      compile_seconds += _compiling[0] - compiled_before
      if r < run.rounds:  # the next round's data while this one computes
        next_input = round_input(r + 1)
      put_rows(state.client_table, clients, rows)
      state = state._replace(round=r, algorithm=algorithm,
                             totals=state.totals.add(metrics))
      pending.append((r, clients, metrics))
      recent.append(metrics)
      if state.first_round_seconds is None:
        jax.block_until_ready(algorithm)
        state = state._replace(first_round_seconds=time.perf_counter() - start)
      stalled = int(state.totals.stalled_rounds) if run.stall_rounds else 0
      if run.stall_rounds and stalled >= run.stall_rounds:
        stopped = stall_message(exp, r, stalled, recent, out.path)
      last = r == run.rounds or stopped is not None
      if r % run.eval_every == 0 or last:
        state = state._replace(choice_counts=flush())
        if last:  # the final figures' view: the policy also sees every
          # client (`observe_all`); the checkpointed state stays the run's
          final = exp.observe_all(state.algorithm)
        row = metrics_row(
            exp, state._replace(algorithm=final) if last else state, metrics,
            batch.val, time.perf_counter() - start, last)
        state = state._replace(rows=state.rows + (row,))
        out.log_metrics(row)
        bar.set_postfix(acc=f'{row.global_acc:.3f}',
                        loss=f'{row.global_loss:.3f}')
      if last or (run.checkpoint_every and r % run.checkpoint_every == 0):
        state = state._replace(choice_counts=flush(),
                               seconds=time.perf_counter() - start)
        checkpoints.save(state)
      bar.update(1)
      if last:
        break
      clients, batch = next_input
  checkpoints.close()
  view = state._replace(algorithm=final if final is not None
                        else exp.observe_all(state.algorithm))
  summary = run_summary(exp, view, time.perf_counter() - start,
                        compile_seconds, resumed_from, stopped)
  out.write_summary(summary)
  if out.writes:
    plot_run(out.path, exp, view, summary)
  if stopped is not None:
    raise RunStopped(stopped)
  return summary
