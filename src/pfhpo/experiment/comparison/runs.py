"""Running the grid: each run into its own directory, read if finished,
resumed if interrupted, recorded as failed if it raised (`run_all`)."""
from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path
from typing import Callable

from pfhpo.data.groups import GROUPS
from pfhpo.errors import ConfigError, RunStopped
from pfhpo.experiment.comparison.grid import (CompareConfig, RunSpec,
                                              config_of, plan)
from pfhpo.experiment.comparison.oracle import oracle_plan, scan_plan
from pfhpo.experiment.comparison.results import RunResult, write_results
from pfhpo.experiment.config import Config
from pfhpo.experiment.loop import run
from pfhpo.experiment.outputs import (changed_setting, check_resumable,
                                     config_record, write_json)
from pfhpo.settings import require


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
