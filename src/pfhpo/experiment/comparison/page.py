"""A page rendered from the committed results files, so that no figure on
it is typed: a markdown template whose directives the comparisons'
`results/<study>/results.json` and the benchmarks' JSON fill in
(`render`).

A directive is `{{kind|argument|...}}`, alone or inside a line:

    {{table|STUDY|MODEL}}              the study's table for MODEL (table.md's)
    {{budget|STUDY|MODEL|B}}           its table at an equal budget of B runs
    {{budgets|STUDY|MODEL}}            test at best val at every budget a
                                       tuner ran at: a row a method, a
                                       column a budget, each budget's best
                                       in bold
    {{cell|STUDY|MODEL|METHOD|COLUMN}} one figure of the table, as the table
                                       prints it (mean ± std over the seeds)
    {{best|STUDY|MODEL|COLUMN|METHOD|METHOD...}}
                                       the best of those methods on COLUMN:
                                       "METHOD figure"
    {{tuner|STUDY|MODEL|B}}            the best tuner at budget B on test at
                                       best val: "TUNER figure"
    {{rows|STUDY|MODEL|COLUMN,COLUMN...|METHOD|METHOD...}}
                                       a table of those rows and columns in
                                       the order given, each column's best
                                       in bold; a METHOD may be
                                       `OTHER@METHOD` (the row of the study
                                       OTHER, same model) and end in
                                       `->LABEL` (the name the page shows)
    {{settings|FILE,FILE...}}          the named methods of those TOML files
                                       (`[compare.methods.NAME]`, as
                                       `--methods` reads them), a row a name
                                       and its settings as flags, with the
                                       files (their stems) that define it so
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
import tomllib
from pathlib import Path

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison.grid import TUNERS
from pfhpo.experiment.comparison.report import (BUDGET_COLUMNS, budget_table,
                                                cell_text, format_cell,
                                                model_table)
from pfhpo.experiment.comparison.results import RunResult, read_results
from pfhpo.experiment.comparison.table import (COLUMNS, TableRow,
                                               budget_rows, table_rows)

DIRECTIVE = re.compile(r'\{\{([a-z]+)((?:\|[^|}]+)*)\}\}')


def render(template: str, root: Path) -> str:
  """`template` with every directive replaced by what the files under the
  repository `root` say (a study's: `root / 'results' / STUDY /
  'results.json'`; a FILE's: `root / FILE`)."""
  studies: dict[str, list[RunResult]] = {}
  tables: dict[tuple[str, str], list[TableRow]] = {}

  def runs_of(where: str, study: str, model: str) -> list[RunResult]:
    """The study's runs of `model` (its results.json read once)."""
    if study not in studies:
      path = root / 'results' / study / 'results.json'
      if not path.exists():
        raise ConfigError(f'{path} does not exist; name a study of '
                          f'{root / "results"}')
      studies[study] = read_results(path)
    rs = [r for r in studies[study] if r.model == model]
    if not rs:
      raise ConfigError(f'{where}{study} has no runs of the model {model}')
    return rs

  def rows_of(where: str, study: str, model: str) -> list[TableRow]:
    """`table_rows` of the study's runs of `model`, computed once."""
    if (study, model) not in tables:
      tables[study, model] = table_rows(runs_of(where, study, model))
    return tables[study, model]

  def fill(match: re.Match) -> str:
    kind, args = match[1], match[2].split('|')[1:]
    where = f'{match[0]}: '
    if kind not in KINDS or len(args) < KINDS[kind]:
      raise ConfigError(f'{where}a directive is one of ' + ', '.join(
          f'{k} ({n}+ arguments)' for k, n in KINDS.items()))
    if kind == 'records':
      return '\n'.join(_records(where, root / args[0], args[1].split(',')))
    if kind == 'settings':
      files = [root / f for f in args[0].split(',')]
      return '\n'.join(_settings(where, files))
    study, model, *rest = args
    rs = runs_of(where, study, model)
    if kind == 'table':
      return '\n'.join(model_table(rows_of(where, study, model))
                       ).rstrip('\n')
    if kind == 'budget':
      return '\n'.join(budget_table(_budget(where, rs, model, rest[0]))
                       ).rstrip('\n')
    if kind == 'budgets':
      return '\n'.join(_budgets_table(budget_rows(rs, model)))
    if kind == 'cell':
      row = _row(where, rows_of(where, study, model), rest[0])
      return _figure(where, row, rest[1])
    if kind == 'rows':
      columns = rest[0].split(',')
      picked = []
      for spec in rest[1:]:
        spec, _, label = spec.partition('->')
        other, _, method = spec.rpartition('@')
        mine = rows_of(where, other or study, model)
        picked.append((label or method, _row(where, mine, method)))
      return '\n'.join(_rows_table(where, picked, columns))
    if kind == 'best':
      column, methods = rest[0], rest[1:]
      rows = [_row(where, rows_of(where, study, model), m) for m in methods]
      return _best(where, rows, column)
    # 'tuner'
    rows = [r for r in _budget(where, rs, model, rest[0])
            if r.method in TUNERS]
    return _best(where, rows, BUDGET_COLUMNS[0])

  return DIRECTIVE.sub(fill, template)


KINDS = {'table': 2, 'budget': 3, 'budgets': 2, 'cell': 4, 'best': 4,
         'tuner': 3, 'rows': 4, 'settings': 1, 'records': 2}


def _budgets_table(tables: dict[int, list[TableRow]]) -> list[str]:
  """`budget_rows`' tables side by side on test at best val: a row a
  method (in the order they first appear), '-' at a budget it does not
  fit."""
  column = BUDGET_COLUMNS[0]
  at = {(r.method, b): r.cells.get(column) for b, rows in tables.items()
        for r in rows}
  methods = dict.fromkeys(m for m, _ in at)
  best = {b: max((c[0] for (m, bb), c in at.items() if bb == b and c),
                 default=None) for b in tables}
  lines = ['| method | ' + ' | '.join(f'budget {b}' for b in tables) + ' |',
           '| --- |' + ' --- |' * len(tables)]
  for m in methods:
    shown = []
    for b in tables:
      cell = at.get((m, b))
      text = format_cell(column, *cell) if cell else '-'
      shown.append(f'**{text}**' if cell and cell[0] == best[b] else text)
    lines.append(f'| {m} | ' + ' | '.join(shown) + ' |')
  return lines


def _settings(where: str, paths: list[Path]) -> list[str]:
  """A markdown table of the named methods the TOML files at `paths`
  define: name, its settings as command-line flags, the files' stems
  that define it so (one row for each distinct setting of a name)."""
  found: dict[tuple[str, str], list[str]] = {}
  for path in paths:
    try:
      methods = tomllib.loads(path.read_text())['compare']['methods']
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ConfigError(f'{where}{path} has no [compare.methods.NAME] '
                        f'tables ({type(e).__name__}); name a file that '
                        '--methods reads') from None
    for name, settings in methods.items():
      flags = ' '.join(f'`--{k}={_flag(v)}`' for k, v in settings.items())
      found.setdefault((name, flags), []).append(path.stem)
  return (['| method | settings | in |', '| --- | --- | --- |']
          + [f'| {name} | {flags} | {", ".join(stems)} |'
             for (name, flags), stems in found.items()])


def _flag(value) -> str:
  """A TOML value as a flag's text: `1`, `0.5`, `sampled`, `a,b`."""
  if isinstance(value, bool):
    return str(int(value))
  if isinstance(value, list):
    return ','.join(_flag(v) for v in value)
  return str(value)


def _rows_table(where: str, picked: list[tuple[str, TableRow]],
                columns: list[str]) -> list[str]:
  """A markdown table of the `picked` (label, row) pairs on `columns`;
  '-' where a row has no figure, each column's best (COLUMNS' sense) in
  bold."""
  cells = [[_cell(where, row, c) if row.cells.get(c) or c not in COLUMNS
            else None for c in columns] for _, row in picked]
  best = []
  for j, c in enumerate(columns):
    values = [line[j][0] for line in cells if line[j]]
    best.append(COLUMNS[c][1](values) if values else None)
  lines = ['| method | ' + ' | '.join(columns) + ' |',
           '| --- |' + ' --- |' * len(columns)]
  for (label, row), line in zip(picked, cells):
    shown = []
    for j, c in enumerate(columns):
      if line[j] is None:
        shown.append('-')
        continue
      text = cell_text(c, line[j], row.runs)
      shown.append(f'**{text}**' if line[j][0] == best[j] and len(cells) > 1
                   else text)
    lines.append(f'| {label} | ' + ' | '.join(shown) + ' |')
  return lines


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
  return cell_text(column, _cell(where, row, column), row.runs)


def _best(where: str, rows: list[TableRow], column: str) -> str:
  """'METHOD figure' of the row best on `column` (COLUMNS' sense)."""
  better = COLUMNS.get(column, (None, max))[1]
  scored = [r for r in rows if r.cells.get(column)]
  if not scored:
    raise ConfigError(f'{where}no row has {column!r}')
  top = better(scored, key=lambda r: r.cells[column][0])
  return f'{top.method} {_figure(where, top, column)}'
