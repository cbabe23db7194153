"""One run of the comparison into its own directory: read if finished,
continued if interrupted or taken to fewer rounds, recorded as failed if
it raised (`run_one`, `train_to`)."""
from __future__ import annotations

import json
import shutil
import traceback
from pathlib import Path

from pfhpo.data.groups import GROUPS
from pfhpo.errors import ConfigError, RunStopped
from pfhpo.experiment.checkpoints import saved_rounds
from pfhpo.experiment.comparison.grid import (RunSpec, config_of,
                                              describe_server)
from pfhpo.experiment.comparison.results import RunResult
from pfhpo.experiment.config import Config
from pfhpo.experiment.loop import run
from pfhpo.experiment.outputs import check_resumable, config_record
from pfhpo.experiment.records import observations
from pfhpo.tuners import single_run


def run_one(base: Config, spec: RunSpec, root: Path,
            target_acc: float | None) -> RunResult:
  """The result of one run: read if finished (and run with the settings
  it has now), else run, continuing from its last checkpoint (a run a
  tuner took to fewer rounds goes on from where it ended). A run that
  raises is a 'failed' result, but for bad input (a ConfigError), which
  stops the comparison."""
  error = train_to(base, spec, root, base.run.rounds)
  if error is not None:
    return RunResult(*spec.key, status='failed', error=error)
  return read_result(spec, spec.directory(root), target_acc)


def train_to(base: Config, spec: RunSpec, root: Path,
             rounds: int) -> str | None:
  """Runs `spec` to `rounds` rounds unless it has run them (or stopped),
  continuing from its last checkpoint: its rows are the straight run's.
  Returns the error of a run that raised (its traceback beside it), else
  None; a ConfigError (bad input, which fails every run alike) is raised."""
  out = spec.directory(root)
  cfg = config_of(base, spec, root, rounds=rounds)
  summary = out / 'summary.json'
  if summary.exists() and _reached(json.loads(summary.read_text()), rounds):
    check_resumable(out, config_record(cfg, {}))
    return None
  resume = bool(saved_rounds(out))
  if out.exists() and not resume:  # died before its first checkpoint
    shutil.rmtree(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  error_file = out.parent / f'seed{spec.seed}.error.txt'
  error_file.unlink(missing_ok=True)  # an earlier attempt's
  try:
    run(config_of(base, spec, root, resume, rounds))
  except RunStopped:
    pass  # its summary says why
  except ConfigError:
    raise  # the command line's one line, exit status 2
  except Exception as e:  # noqa: BLE001 reported in the table, not fatal
    line = str(e).splitlines()[0] if str(e) else type(e).__name__
    error_file.write_text(traceback.format_exc())
    return f'{type(e).__name__}: {line}'[:300]
  return None


def _reached(summary: dict, rounds: int) -> bool:
  """Whether a run's summary is of `rounds` rounds or more, or of a run
  that stopped (it goes no further)."""
  return bool(summary.get('stopped')) or summary['rounds'] >= rounds


def read_result(spec: RunSpec, out: Path,
                target_acc: float | None) -> RunResult:
  """A finished run's RunResult, from its summary.json and metrics.jsonl."""
  summary = json.loads((out / 'summary.json').read_text())
  rows = read_rows(out, summary['rounds'])
  curve = tuple((r['round'], r['global_acc']) for r in rows)
  one = single_run(observations(rows))
  reached = [r for r, acc in curve if target_acc is not None
             and acc >= target_acc]
  names = summary['configurations']
  settings = spec.settings
  configuration = None
  if settings.get('static_index') is not None:
    configuration = names[settings['static_index']] + describe_server(settings)
  elif settings.get('static_groups') is not None:
    configuration = '; '.join(
        f'{g}: {names[z]}' for g, z in zip(GROUPS, settings['static_groups']))
  return RunResult(
      *spec.key, status='stopped' if summary.get('stopped') else 'done',
      error=summary.get('stopped'), configuration=configuration,
      global_acc=summary['global_acc'],
      best_global_acc=summary['best_global_acc'],
      spent_runs=rows[-1]['round'] / summary['rounds'],
      test_at_best_val=one.choice and one.choice.test_acc,
      best_val_acc=one.choice and one.choice.val_acc,
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
      groups=summary.get('groups'), curve=curve,
      anytime=one.history)


def read_rows(out: Path, rounds: int) -> list[dict]:
  """A run's metrics rows of its first `rounds` rounds."""
  rows = [json.loads(line) for line in
          (out / 'metrics.jsonl').read_text().splitlines()]
  return [r for r in rows if r['round'] <= rounds]
