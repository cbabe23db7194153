"""table.md's rows: each method's figures over its seeds, the static grid's
best and its cost, the per-group oracle and its scan's cost."""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Mapping, NamedTuple, Sequence

from pfhpo.data.groups import GROUPS
from pfhpo.experiment.comparison.grid import BUDGETED, STATIC
from pfhpo.experiment.comparison.oracle import (ORACLE, SCAN, best_static,
                                                is_run_of, statics_of,
                                                vector_of)
from pfhpo.experiment.comparison.results import RunResult


class TableRow(NamedTuple):
  """One line of table.md: a method on a model, over its seeds."""
  model: str
  method: str
  runs: int  # runs that finished ('done' or 'stopped')
  failed: int
  cells: dict  # column -> (mean, std, runs with a value) or None
  cost: bool = False  # a grid's summed cost, not a method's figures
  # client group -> GROUP_COLUMNS' column -> (mean, std, runs) or None
  group_cells: dict | None = None


COLUMNS = {  # column -> (RunResult field, better: max or min)
    'best global acc': ('best_global_acc', max),
    'test at best val': ('test_at_best_val', max),
    'final global acc': ('global_acc', max),
    'personal acc': ('personal_acc', max),
    'personal p10': ('personal_acc_p10', max),
    'rounds to target': ('rounds_to_target', min),
    'runs spent': ('spent_runs', min),
    'local steps': ('local_steps_total', min),
    'seconds': ('total_seconds', min),
}


# Per client group, at the last round: the global model's accuracy on the
# group's test examples, its clients' personal accuracy, and the mean
# probability the policy gives them of the group's oracle configuration.
GROUP_COLUMNS = ('global acc', 'personal acc', 'oracle mass')


def table_rows(results: Sequence[RunResult]) -> list[TableRow]:
  """Per model: from the static grid the best configuration (by mean best
  global accuracy: the tuned-FedAvg oracle, chosen on test), the grid
  chosen on validation (per seed: `by_validation`) and the whole grid's
  cost (its local steps and seconds summed), the per-group oracle and its
  scan's cost where there is one, then each learned method and each tuner
  at each budget."""
  by_method: dict[tuple[str, str], list[RunResult]] = {}
  for r in results:
    by_method.setdefault((r.model, method_label(r)), []).append(r)
  out = []
  for model in dict.fromkeys(r.model for r in results):
    oracles = [m for mo, m in by_method if mo == model
               and is_run_of(m, ORACLE)]
    vector = vector_of(oracles[-1]) if oracles else None
    statics = statics_of(results, model)
    if statics:
      best = best_static(statics)
      out.append(_method_row(
          model, f'{STATIC}: best of {len(statics)} '
          f'({statics[best][0].configuration})',
          charged(statics[best], statics), vector))
      chosen = by_validation(statics)
      if chosen:  # (runs recorded before rows held validation accuracy)
        out.append(_method_row(model, by_validation_label(len(statics)),
                               chosen, vector))
      out.append(_cost_row(model, f'{STATIC} grid: all {len(statics)} '
                           '(cost per seed)', statics))
    scan = {m: rs for (mo, m), rs in by_method.items()
            if mo == model and is_run_of(m, SCAN)}
    for (mo, method), rs in by_method.items():
      if mo == model and is_run_of(method, ORACLE):
        out.append(_method_row(
            model, f'per-group oracle ({rs[0].configuration})', rs, vector))
    if scan:
      out.append(_cost_row(model, f'per-group scan: {len(scan)} runs '
                           '(cost, one seed)', scan))
    for (mo, method), rs in by_method.items():
      if mo == model and not any(is_run_of(method, kind)
                                 for kind in (STATIC, SCAN, ORACLE)):
        out.append(_method_row(model, method, rs, vector))
  return out


def is_learned(method: str) -> bool:
  """Whether `method` is a learned method's single run: not the static
  grid's, the per-group scan's or oracle's, nor a tuner."""
  return method not in BUDGETED and not any(
      is_run_of(method, kind) for kind in (STATIC, SCAN, ORACLE))


def method_label(r: RunResult) -> str:
  """A result's method as the tables name it: one sized to a budget (a
  tuner, the method's population) with its budget."""
  return (f'{r.method} (budget {r.budget})' if r.method in BUDGETED
          else r.method)


def by_validation_label(size: int) -> str:
  return f'{STATIC}: best of {size} by validation'


def by_validation(statics: Mapping[str, Sequence[RunResult]]
                  ) -> list[RunResult]:
  """Per seed, the grid's run of best validation accuracy (a grid search
  that chooses on validation, never on test), charged every run of the
  grid it chose among."""
  seeds: dict[int, list[RunResult]] = {}
  for rs in statics.values():
    for r in rs:
      if r.best_val_acc is not None:
        seeds.setdefault(r.seed, []).append(r)
  return charged([max(rs, key=lambda r: r.best_val_acc)
                  for rs in seeds.values()], statics)


def charged(runs: Sequence[RunResult],
            statics: Mapping[str, Sequence[RunResult]]) -> list[RunResult]:
  """`runs` of the grid, each charged what choosing it cost: every run of
  the grid on its seed (runs spent and local steps), whether it was chosen
  on validation or, as the tuned-FedAvg oracle, on test."""
  seeds: dict[int, list[RunResult]] = {}
  for rs in statics.values():
    for r in rs:
      seeds.setdefault(r.seed, []).append(r)
  return [dataclasses.replace(
      r, spent_runs=float(len(seeds[r.seed])),
      local_steps_total=sum(g.local_steps_total or 0 for g in seeds[r.seed]))
          for r in runs]


def budget_rows(results: Sequence[RunResult], model: str
                ) -> dict[int, list[TableRow]]:
  """table.md's tables per budget B (one for each budget a method sized to
  budgets ran at): every method that spends at most B runs: the learned
  methods' one run, the grid chosen on validation where it holds at most
  B runs, and the method's population and each tuner sized to B."""
  mine = [r for r in results if r.model == model]
  budgets = sorted({r.budget for r in mine if r.method in BUDGETED})
  statics = statics_of(mine, model)
  singles: dict[str, list[RunResult]] = {}
  for r in mine:
    if is_learned(r.method):
      singles.setdefault(r.method, []).append(r)
  chosen = by_validation(statics) if statics else []
  out = {}
  for b in budgets:
    rows = [_method_row(model, m, rs, None) for m, rs in singles.items()]
    if chosen and len(statics) <= b:
      rows.append(_method_row(model, by_validation_label(len(statics)),
                              chosen, None))
    for method in BUDGETED:
      rs = [r for r in mine if r.method == method and r.budget == b]
      if rs:
        rows.append(_method_row(model, method, rs, None))
    out[b] = rows
  return out


def _cost_row(model: str, label: str,
              runs: Mapping[str, Sequence[RunResult]]) -> TableRow:
  """A grid's cost: its local steps and seconds summed, per seed."""
  grid = [r for rs in runs.values() for r in rs]
  seeds = len({r.seed for r in grid})
  cost = {}
  for col in ('local steps', 'seconds'):
    total = sum(getattr(r, COLUMNS[col][0]) or 0 for r in grid)
    cost[col] = (total / max(seeds, 1), 0.0, len(grid))
  return TableRow(model, label, len(grid), 0, cost, cost=True)


def _method_row(model: str, method: str, rs: Sequence[RunResult],
                oracle: Sequence[int] | None) -> TableRow:
  """A method's figures over its runs; per group too where the runs have
  groups (the mass on `oracle`, the per-group oracle's vector, if known)."""
  ok = [r for r in rs if r.status != 'failed']
  cells = {col: _spread([getattr(r, field) for r in ok])
           for col, (field, _) in COLUMNS.items()}
  group_cells = None
  if any(r.groups for r in ok):
    group_cells = {}
    for g, name in enumerate(GROUPS):
      per_run = [r.groups[name] for r in ok if r.groups and name in r.groups]
      if per_run:
        mass = ([f['mean_probabilities'][oracle[g]] for f in per_run
                 if 'mean_probabilities' in f] if oracle else [])
        group_cells[name] = {
            'global acc': _spread([f['global_acc'] for f in per_run]),
            'personal acc': _spread([f['personal_acc'] for f in per_run]),
            'oracle mass': _spread(mass)}
  return TableRow(model, method, len(ok), len(rs) - len(ok), cells,
                  group_cells=group_cells)


def _spread(values: Sequence[float | None]) -> tuple | None:
  """(mean, std, count) of the values given (None and NaN left out)."""
  values = [v for v in values if v is not None and not math.isnan(v)]
  if not values:
    return None
  return (statistics.mean(values),
          statistics.stdev(values) if len(values) > 1 else 0.0, len(values))
