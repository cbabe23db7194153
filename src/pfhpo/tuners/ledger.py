"""What a tuner spends and the model it would hand over at every point.

A tuner trains trials (a configuration of its space, started afresh in a
bracket of its own) for some rounds each, continuing a trial from where it
stopped, and sees each trial's evaluations (`Observation`). The ledger
charges it what it trains, in the two units federated HPO papers state a
budget in (FedEx, Khodak et al. NeurIPS 2021; FedHPO-Bench, Wang et al.
ICML 2023): communication rounds and client local steps,

    spent_rounds = sum over trials of the rounds it trained
    spent_steps  = sum over trials of the local steps its clients took,

whether or not a trainer found a trial's rounds already run (a static run
the comparison's grid holds), so that a tuner costs what it would cost
alone. Its incumbent, at every point, is the evaluated model of best
validation accuracy seen so far; what the tuner reports is that model's
test accuracy, never chosen on test (`Point`, the anytime curve).
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence


class Observation(NamedTuple):
  """A trial's model evaluated after `round` rounds."""
  round: int
  val_acc: float  # on the round's validation set: what a tuner sees
  # (-inf: the server rejected the round's aggregate; never chosen)
  test_acc: float  # what it reports of the model it chose
  local_steps: int  # the trial's clients' local steps, from its start


class Trial(NamedTuple):
  """A configuration (its index in the tuner's space) trained afresh in a
  `bracket` (Hyperband's; 0 otherwise): two trials of one configuration in
  two brackets are two trainings, each paid for."""
  config: int
  bracket: int = 0


# `train(trial, rounds)`: the trial's observations after it has trained to
# `rounds` rounds (all of them, in round order; fewer rounds where the run
# stopped early), continuing from where it stopped.
Trainer = Callable[[Trial, int], Sequence[Observation]]


class Point(NamedTuple):
  """The anytime curve after one evaluation: the budget spent so far and
  the incumbent's figures."""
  rounds: int
  local_steps: int
  val_acc: float
  test_acc: float


class Choice(NamedTuple):
  """The incumbent: the model of best validation accuracy seen."""
  trial: Trial
  round: int
  val_acc: float
  test_acc: float


class TunerResult(NamedTuple):
  """What a tuner chose and spent; `history` is its anytime curve."""
  choice: Choice | None  # None: no trial was evaluated
  spent_rounds: int
  spent_steps: int
  trials: int  # distinct trials trained
  history: tuple[Point, ...]


class Ledger:
  """Charges a tuner for the trials it trains and tracks its incumbent."""

  def __init__(self, train: Trainer):
    self._train = train
    self._reached: dict[Trial, Observation | None] = {}
    self.rounds = 0
    self.steps = 0
    self.choice: Choice | None = None
    self.history: list[Point] = []

  def train(self, trial: Trial, rounds: int) -> Observation | None:
    """Trains `trial` to `rounds` rounds (or as far as its run went) and
    returns its last evaluation (None: none yet)."""
    before = self._reached.get(trial)
    start = before.round if before else 0
    for obs in self._train(trial, rounds):
      if start < obs.round <= rounds:
        done = self._reached.get(trial)
        self.rounds += obs.round - (done.round if done else 0)
        self.steps += obs.local_steps - (done.local_steps if done else 0)
        self._reached[trial] = obs
        if obs.val_acc > (self.choice.val_acc if self.choice else -math.inf):
          self.choice = Choice(trial, obs.round, obs.val_acc, obs.test_acc)
        if self.choice is not None:
          self.history.append(Point(self.rounds, self.steps,
                                    self.choice.val_acc, self.choice.test_acc))
    return self._reached.get(trial)

  def result(self) -> TunerResult:
    return TunerResult(self.choice, self.rounds, self.steps,
                       len(self._reached), tuple(self.history))


def rank(observed: Sequence[tuple[Trial, Observation | None]],
         keep: int) -> list[Trial]:
  """The `keep` trials of best validation accuracy at their last
  evaluation (ties: the lower configuration first; an unevaluated trial
  last)."""
  order = sorted(observed, key=lambda t: (
      -(t[1].val_acc if t[1] is not None else float('-inf')), t[0]))
  return [trial for trial, _ in order[:keep]]
