"""A comparison: methods x models x seeds on one data set, one budget.

Every run of the grid starts from the same base `Config` (a preset) and
differs only in its model, its method and its seed, so every method gets the
same rounds, clients, search space, validation and evaluation. The methods
are the learned policies named, and the static grid: every configuration
of the space run as `static` (the tuned-FedAvg oracle is the best of them,
and the grid's cost is all of them together).

On a federation of client groups (`pfhpo.data.groups`) the comparison
also computes the per-group oracle: each group on its own best static
configuration. It is found by one coordinate step from the best static
configuration z*: for each group g and configuration z != z*, a `static`
run with group g on z and the others on z* (`group-scan[...]`, on the
first seed only; the scan's cost is reported); each group then takes the
configuration whose run had the best best-global accuracy (z* included),
and that vector runs on every seed (`group-oracle[...]`). table.md then
also shows, per group, each method's accuracy and the mass its policy puts
on the group's oracle configuration.

Each run is an independent unit with its own directory under
`<out_dir>/runs/<model>/<method>/seed<k>`: a finished one (its summary.json
written) is read, never redone; an interrupted one resumes from its last
checkpoint (or starts again if it died before one); one that fails is
recorded with its error and the others go on. `results.json`/`results.csv`
hold a row per run, `table.md` the mean and spread over seeds, and
`best_acc_<model>.png` the best-so-far global accuracy against the round.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
import shutil
import statistics
import traceback
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

from pfhpo import models as model_zoo
from pfhpo.algorithms import AlgorithmConfig
from pfhpo.data.groups import GROUPS, group_names
from pfhpo.errors import ConfigError, RunStopped
from pfhpo.experiment.config import Config, override
from pfhpo.experiment.loop import run
from pfhpo.experiment.outputs import (changed_setting, check_resumable,
                                     config_record, write_atomic, write_json)
from pfhpo.experiment.plots import plot_best_accuracy
from pfhpo.policies import REGISTRY
from pfhpo.settings import check_choice, require, setting

STATIC = 'static'


# What a method may set besides its policy's settings: the federated
# algorithm, its own settings, and the server optimizer it is defined with
# (FedMeta's Adam).
METHOD_SETTINGS = tuple(f.name for f in dataclasses.fields(AlgorithmConfig)) + (
    'server_opt', 'server_lr')


@dataclasses.dataclass(frozen=True)
class CompareConfig:
  """The grid of a comparison (a preset's [compare] table).

  A method is a learned policy by name, or a variant a preset names in a
  [compare.methods.NAME] table: its `policy` (default NAME; `static` with a
  `static_index`), settings of that policy, and the federated algorithm
  with its settings and server optimizer (METHOD_SETTINGS), e.g.

      [compare.methods.gumbel-global]
      policy = "gumbel"
      policy_scope = "global"

      [compare.methods.ditto]
      policy = "static"
      static_index = 5
      algorithm = "ditto"

  so that every method runs with the same data, model, space and rounds.
  """
  policies: tuple[str, ...] = setting(
      ('gumbel', 'reinforce', 'random', 'fedex', 'pfedex', 'fathom'),
      "the learned methods (policies, or the preset's [compare.methods]), "
      'each run on every model and seed')
  models: tuple[str, ...] = setting(('mlp',), 'the models')
  seeds: tuple[int, ...] = setting((0, 1, 2), 'the seeds')
  static_grid: bool = setting(
      True, "also run every configuration of the space as 'static'")
  target_acc: float | None = setting(
      None, 'global accuracy whose first round each run reports (unset: none)')
  group_oracle: bool = setting(
      True, 'on a federation of client groups (`noisy_fraction`, '
      '`few_fraction`), also find and run the per-group oracle (needs the '
      'static grid)')
  methods: Mapping[str, Mapping[str, Any]] = dataclasses.field(
      default_factory=dict, metadata={'help': (
          'named methods: a policy and its own settings (a preset\'s '
          '[compare.methods.NAME] tables)')})

  def __post_init__(self):
    for name in ('policies', 'models', 'seeds'):
      values = getattr(self, name)
      require(len(values) > 0, f'`{name}` is empty; give at least one')
      require(len(set(values)) == len(values),
              f'`{name}` repeats a value ({list(values)}); list each once')
    learned = tuple(p for p in REGISTRY if p != STATIC)
    for name, table in self.methods.items():
      where = f'[compare.methods.{name}]'
      require(re.fullmatch(r'[\w.-]+', name) is not None,
              f'{where}: a method\'s name is its runs\' directory; use '
              'letters, digits, ".", "-" and "_"')
      require(isinstance(table, Mapping), f'{where} is not a table')
      policy = table.get('policy', name)
      require(policy in learned or (policy == STATIC and 'static_index' in
                                    table),
              f'{where}: `policy`={policy!r} is not a learned policy; choose '
              f'one of {", ".join(learned)}, or {STATIC} with a '
              '`static_index`')
      own = [f.name for f in dataclasses.fields(REGISTRY[policy].config)]
      for setting_ in set(table) - {'policy'}:
        require(setting_ in own or setting_ in METHOD_SETTINGS,
                f'{where}: `{setting_}` is not a setting of policy {policy} '
                f'({", ".join(own) or "it has none"}) or of the algorithm '
                f'({", ".join(METHOD_SETTINGS)}); every method runs with the '
                'same data, model, space and rounds')
    for method in self.policies:
      check_choice('policies', method, learned + tuple(
          m for m in self.methods if m not in learned))
    for model in self.models:
      check_choice('models', model, model_zoo.MODELS)
    require(self.target_acc is None or 0 < self.target_acc <= 1,
            f'`target_acc` must be in (0, 1], got {self.target_acc}')

  def settings_of(self, method: str) -> dict:
    """A learned method's flat settings over the base run."""
    table = dict(self.methods.get(method, {}))
    return {'policy': table.pop('policy', method), **table}


class RunSpec(NamedTuple):
  """One run of the grid: a method on a model with a seed."""
  model: str
  method: str  # a policy's name, or 'static[z]' for configuration z
  seed: int
  settings: dict  # flat settings over the base config

  @property
  def key(self) -> tuple[str, str, int]:
    return self.model, self.method, self.seed

  def directory(self, root: Path) -> Path:
    method = self.method.replace('[', '_').replace(']', '')
    return root / 'runs' / self.model / method / f'seed{self.seed}'


@dataclasses.dataclass(frozen=True)
class RunResult:
  """One row of results.json / results.csv."""
  model: str
  method: str
  seed: int
  status: str  # 'done', 'stopped' (no progress: summary.stopped) or 'failed'
  error: str | None = None
  configuration: str | None = None  # the static grid's configuration
  global_acc: float | None = None  # at the last round
  best_global_acc: float | None = None  # the method's objective
  personal_acc: float | None = None
  personal_acc_p10: float | None = None
  personal_acc_pooled: float | None = None
  unseen_clients: int | None = None  # never in a round
  personal_acc_unseen: float | None = None  # their mean
  rounds_to_target: int | None = None  # first evaluated round >= target
  local_steps_total: int | None = None
  total_seconds: float | None = None
  first_round_seconds: float | None = None  # including the compilation
  compile_seconds: float | None = None  # tracing and compiling the round
  groups: dict | None = None  # per client group (MetricsRow.groups)
  # (round, global accuracy) at every evaluation
  curve: tuple[tuple[int, float], ...] = ()


def plan(base: Config, grid: CompareConfig) -> list[RunSpec]:
  """Every run of the grid, checked (a bad setting is a ConfigError here,
  before any run starts): per model, the static grid, then the policies,
  each over the seeds."""
  space = base.search_space()
  methods = ([(f'{STATIC}[{z}]', {'policy': STATIC, 'static_index': z})
              for z in range(space.size)] if grid.static_grid else [])
  methods += [(m, grid.settings_of(m)) for m in grid.policies]
  searching = [m for m, s in methods if REGISTRY[s['policy']].searches]
  require(space.size > 1 or not searching,
          f'{", ".join(searching)} choose among the search space\'s '
          'configurations, but it holds one; give several `lrs`, '
          '`local_steps` or `batch_sizes`.')
  specs = []
  for model in grid.models:
    for method, settings in methods:
      for seed in grid.seeds:
        spec = RunSpec(model, method, seed, settings)
        config_of(base, spec, Path('.'))  # checks it
        specs.append(spec)
  return specs


def config_of(base: Config, spec: RunSpec, root: Path,
              resume: bool = False) -> Config:
  return override(base, {**spec.settings, 'model': spec.model,
                         'seed': spec.seed,
                         'out_dir': str(spec.directory(root)),
                         'resume': resume})


def run_all(base: Config, grid: CompareConfig, root: Path,
            progress: Callable[[int, int, RunSpec, str], None] = None
            ) -> list[RunResult]:
  """Runs (or reads) every run of the grid into `root`, then the per-group
  oracle's scan and runs where they apply; writes the results after each
  run, so an interrupted comparison loses at most the run going."""
  specs = plan(base, grid)
  root.mkdir(parents=True, exist_ok=True)
  _check_same_comparison(root, base)
  results: list[RunResult] = []
  for phase in (lambda: specs, lambda: scan_plan(base, grid, results),
                lambda: oracle_plan(base, grid, results)):
    todo = phase()
    for i, spec in enumerate(todo):
      done = (spec.directory(root) / 'summary.json').exists()
      if progress:
        progress(i + 1, len(todo), spec, 'read' if done else 'run')
      results.append(run_one(base, spec, root, grid.target_acc))
      write_results(results, root)
  return results


SCAN, ORACLE = 'group-scan', 'group-oracle'


def _vector_method(prefix: str, vector: Sequence[int]) -> str:
  return f'{prefix}[{",".join(map(str, vector))}]'


def _best_static_index(results: Sequence[RunResult], model: str
                       ) -> int | None:
  """The best static configuration z* of `model` (None if no run of the
  grid finished)."""
  statics = _statics(results, model)
  best = _best_static(statics) if statics else None
  if best is None or _mean(statics[best], 'best_global_acc') == -math.inf:
    return None
  return _vector_of(best)[0]


def _oracle_bases(base: Config, grid: CompareConfig,
                  results: Sequence[RunResult]) -> list[tuple[str, int, int]]:
  """(model, its best static configuration z*, the number of groups) for
  each model whose per-group oracle applies: a federation of groups, the
  oracle asked for and a static grid with a finished run."""
  groups = len(group_names(base.data.noisy_fraction, base.data.few_fraction))
  if not (grid.group_oracle and grid.static_grid and groups > 1):
    return []
  return [(model, best, groups) for model in grid.models
          if (best := _best_static_index(results, model)) is not None]


def scan_plan(base: Config, grid: CompareConfig,
              results: Sequence[RunResult]) -> list[RunSpec]:
  """The per-group oracle's scan, on the first seed: per model, each group
  on each configuration but the best static z*, the others on z*."""
  specs = []
  for model, best, groups in _oracle_bases(base, grid, results):
    for g in range(groups):
      for z in range(base.search_space().size):
        if z != best:
          vector = [best] * groups
          vector[g] = z
          specs.append(_static_groups_spec(model, SCAN, vector,
                                           grid.seeds[0]))
  return specs


def oracle_plan(base: Config, grid: CompareConfig,
                results: Sequence[RunResult]) -> list[RunSpec]:
  """The per-group oracle on every seed: per model, each group on the
  configuration of its best scan run (or z*'s own, if none beat it)."""
  specs = []
  first = grid.seeds[0]
  for model, best, groups in _oracle_bases(base, grid, results):
    accuracy = {}  # vector -> best global accuracy on the first seed
    for r in results:
      if r.model == model and r.seed == first and r.best_global_acc is not None:
        if r.method == f'{STATIC}[{best}]':
          accuracy[(best,) * groups] = r.best_global_acc
        elif _is(r.method, SCAN):
          accuracy[_vector_of(r.method)] = r.best_global_acc
    vector = []
    for g in range(groups):
      mine = {v[g]: acc for v, acc in accuracy.items()
              if all(z == best for h, z in enumerate(v) if h != g)}
      vector.append(max(mine, key=mine.get) if mine else best)
    specs += [_static_groups_spec(model, ORACLE, vector, seed)
              for seed in grid.seeds]
  return specs


def _static_groups_spec(model: str, prefix: str, vector: Sequence[int],
                        seed: int) -> RunSpec:
  return RunSpec(model, _vector_method(prefix, vector), seed,
                 {'policy': STATIC, 'static_groups': tuple(vector)})


def _vector_of(method: str) -> tuple[int, ...]:
  """The configuration vector of a 'static[z]', 'group-scan[...]' or
  'group-oracle[...]' method."""
  return tuple(int(z) for z in method[method.index('[') + 1:-1].split(','))


def run_one(base: Config, spec: RunSpec, root: Path,
            target_acc: float | None) -> RunResult:
  """The result of one run: read if finished (and run with the settings
  it has now), else run (resuming from its last checkpoint). A run that
  raises is a 'failed' result, but for bad input (a ConfigError), which
  stops the comparison."""
  out = spec.directory(root)
  if (out / 'summary.json').exists():
    check_resumable(out, config_record(config_of(base, spec, root), {}))
  else:
    resume = any((out / 'checkpoints').glob('[0-9]*'))
    if out.exists() and not resume:  # died before its first checkpoint
      shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    error_file = out.parent / f'seed{spec.seed}.error.txt'
    error_file.unlink(missing_ok=True)  # an earlier attempt's
    try:
      run(config_of(base, spec, root, resume))
    except RunStopped:
      pass  # its summary says why
    except ConfigError:
      raise  # bad input (e.g. more clients a round than the data holds)
      # fails every run alike: the command line's one line, exit status 2
    except Exception as e:  # noqa: BLE001 reported in the table, not fatal
      line = str(e).splitlines()[0] if str(e) else type(e).__name__
      error_file.write_text(traceback.format_exc())
      return RunResult(*spec.key, status='failed',
                       error=f'{type(e).__name__}: {line}'[:300])
  return read_result(spec, out, target_acc)


def read_result(spec: RunSpec, out: Path,
                target_acc: float | None) -> RunResult:
  """A finished run's RunResult, from its summary.json and metrics.jsonl."""
  summary = json.loads((out / 'summary.json').read_text())
  rows = [json.loads(line) for line in
          (out / 'metrics.jsonl').read_text().splitlines()]
  curve = tuple((r['round'], r['global_acc']) for r in rows)
  reached = [r for r, acc in curve if target_acc is not None
             and acc >= target_acc]
  names = summary['configurations']
  settings = spec.settings
  configuration = None
  if settings.get('static_index') is not None:
    configuration = names[settings['static_index']]
  elif settings.get('static_groups') is not None:
    configuration = '; '.join(
        f'{g}: {names[z]}' for g, z in zip(GROUPS, settings['static_groups']))
  return RunResult(
      *spec.key, status='stopped' if summary.get('stopped') else 'done',
      error=summary.get('stopped'), configuration=configuration,
      global_acc=summary['global_acc'],
      best_global_acc=summary['best_global_acc'],
      personal_acc=summary.get('personal_acc'),
      personal_acc_p10=summary.get('personal_acc_p10'),
      personal_acc_pooled=summary.get('personal_acc_pooled'),
      unseen_clients=summary.get('unseen_clients'),
      personal_acc_unseen=summary.get('personal_acc_unseen'),
      rounds_to_target=reached[0] if reached else None,
      local_steps_total=summary['local_steps_total'],
      total_seconds=summary['total_seconds'],
      first_round_seconds=summary['first_round_seconds'],
      compile_seconds=summary.get('compile_seconds'),
      groups=summary.get('groups'), curve=curve)


def _check_same_comparison(root: Path, base: Config) -> None:
  """A comparison directory holds runs of one base config: a later call may
  add models, methods or seeds, never change the base."""
  record = config_record(base, {})
  path = root / 'comparison.json'
  if path.exists():
    changed = changed_setting(json.loads(path.read_text()), record,
                              ('out_dir', 'resume', 'seed'))
    require(changed is None,
            f'`out_dir`={root} holds a comparison of other settings'
            + (f' ({changed[0]}={changed[1]!r}, not {changed[2]!r})'
               if changed else '') + '; pass the same preset and settings '
            'to continue it, or a new `out_dir`.')
  else:
    write_json(path, record)


def write_results(results: Sequence[RunResult], root: Path) -> None:
  """results.json (every field) and results.csv (all but the curve)."""
  rows = [dataclasses.asdict(r) for r in results]
  write_json(root / 'results.json', rows)
  fields = [f.name for f in dataclasses.fields(RunResult)
            if f.name not in ('curve', 'groups')]
  text = io.StringIO()
  writer = csv.DictWriter(text, fields, extrasaction='ignore')
  writer.writeheader()
  writer.writerows(rows)
  write_atomic(root / 'results.csv', text.getvalue())


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
    'final global acc': ('global_acc', max),
    'personal acc': ('personal_acc', max),
    'personal p10': ('personal_acc_p10', max),
    'rounds to target': ('rounds_to_target', min),
    'local steps': ('local_steps_total', min),
    'seconds': ('total_seconds', min),
}


# Per client group, at the last round: the global model's accuracy on the
# group's test examples, its clients' personal accuracy, and the mean
# probability the policy gives them of the group's oracle configuration.
GROUP_COLUMNS = ('global acc', 'personal acc', 'oracle mass')


def table_rows(results: Sequence[RunResult]) -> list[TableRow]:
  """Per model: from the static grid the best configuration (by mean best
  global accuracy: the tuned-FedAvg oracle) and the whole grid's cost
  (its local steps and seconds summed), the per-group oracle and its
  scan's cost where there is one, then each learned method."""
  by_method: dict[tuple[str, str], list[RunResult]] = {}
  for r in results:
    by_method.setdefault((r.model, r.method), []).append(r)
  out = []
  for model in dict.fromkeys(r.model for r in results):
    oracles = [m for mo, m in by_method if mo == model
               and _is(m, ORACLE)]
    vector = _vector_of(oracles[-1]) if oracles else None
    statics = _statics(results, model)
    if statics:
      best = _best_static(statics)
      out.append(_method_row(
          model, f'{STATIC}: best of {len(statics)} '
          f'({statics[best][0].configuration})', statics[best], vector))
      out.append(_cost_row(model, f'{STATIC} grid: all {len(statics)} '
                           '(cost per seed)', statics))
    scan = {m: rs for (mo, m), rs in by_method.items()
            if mo == model and _is(m, SCAN)}
    for (mo, method), rs in by_method.items():
      if mo == model and _is(method, ORACLE):
        out.append(_method_row(
            model, f'per-group oracle ({rs[0].configuration})', rs, vector))
    if scan:
      out.append(_cost_row(model, f'per-group scan: {len(scan)} runs '
                           '(cost, one seed)', scan))
    for (mo, method), rs in by_method.items():
      if mo == model and not any(_is(method, kind)
                                 for kind in (STATIC, SCAN, ORACLE)):
        out.append(_method_row(model, method, rs, vector))
  return out


def _statics(results: Sequence[RunResult], model: str
             ) -> dict[str, list[RunResult]]:
  """The static grid's runs of `model`, by method."""
  statics: dict[str, list[RunResult]] = {}
  for r in results:
    if r.model == model and _is(r.method, STATIC):
      statics.setdefault(r.method, []).append(r)
  return statics


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


def _is(method: str, kind: str) -> bool:
  """Whether `method` is one of the comparison's own runs of `kind`:
  STATIC ('static[z]', the static grid), SCAN or ORACLE (a named method
  may start with the same word, never with its '[')."""
  return method.startswith(f'{kind}[')


def _best_static(statics: dict[str, Sequence[RunResult]]) -> str:
  """The grid's run with the best mean best global accuracy: the
  tuned-FedAvg oracle."""
  return max(statics, key=lambda m: _mean(statics[m], 'best_global_acc'))


def _mean(rs: Sequence[RunResult], field: str) -> float:
  values = [getattr(r, field) for r in rs if getattr(r, field) is not None]
  return statistics.mean(values) if values else -math.inf


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


def table_markdown(rows: Sequence[TableRow], title: str) -> str:
  """table.md: mean ± std over seeds, a table per model, the best of each
  column among the methods in bold (the grid's cost row excluded)."""
  lines = [f'# {title}', '']
  for model in dict.fromkeys(r.model for r in rows):
    mine = [r for r in rows if r.model == model]
    best = {}
    for col, (_, better) in COLUMNS.items():
      values = [r.cells[col][0] for r in mine
                if r.cells.get(col) and not r.cost]
      best[col] = better(values) if values else None
    lines += [f'## {model}', '',
              '| method | runs | ' + ' | '.join(COLUMNS) + ' |',
              '| --- | --- |' + ' --- |' * len(COLUMNS)]
    for r in mine:
      cells = []
      for col in COLUMNS:
        cell = r.cells.get(col)
        if cell is None:
          cells.append('-')
          continue
        text = _format(col, *cell)
        if cell[2] < r.runs:  # e.g. runs that never reached the target
          text += f' ({cell[2]} of {r.runs})'
        bold = not r.cost and cell[0] == best[col]
        cells.append(f'**{text}**' if bold else text)
      runs = f'{r.runs}' + (f' ({r.failed} failed)' if r.failed else '')
      lines.append(f'| {r.method} | {runs} | ' + ' | '.join(cells) + ' |')
    lines.append('')
    lines += _group_table(mine)
  return '\n'.join(lines)


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
        '-' if c is None else _format('personal acc', *c) for c in cells)
        + ' |')
  return lines + ['']


ACCURACIES = ('best global acc', 'final global acc', 'personal acc',
              'personal p10')


def _format(col: str, mean: float, std: float, count: int) -> str:
  """`mean ± std` over the runs with a value; the mean alone for one."""
  if col in ACCURACIES:
    return f'{mean:.3f} ± {std:.3f}' if count > 1 else f'{mean:.3f}'
  return f'{mean:,.0f} ± {std:,.0f}' if std else f'{mean:,.0f}'


def write_report(results: Sequence[RunResult], root: Path, title: str) -> str:
  """table.md and best_acc_<model>.png from `results`; returns the table."""
  rows = table_rows(results)
  text = table_markdown(rows, title)
  write_atomic(root / 'table.md', text)
  for model in dict.fromkeys(r.model for r in results):
    mine = [r for r in results if r.model == model and r.curve]
    curves: dict[str, list] = {}
    statics = {}
    for r in mine:
      if _is(r.method, STATIC):
        statics.setdefault(r.method, []).append(r)
      elif not _is(r.method, SCAN):
        curves.setdefault(r.method, []).append(r.curve)
    if statics:
      best = _best_static(statics)
      curves = {f'static best ({statics[best][0].configuration})':
                [r.curve for r in statics[best]], **curves}
    plot_best_accuracy(curves, root / f'best_acc_{model}.png',
                       title=f'{title}: {model}')
  return text
