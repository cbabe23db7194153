"""The comparison's report: table.md (a table a model, and one by client
group) and best_acc_<model>.png."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pfhpo.data.groups import GROUPS
from pfhpo.experiment.comparison.grid import BUDGETED, STATIC
from pfhpo.experiment.comparison.oracle import (SCAN, best_static,
                                                is_run_of, statics_of)
from pfhpo.experiment.comparison.results import RunResult
from pfhpo.experiment.comparison.table import (COLUMNS, GROUP_COLUMNS,
                                               TableRow, budget_rows,
                                               by_validation,
                                               by_validation_label, is_learned,
                                               method_label, table_rows)
from pfhpo.experiment.outputs import write_atomic
from pfhpo.experiment.plots import plot_best_accuracy, plot_budget


def table_markdown(rows: Sequence[TableRow], title: str) -> str:
  """table.md: mean ± std over seeds, a table per model, the best of each
  column among the methods in bold (the grid's cost row excluded)."""
  lines = [f'# {title}', '']
  for model in dict.fromkeys(r.model for r in rows):
    lines += [f'## {model}', '']
    lines += model_table([r for r in rows if r.model == model])
  return '\n'.join(lines)


def model_table(mine: Sequence[TableRow]) -> list[str]:
  """One model's table (its rows of `table_rows`) and its table by client
  group, as table.md's lines."""
  best = {}
  for col, (_, better) in COLUMNS.items():
    values = [r.cells[col][0] for r in mine if r.cells.get(col) and not r.cost]
    best[col] = better(values) if values else None
  lines = ['| method | runs | ' + ' | '.join(COLUMNS) + ' |',
           '| --- | --- |' + ' --- |' * len(COLUMNS)]
  for r in mine:
    cells = []
    for col in COLUMNS:
      cell = r.cells.get(col)
      if cell is None:
        cells.append('-')
        continue
      text = cell_text(col, cell, r.runs)
      bold = not r.cost and cell[0] == best[col]
      cells.append(f'**{text}**' if bold else text)
    runs = f'{r.runs}' + (f' ({r.failed} failed)' if r.failed else '')
    lines.append(f'| {r.method} | {runs} | ' + ' | '.join(cells) + ' |')
  return lines + [''] + _group_table(mine)


def _group_table(rows: Sequence[TableRow]) -> list[str]:
  """table.md's lines per client group (none for a federation of one)."""
  rows = [r for r in rows if r.group_cells]
  names = [g for g in GROUPS if any(g in r.group_cells for r in rows)]
  if not names:
    return []
  header = [f'{g} {col}' for g in names for col in GROUP_COLUMNS]
  lines = ['By client group, at the last round: the global model\'s accuracy '
           "on the group's test examples, its clients' mean personal "
           "accuracy, and the mean probability its policy gives the group's "
           'per-group oracle configuration.', '',
           '| method | ' + ' | '.join(header) + ' |',
           '| --- |' + ' --- |' * len(header)]
  for r in rows:
    cells = [r.group_cells.get(g, {}).get(col) for g in names
             for col in GROUP_COLUMNS]
    lines.append(f'| {r.method} | ' + ' | '.join(
        '-' if c is None else format_cell('personal acc', *c) for c in cells)
        + ' |')
  return lines + ['']


ACCURACIES = ('best global acc', 'test at best val', 'final global acc',
              'personal acc', 'personal p10')
# The columns of the tables at equal budget.
BUDGET_COLUMNS = ('test at best val', 'runs spent', 'local steps')


def budget_markdown(results: Sequence[RunResult], model: str) -> list[str]:
  """table.md's tables at equal budget for `model` (`budget_rows`)."""
  lines = []
  for budget, rows in budget_rows(results, model).items():
    lines += [f'### {model} at a budget of {budget} runs', '']
    lines += budget_table(rows)
  return lines


def budget_table(rows: Sequence[TableRow]) -> list[str]:
  """One budget's table (its rows of `budget_rows`), the best figure of
  its first column in bold."""
  lines = ['| method | runs | ' + ' | '.join(BUDGET_COLUMNS) + ' |',
           '| --- | --- |' + ' --- |' * len(BUDGET_COLUMNS)]
  best = max((r.cells[BUDGET_COLUMNS[0]][0] for r in rows
              if r.cells.get(BUDGET_COLUMNS[0])), default=None)
  for r in rows:
    cells = []
    for col in BUDGET_COLUMNS:
      cell = r.cells.get(col)
      text = '-' if cell is None else format_cell(col, *cell)
      bold = col == BUDGET_COLUMNS[0] and cell and cell[0] == best
      cells.append(f'**{text}**' if bold else text)
    lines.append(f'| {r.method} | {r.runs} | ' + ' | '.join(cells) + ' |')
  return lines + ['']


def cell_text(col: str, cell: tuple[float, float, int], runs: int) -> str:
  """A figure as table.md prints it: `format_cell`, then '(k of n)' where
  only k of the row's n runs have one (e.g. runs that never reached the
  target)."""
  text = format_cell(col, *cell)
  return f'{text} ({cell[2]} of {runs})' if cell[2] < runs else text


def format_cell(col: str, mean: float, std: float, count: int) -> str:
  """`mean ± std` over the runs with a value; the mean alone for one."""
  if col in ACCURACIES:
    return f'{mean:.3f} ± {std:.3f}' if count > 1 else f'{mean:.3f}'
  if col == 'runs spent':
    return f'{mean:.2f} ± {std:.2f}' if std else f'{mean:.2f}'
  return f'{mean:,.0f} ± {std:,.0f}' if std else f'{mean:,.0f}'


def write_report(results: Sequence[RunResult], root: Path, title: str) -> str:
  """table.md, best_acc_<model>.png and, with a tuner, budget_<model>.png
  from `results`; returns the table."""
  rows = table_rows(results)
  text = '\n'.join([table_markdown(rows, title)] + [
      line for model in dict.fromkeys(r.model for r in results)
      for line in budget_markdown(results, model)])
  write_atomic(root / 'table.md', text)
  for model in dict.fromkeys(r.model for r in results):
    curves = best_accuracy_curves(results, model)
    if curves:  # (a comparison of tuners alone has no run's curve)
      plot_best_accuracy(curves, root / f'best_acc_{model}.png',
                         title=f'{title}: {model}')
    everyone = [r for r in results if r.model == model]
    if any(r.method in BUDGETED for r in everyone):
      _plot_budget(everyone, statics_of(everyone, model),
                   root / f'budget_{model}.png', f'{title}: {model}')
  return text


def best_accuracy_curves(results: Sequence[RunResult], model: str
                         ) -> dict[str, list]:
  """{label: [curve per seed]} of `model`'s runs for best_acc_<model>.png:
  the grid's best configuration first (`best_static`, labelled with it),
  then every learned method (the grid's other runs and the per-group
  scan left out)."""
  mine = [r for r in results if r.model == model and r.curve]
  curves: dict[str, list] = {}
  for r in mine:
    if not any(is_run_of(r.method, kind) for kind in (STATIC, SCAN)):
      curves.setdefault(r.method, []).append(r.curve)
  statics = statics_of(mine, model)
  if not statics:
    return curves
  best = best_static(statics)
  return {f'static best ({statics[best][0].configuration})':
          [r.curve for r in statics[best]], **curves}


def _plot_budget(mine: Sequence[RunResult], statics: dict, path: Path,
                 title: str) -> None:
  """budget_<model>.png: each learned method's run and each tuner at its
  largest budget, chosen on validation, against the local steps spent; the
  grid chosen on validation as a point (it spends all its runs)."""
  largest = {r.method: r.budget for r in mine if r.method in BUDGETED}
  curves: dict[str, list] = {}
  for r in mine:
    if r.anytime and (is_learned(r.method) or
                      largest.get(r.method) == r.budget):
      curves.setdefault(method_label(r), []).append(
          [(steps, test) for _, steps, _, test in r.anytime])
  marks = {}
  if statics:
    marks[by_validation_label(len(statics))] = [
        (r.local_steps_total, r.test_at_best_val)
        for r in by_validation(statics)]
  plot_budget(curves, marks, path, title)
