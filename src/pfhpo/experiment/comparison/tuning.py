"""The tuners as methods of the comparison, at each of its budgets: random
search (`rs`), successive halving (`sha`) and Hyperband (`hyperband`) over
the static grid's configurations (`pfhpo.tuners`).

A tuner's trial is the static run of its configuration with the
comparison's seed, in the grid's own directory: a trial a tuner takes to
r rounds is that run to round r (continued from its checkpoint where it
went less far: the same rows as the straight run), so a comparison with
the static grid trains nothing twice; each tuner is charged what it would
train alone (`pfhpo.tuners.Ledger`). Its row is the test accuracy of the
model it chose on validation (`test_at_best_val`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pfhpo.experiment.comparison.grid import (STATIC, TUNERS, CompareConfig,
                                              RunSpec)
from pfhpo.experiment.comparison.results import RunResult
from pfhpo.experiment.comparison.runs import observations, read_rows, train_to
from pfhpo.experiment.config import Config
from pfhpo.tuners import (Trial, TunerResult, draw, hyperband, random_search,
                          rung_rounds, sized_hyperband, sized_sha,
                          successive_halving)


class TrialFailed(Exception):
  """A tuner's trial raised: the tuner's row is 'failed'."""


def static_spec(model: str, seed: int, z: int) -> RunSpec:
  """The static grid's run of configuration z."""
  return RunSpec(model, f'{STATIC}[{z}]', seed,
                 {'policy': STATIC, 'static_index': z})


def tuner_plan(grid: CompareConfig) -> list[tuple[str, str, int, int]]:
  """(model, tuner, seed, budget) for every tuner row of the grid."""
  return [(model, tuner, seed, budget) for model in grid.models
          for tuner in grid.policies if tuner in TUNERS
          for seed in grid.seeds for budget in grid.budgets]


def tune(base: Config, grid: CompareConfig, root: Path, model: str,
         tuner: str, seed: int, budget: int) -> RunResult:
  """One tuner at one budget: its trials run (or read), its choice."""
  space = base.search_space()
  rounds, every = base.run.rounds, base.run.eval_every

  def train(trial: Trial, to: int):
    spec = static_spec(model, seed, trial.config)
    error = train_to(base, spec, root, to)
    if error is not None:
      raise TrialFailed(f'{spec.method}: {error}')
    return observations(read_rows(spec.directory(root), to))

  rng = np.random.default_rng([seed, TUNERS.index(tuner)])
  try:
    result, label = _run(tuner, train, rng, space.size, grid.eta, budget,
                         rounds, every)
  except TrialFailed as e:
    return RunResult(model, tuner, seed, status='failed', error=str(e)[:300],
                     budget=budget)
  choice = result.choice
  configuration = label + (
      f'; chose {space.describe(choice.trial.config)} '
                           f'at round {choice.round}' if choice else '')
  return RunResult(
      model, tuner, seed, status='done', configuration=configuration,
      test_at_best_val=choice and choice.test_acc,
      best_val_acc=choice and choice.val_acc, budget=budget,
      spent_runs=result.spent_rounds / rounds,
      local_steps_total=result.spent_steps, anytime=result.history)


def _run(tuner: str, train: Callable, rng: np.random.Generator, space: int,
         eta: int, budget: int, rounds: int,
         every: int) -> tuple[TunerResult, str]:
  """The tuner sized to `budget` runs, run; and what it was."""
  if tuner == 'rs':
    n = min(budget, space)
    return random_search(train, draw(rng, space, n), rounds), f'{n} of {space}'
  if tuner == 'sha':
    n = sized_sha(space, eta, budget, rounds, every)
    rungs = rung_rounds(n, eta, rounds, every)
    return (successive_halving(train, draw(rng, space, n), rungs, eta),
            f'{n} of {space}, eta {eta}, rungs {_rounds(rungs)}')
  s_max = sized_hyperband(space, eta, budget, rounds, every)
  return (hyperband(train, rng, space, s_max, eta, rounds, every),
          f's_max {s_max}, eta {eta}')


def _rounds(rungs: Sequence[int]) -> str:
  return ','.join(map(str, rungs))
