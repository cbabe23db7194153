"""The methods of the comparison sized to each of its budgets: the method
itself (`gumbel_pop`) as one run of a population of B of its runs at
budget B (`pfhpo.policies.gumbel.gumbel_population`), and the tuners:
random search (`rs`), successive halving (`sha`) and Hyperband
(`hyperband`) over the static grid's configurations, FedEx wrapped in
successive halving (`fedex_sha`: Khodak et al., NeurIPS 2021, Sec. 5) over
FedEx runs, each arm with its own baseline discount (`pfhpo.tuners`), and
FedPop (`fedpop`: Chen et al., AAAI 2025) as one run of a population of B
members at budget B (`pfhpo.fedpop`). All of them search the grid's
server axes too.

A tuner's trial is the static run of its configuration with the
comparison's seed, in the grid's own directory (FedEx+SHA's: the FedEx run
of its arm, in a directory of its own): a trial a tuner takes to
r rounds is that run to round r (continued from its checkpoint where it
went less far: the same rows as the straight run), so a comparison with
the static grid trains nothing twice; each tuner is charged what it would
train alone (`pfhpo.tuners.Ledger`). Its row is the test accuracy of the
model it chose on validation (`test_at_best_val`).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from pfhpo.experiment.comparison.grid import (BUDGETED, TUNERS,
                                              CompareConfig, RunSpec,
                                              describe_server, static_spec)
from pfhpo.experiment.comparison.results import RunResult
from pfhpo.experiment.comparison.runs import read_result, read_rows, train_to
from pfhpo.experiment.config import Config
from pfhpo.experiment.records import observations
from pfhpo.tuners import (Trial, TunerResult, draw, hyperband, random_search,
                          rung_rounds, sized_hyperband, sized_sha,
                          successive_halving)


class TrialFailed(Exception):
  """A tuner's trial raised: the tuner's row is 'failed'."""


def tuner_plan(grid: CompareConfig) -> list[tuple[str, str, int, int]]:
  """(model, method, seed, budget) for every row of the grid sized to a
  budget (the tuners' and the method's population's)."""
  return [(model, tuner, seed, budget) for model in grid.models
          for tuner in grid.policies if tuner in BUDGETED
          for seed in grid.seeds for budget in grid.budgets]


ARMS = 64  # FedEx+SHA's arms at most


def fedex_arm(model: str, seed: int, arm: int,
              servers: Sequence[dict] = ({},)) -> RunSpec:
  """FedEx+SHA's arm `arm`: a FedEx run over the whole client space whose
  baseline discount is drawn from U[0, 1] and whose server configuration
  uniformly from `servers`, as FedEx's wrapper draws each arm's."""
  rng = np.random.default_rng([seed, TUNERS.index('fedex_sha')])
  decays = rng.uniform(0.0, 1.0, ARMS)  # f[ARMS]: arm j's at every budget
  server = rng.integers(0, len(servers), ARMS)  # i[ARMS]
  return RunSpec(model, f'fedex_sha[{arm}]', seed,
                 {'policy': 'fedex', 'baseline_decay': float(decays[arm]),
                  **servers[server[arm]]})


def tune(base: Config, grid: CompareConfig, root: Path, model: str,
         tuner: str, seed: int, budget: int) -> RunResult:
  """One tuner at one budget: its trials run (or read), its choice; or one
  population at one budget."""
  if tuner in POPULATIONS:
    return _population(base, grid, root, model, tuner, seed, budget)
  space, servers = base.search_space(), grid.servers()
  rounds, every = base.run.rounds, base.run.eval_every
  spec_of = ((lambda j: fedex_arm(model, seed, j, servers))
             if tuner == 'fedex_sha' else
             (lambda j: static_spec(model, seed, j, space.size, servers)))

  def train(trial: Trial, to: int):
    spec = spec_of(trial.config)
    error = train_to(base, spec, root, to)
    if error is not None:
      raise TrialFailed(f'{spec.method}: {error}')
    return observations(read_rows(spec.directory(root), to))

  rng = np.random.default_rng([seed, TUNERS.index(tuner)])
  try:
    result, label = _run(tuner, train, rng, space.size * len(servers),
                         grid.eta, budget, rounds, every)
  except TrialFailed as e:
    return RunResult(model, tuner, seed, status='failed', error=str(e)[:300],
                     budget=budget)
  choice = result.choice
  if choice is not None:
    chosen = spec_of(choice.trial.config).settings
    label += (f'; chose {space.describe(chosen["static_index"])}'
              if tuner != 'fedex_sha' else
              f'; chose arm {choice.trial.config} (baseline decay '
              f'{chosen["baseline_decay"]:.2f})') + describe_server(chosen)
    label += f' at round {choice.round}'
  return RunResult(
      model, tuner, seed, status='done', configuration=label,
      test_at_best_val=choice and choice.test_acc,
      best_val_acc=choice and choice.val_acc, budget=budget,
      spent_runs=result.spent_rounds / rounds,
      local_steps_total=result.spent_steps, anytime=result.history)


# The methods that spend a budget of B runs as one run of B members.
POPULATIONS = ('gumbel_pop', 'fedpop')


def population_spec(model: str, method: str, seed: int, budget: int,
                    grid: CompareConfig) -> RunSpec:
  """`method` (POPULATIONS) at `budget`: one run of a population of
  `budget` members (with the grid's server axes)."""
  return RunSpec(model, f'{method}[{budget}]', seed,
                 {**grid.settings_of(method), 'population': budget})


def _population(base: Config, grid: CompareConfig, root: Path, model: str,
                method: str, seed: int, budget: int) -> RunResult:
  spec = population_spec(model, method, seed, budget, grid)
  error = train_to(base, spec, root, base.run.rounds)
  if error is not None:
    return RunResult(model, method, seed, status='failed', error=error,
                     budget=budget)
  out = spec.directory(root)
  result = read_result(spec, out, grid.target_acc)
  label = f'{budget} members'
  if method == 'fedpop':
    chosen = json.loads((out / 'summary.json').read_text())['policy']
    label += f'; the last best one\'s clients prefer {chosen["best_slot"]}'
  return dataclasses.replace(
      result, method=method, budget=budget,
      spent_runs=budget * result.spent_runs, configuration=label)


def _run(tuner: str, train: Callable, rng: np.random.Generator, space: int,
         eta: int, budget: int, rounds: int,
         every: int) -> tuple[TunerResult, str]:
  """The tuner sized to `budget` runs, run; and what it was. FedEx+SHA
  starts as many arms as SHA over the space would configurations."""
  if tuner == 'rs':
    n = min(budget, space)
    return random_search(train, draw(rng, space, n), rounds), f'{n} of {space}'
  if tuner in ('sha', 'fedex_sha'):
    n = sized_sha(space, eta, budget, rounds, every)
    rungs = rung_rounds(n, eta, rounds, every)
    configs = draw(rng, space, n) if tuner == 'sha' else range(n)
    what = f'{n} of {space}' if tuner == 'sha' else f'{n} FedEx arms'
    return (successive_halving(train, configs, rungs, eta),
            f'{what}, eta {eta}, rungs {_rounds(rungs)}')
  s_max = sized_hyperband(space, eta, budget, rounds, every)
  return (hyperband(train, rng, space, s_max, eta, rounds, every),
          f's_max {s_max}, eta {eta}')


def _rounds(rungs: Sequence[int]) -> str:
  return ','.join(map(str, rungs))
