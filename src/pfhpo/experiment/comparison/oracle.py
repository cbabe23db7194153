"""The static grid's best configuration and the per-group oracle: the scan
of one group at a time off the grid's best, and the vector it picks.

The grid's runs are named `static[z]`; the scan's `group-scan[z_0,...]`
(on the first seed) and the oracle's `group-oracle[z_0,...]` (every seed),
one configuration per client group (`pfhpo.data.groups`)."""
from __future__ import annotations

import math
import statistics
from typing import Sequence

from pfhpo.data.groups import group_names
from pfhpo.experiment.comparison.grid import STATIC, CompareConfig, RunSpec
from pfhpo.experiment.comparison.results import RunResult
from pfhpo.experiment.config import Config


SCAN, ORACLE = 'group-scan', 'group-oracle'


def is_run_of(method: str, kind: str) -> bool:
  """Whether `method` is one of the comparison's own runs of `kind`:
  STATIC ('static[z]', the static grid), SCAN or ORACLE (a named method
  may start with the same word, never with its '[')."""
  return method.startswith(f'{kind}[')


def vector_of(method: str) -> tuple[int, ...]:
  """The configuration vector of a 'static[z]', 'group-scan[...]' or
  'group-oracle[...]' method."""
  return tuple(int(z) for z in method[method.index('[') + 1:-1].split(','))


def _vector_method(prefix: str, vector: Sequence[int]) -> str:
  return f'{prefix}[{",".join(map(str, vector))}]'


def statics_of(results: Sequence[RunResult], model: str
             ) -> dict[str, list[RunResult]]:
  """The static grid's runs of `model`, by method."""
  statics: dict[str, list[RunResult]] = {}
  for r in results:
    if r.model == model and is_run_of(r.method, STATIC):
      statics.setdefault(r.method, []).append(r)
  return statics


def best_static(statics: dict[str, Sequence[RunResult]]) -> str:
  """The grid's run with the best mean best global accuracy: the
  tuned-FedAvg oracle."""
  return max(statics, key=lambda m: mean_of(statics[m], 'best_global_acc'))


def mean_of(rs: Sequence[RunResult], field: str) -> float:
  values = [getattr(r, field) for r in rs if getattr(r, field) is not None]
  return statistics.mean(values) if values else -math.inf


def _best_static_index(results: Sequence[RunResult], model: str
                       ) -> int | None:
  """The best static configuration z* of `model` (None if no run of the
  grid finished)."""
  statics = statics_of(results, model)
  best = best_static(statics) if statics else None
  if best is None or mean_of(statics[best], 'best_global_acc') == -math.inf:
    return None
  return vector_of(best)[0]


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
        elif is_run_of(r.method, SCAN):
          accuracy[vector_of(r.method)] = r.best_global_acc
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
