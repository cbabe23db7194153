"""A run's result as the comparison records it, and the files that hold
them all: results.json (every field) and results.csv (one line a run)."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Sequence

from pfhpo.errors import ConfigError
from pfhpo.experiment.outputs import write_atomic, write_json


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
  # chosen on validation: the test accuracy at the evaluated round of best
  # validation accuracy (a tuner's: of the model it chose), and that
  # validation accuracy
  test_at_best_val: float | None = None
  best_val_acc: float | None = None
  budget: int = 1  # in runs (one run: `rounds` rounds); a tuner's is sized
  # to it (`pfhpo.tuners`), a single run spends 1
  spent_runs: float | None = None  # rounds trained / `rounds`
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
  # (rounds, local steps, validation accuracy, test accuracy) spent and
  # chosen on validation after each evaluation (`pfhpo.tuners.Point`: a
  # run is a tuner of one trial); what the budget figure draws
  anytime: tuple[tuple[int, int, float, float], ...] = ()


def write_results(results: Sequence[RunResult], root: Path) -> None:
  """results.json (every field) and results.csv (all but the curve)."""
  rows = [dataclasses.asdict(r) for r in results]
  write_json(root / 'results.json', rows)
  fields = [f.name for f in dataclasses.fields(RunResult)
            if f.name not in ('curve', 'anytime', 'groups')]
  text = io.StringIO()
  writer = csv.DictWriter(text, fields, extrasaction='ignore')
  writer.writeheader()
  writer.writerows(rows)
  write_atomic(root / 'results.csv', text.getvalue())


def read_results(path: Path) -> list[RunResult]:
  """The rows of a comparison's results.json (`write_results`); a file that
  is not one is a ConfigError naming it."""
  fields = {f.name for f in dataclasses.fields(RunResult)}
  try:
    rows = json.loads(Path(path).read_text())
    results = [RunResult(**{k: v for k, v in row.items() if k in fields})
               for row in rows]
  except (OSError, ValueError, TypeError, AttributeError) as e:
    raise ConfigError(f'{path} is not a comparison\'s results.json '
                      f'({type(e).__name__}); give the file '
                      'experiments/compare.py wrote') from None
  return [dataclasses.replace(
      r, curve=tuple(tuple(point) for point in r.curve),
      anytime=tuple(tuple(point) for point in r.anytime)) for r in results]
