"""Random search, successive halving and Hyperband over a space of H
configurations, each sized to a budget of B runs (a run: R rounds).

Random search (Bergstra & Bengio, JMLR 2012): n = min(B, H) configurations
drawn without replacement, each trained R rounds; it spends n R rounds.

Successive halving (SHA; Jamieson & Talwalkar, AISTATS 2016; as FedEx
wraps it, Khodak et al. NeurIPS 2021): n configurations start; at rung
k = 0..K (K = log_eta n) the n_k = n / eta^k survivors are trained, each
continuing from where it stopped, to r_k = R / eta^(K-k) rounds (rounded to
an evaluated round, r_K = R), and the best 1/eta of them by validation
accuracy at their last evaluation go on. It spends

    sum_k n_k (r_k - r_{k-1})      (r_{-1} = 0),

R (1 + K (1 - 1/eta)) when the rungs divide evenly: 2.5 R for n = 8 and
eta = 2.

Hyperband (Li et al., JMLR 2018): brackets s = s_max .. 0, bracket s an
SHA of n_s = ceil((s_max + 1) eta^s / (s + 1)) fresh configurations whose
first rung is R / eta^s rounds; it spends the sum of its brackets.

Sized to B runs: each tuner takes the largest instance whose stated spend
is at most B R (random search n = min(B, H); SHA the largest n = eta^K <= H;
Hyperband the largest s_max, each bracket's n_s at most H); a space too
small to use the budget spends less, and says so (`TunerResult`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from pfhpo.tuners.ledger import (Ledger, Observation, Trainer, Trial,
                                 TunerResult, rank)


def rung_rounds(n: int, eta: int, rounds: int, every: int) -> list[int]:
  """SHA's K + 1 rungs for n = eta^K configurations: r_k = R / eta^(K-k),
  rounded to the nearest multiple of `every` (the evaluated rounds), at
  least `every`, and r_K = R. Two rungs may fall on one round: the
  survivors are then ranked on the same evaluation twice."""
  k = round(math.log(n, eta)) if n > 1 else 0
  return [rounds if i == k else min(rounds, max(
      every, every * round(rounds / eta ** (k - i) / every)))
          for i in range(k + 1)]


def sha_spend(n: int, eta: int, rungs: Sequence[int]) -> int:
  """The rounds an SHA of n configurations over `rungs` trains."""
  spend, before, alive = 0, 0, n
  for r in rungs:
    spend += alive * (r - before)
    before, alive = r, max(1, alive // eta)
  return spend


def bracket_sizes(s_max: int, eta: int, space: int) -> list[tuple[int, int]]:
  """Hyperband's brackets (s, n_s), most exploratory first; n_s capped at
  the space's H configurations."""
  return [(s, min(space, math.ceil((s_max + 1) * eta ** s / (s + 1))))
          for s in range(s_max, -1, -1)]


def _bracket_rungs(s: int, eta: int, rounds: int, every: int) -> list[int]:
  """Bracket s's s + 1 rungs, the first at R / eta^s rounds."""
  return rung_rounds(eta ** s, eta, rounds, every)


def hyperband_spend(s_max: int, eta: int, space: int, rounds: int,
                    every: int) -> int:
  return sum(sha_spend(n, eta, _bracket_rungs(s, eta, rounds, every))
             for s, n in bracket_sizes(s_max, eta, space))


def draw(rng: np.random.Generator, space: int, n: int) -> list[int]:
  """n distinct configurations of the H = `space`, uniformly: the first n
  of a random order, so that a larger n draws the smaller one's and more."""
  return rng.permutation(space)[:n].tolist()


def random_search(train: Trainer, configs: Sequence[int],
                  rounds: int) -> TunerResult:
  """Every configuration trained R = `rounds` rounds; the incumbent by
  validation."""
  ledger = Ledger(train)
  for z in configs:
    ledger.train(Trial(z), rounds)
  return ledger.result()


def single_run(observations: Sequence[Observation]) -> TunerResult:
  """One run read as a tuner of one trial: charged its evaluations as they
  came, its choice the first of best validation accuracy (a run's own
  `test_at_best_val` and anytime curve, computed as any tuner's)."""
  return random_search(lambda trial, rounds: observations, [0],
                       observations[-1].round if observations else 0)


def successive_halving(train: Trainer, configs: Sequence[int],
                       rungs: Sequence[int], eta: int, bracket: int = 0,
                       ledger: Ledger | None = None) -> TunerResult:
  """SHA over `configs`: the survivors trained to each rung in turn, the
  best 1/eta by validation accuracy at their last evaluation promoted."""
  ledger = ledger or Ledger(train)
  alive = [Trial(z, bracket) for z in configs]
  for i, r in enumerate(rungs):
    seen = [(t, ledger.train(t, r)) for t in alive]
    if i + 1 < len(rungs):
      alive = rank(seen, max(1, len(alive) // eta))
  return ledger.result()


def hyperband(train: Trainer, rng: np.random.Generator, space: int,
              s_max: int, eta: int, rounds: int, every: int) -> TunerResult:
  """Hyperband's brackets in turn, each an SHA of fresh configurations
  drawn from the space, on one ledger."""
  ledger = Ledger(train)
  for bracket, (s, n) in enumerate(bracket_sizes(s_max, eta, space)):
    successive_halving(train, draw(rng, space, n),
                       _bracket_rungs(s, eta, rounds, every), eta,
                       bracket, ledger)
  return ledger.result()


def sized_sha(space: int, eta: int, budget: int, rounds: int,
              every: int) -> int:
  """The largest n = eta^K <= H whose SHA spends at most `budget` runs."""
  n = 1
  while (n * eta <= space and sha_spend(
      n * eta, eta, rung_rounds(n * eta, eta, rounds, every))
         <= budget * rounds):
    n *= eta
  return n


def sized_hyperband(space: int, eta: int, budget: int, rounds: int,
                    every: int) -> int:
  """The largest s_max whose Hyperband spends at most `budget` runs (0:
  one configuration for R rounds)."""
  s = 0
  while (eta ** (s + 1) <= space and hyperband_spend(
      s + 1, eta, space, rounds, every) <= budget * rounds):
    s += 1
  return s
