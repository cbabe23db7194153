"""The whole comparison, in order: the grid's runs, the per-group oracle's
scan and runs, then each tuner at each budget (`run_all`), in a directory
that it holds for its life (`claim`)."""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison.grid import CompareConfig, RunSpec, plan
from pfhpo.experiment.comparison.oracle import oracle_plan, scan_plan
from pfhpo.experiment.comparison.results import RunResult, write_results
from pfhpo.experiment.comparison.runs import run_one
from pfhpo.experiment.comparison.tuning import tune, tuner_plan
from pfhpo.experiment.config import Config
from pfhpo.experiment.outputs import (changed_setting, config_record, lock,
                                      write_json)
from pfhpo.settings import require


@contextlib.contextmanager
def claim(root: Path) -> Iterator[None]:
  """Creates `root` and locks it for the comparison while the block runs
  (`outputs.lock`, as a run locks its directory): a second comparison into
  it meanwhile is refused before it writes anything, instead of meeting
  the first's runs one by one. The lock goes however the comparison ends,
  so that the same command can continue it."""
  try:
    root.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise ConfigError(f'cannot create `out_dir`={root} ({e.strerror}); pass '
                      f'another `out_dir`.') from None
  fd = lock(root, f'a comparison is running in `out_dir`={root}; wait for '
            f'it to end or pass another `out_dir`.')
  try:
    yield
  finally:
    os.close(fd)


def run_all(base: Config, grid: CompareConfig, root: Path,
            progress: Callable[[int, int, RunSpec, str], None] = None
            ) -> list[RunResult]:
  """Runs (or reads) every run of the grid into `root`, then the per-group
  oracle's scan and runs where they apply, then each tuner at each budget
  (`tuning.py`); writes the results after each run, so an interrupted
  comparison loses at most the run going."""
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
  todo = tuner_plan(grid)
  for i, (model, tuner, seed, budget) in enumerate(todo):
    if progress:
      progress(i + 1, len(todo), RunSpec(model, f'{tuner} at budget {budget}',
                                         seed, {}), 'run')
    results.append(tune(base, grid, root, model, tuner, seed, budget))
    write_results(results, root)
  return results


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
