"""A page rendered from the committed results files, so that no figure on
it is typed: a markdown template whose directives the comparisons'
`results/<study>/results.json` and the benchmarks' JSON fill in
(`render`).

A directive is `{{kind|argument|...}}`, alone or inside a line:

    {{table|STUDY|MODEL}}              the study's table for MODEL (table.md's)
    {{budget|STUDY|MODEL|B}}           its table at an equal budget of B runs
    {{cell|STUDY|MODEL|METHOD|COLUMN}} one figure of the table, as the table
                                       prints it (mean ± std over the seeds)
    {{best|STUDY|MODEL|COLUMN|METHOD|METHOD...}}
                                       the best of those methods on COLUMN:
                                       "METHOD figure"
    {{tuner|STUDY|MODEL|B}}            the best tuner at budget B on test at
                                       best val: "TUNER figure"
    {{records|FILE|FIELD,FIELD...}}    a table of a JSON file's records (a
                                       list of objects, e.g. a benchmark's
                                       benchmarks/results/*.json), a row a
                                       record, a column a field, as written

METHOD is a row's name as the table prints it ("gumbel", "static: best of
8 by validation", "sha (budget 2)"), COLUMN a column's ('test at best
val', 'personal acc', ...). Every figure goes through `table_rows` and
`budget_rows`, the code that writes each comparison's own table.md.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison.grid import TUNERS
from pfhpo.experiment.comparison.report import (BUDGET_COLUMNS, budget_table,
                                                format_cell, model_table)
from pfhpo.experiment.comparison.results import RunResult, read_results
from pfhpo.experiment.comparison.table import (COLUMNS, TableRow,
                                               budget_rows, table_rows)

DIRECTIVE = re.compile(r'\{\{([a-z]+)((?:\|[^|}]+)*)\}\}')


def render(template: str, root: Path) -> str:
  """`template` with every directive replaced by what the files under the
  repository `root` say (a study's: `root / 'results' / STUDY /
  'results.json'`; a FILE's: `root / FILE`)."""
  studies: dict[str, list[RunResult]] = {}

  def results(study: str) -> list[RunResult]:
    if study not in studies:
      path = root / 'results' / study / 'results.json'
      if not path.exists():
        raise ConfigError(f'{path} does not exist; name a study of '
                          f'{root / "results"}')
      studies[study] = read_results(path)
    return studies[study]

  def fill(match: re.Match) -> str:
    kind, args = match[1], match[2].split('|')[1:]
    where = f'{match[0]}: '
    if kind not in KINDS or len(args) < KINDS[kind]:
      raise ConfigError(f'{where}a directive is one of ' + ', '.join(
          f'{k} ({n}+ arguments)' for k, n in KINDS.items()))
    if kind == 'records':
      return '\n'.join(_records(where, root / args[0], args[1].split(',')))
    study, model, *rest = args
    rs = [r for r in results(study) if r.model == model]
    if not rs:
      raise ConfigError(f'{where}{study} has no runs of the model {model}')
    if kind == 'table':
      return '\n'.join(model_table(table_rows(rs))).rstrip('\n')
    if kind == 'budget':
      return '\n'.join(budget_table(_budget(where, rs, model, rest[0]))
                       ).rstrip('\n')
    if kind == 'cell':
      row = _row(where, table_rows(rs), rest[0])
      return _figure(where, row, rest[1])
    if kind == 'best':
      column, methods = rest[0], rest[1:]
      rows = [_row(where, table_rows(rs), m) for m in methods]
      return _best(where, rows, column)
    # 'tuner'
    rows = [r for r in _budget(where, rs, model, rest[0])
            if r.method in TUNERS]
    return _best(where, rows, BUDGET_COLUMNS[0])

  return DIRECTIVE.sub(fill, template)


KINDS = {'table': 2, 'budget': 3, 'cell': 4, 'best': 4, 'tuner': 3,
         'records': 2}


def _records(where: str, path: Path, fields: list[str]) -> list[str]:
  """A markdown table of `path`'s records, the `fields` as columns."""
  try:
    records = json.loads(path.read_text())
  except (OSError, ValueError) as e:
    raise ConfigError(f'{where}{path} cannot be read as JSON '
                      f'({type(e).__name__}); name a file of records') from None
  if not (isinstance(records, list) and records
          and all(isinstance(r, dict) for r in records)):
    raise ConfigError(f'{where}{path} is not a list of records')
  missing = [f for f in fields if all(f not in r for r in records)]
  if missing:
    raise ConfigError(f'{where}no record of {path} has {missing}; its fields '
                      f'are {", ".join(records[0])}')
  show = lambda v: '-' if v is None else (
      f'{v:,}' if isinstance(v, int) and not isinstance(v, bool) else str(v))
  return (['| ' + ' | '.join(fields) + ' |',
           '|' + ' --- |' * len(fields)]
          + ['| ' + ' | '.join(show(r.get(f)) for f in fields) + ' |'
             for r in records])


def _budget(where: str, rs: list[RunResult], model: str,
            budget: str) -> list[TableRow]:
  tables = budget_rows(rs, model)
  if not budget.isdigit() or int(budget) not in tables:
    raise ConfigError(f'{where}no tuner ran at a budget of {budget}; the '
                      f'budgets are {sorted(tables)}')
  return tables[int(budget)]


def _row(where: str, rows: list[TableRow], method: str) -> TableRow:
  for r in rows:
    if r.method == method and not r.cost:
      return r
  raise ConfigError(f'{where}no row {method!r}; the rows are ' + ', '.join(
      repr(r.method) for r in rows if not r.cost))


def _cell(where: str, row: TableRow, column: str):
  if column not in COLUMNS:
    raise ConfigError(f'{where}no column {column!r}; the columns are '
                      + ', '.join(COLUMNS))
  cell = row.cells.get(column)
  if cell is None:
    raise ConfigError(f'{where}{row.method!r} has no {column!r} in its '
                      'results file (run before it was recorded?)')
  return cell


def _figure(where: str, row: TableRow, column: str) -> str:
  return format_cell(column, *_cell(where, row, column))


def _best(where: str, rows: list[TableRow], column: str) -> str:
  """'METHOD figure' of the row best on `column` (COLUMNS' sense)."""
  better = COLUMNS.get(column, (None, max))[1]
  scored = [r for r in rows if r.cells.get(column)]
  if not scored:
    raise ConfigError(f'{where}no row has {column!r}')
  top = better(scored, key=lambda r: r.cells[column][0])
  return f'{top.method} {_figure(where, top, column)}'
