"""The tuners on constructed trainers: what they spend, that they choose on
validation only, and their anytime curves."""
import numpy as np
import pytest

from pfhpo.tuners import (Observation, Trial, hyperband, hyperband_spend,
                          random_search, rung_rounds, sha_spend,
                          sized_hyperband, sized_sha, successive_halving)

R, EVERY = 160, 10


class Recorder:
  """A trainer whose configuration z learns at rate `val_rate[z]` on
  validation and `test_rate[z]` on test; it records every call and the
  rounds each trial has really trained (to check continuation)."""

  def __init__(self, val_rate, test_rate, stop=None):
    self.val_rate, self.test_rate = val_rate, test_rate
    self.stop = stop or {}  # config -> the round its run stopped at
    self.calls, self.trained = [], {}

  def __call__(self, trial, rounds):
    self.calls.append((trial, rounds))
    last = min(rounds, self.stop.get(trial.config, rounds))
    self.trained[trial] = max(self.trained.get(trial, 0), last)
    z = trial.config
    return [Observation(r, 1 - np.exp(-self.val_rate[z] * r),
                        1 - np.exp(-self.test_rate[z] * r), 7 * r)
            for r in range(EVERY, last + 1, EVERY)]


def test_sha_eta_2_over_8_spends_the_budget_it_states():
  rungs = rung_rounds(8, 2, R, EVERY)
  assert rungs == [20, 40, 80, 160]
  assert sha_spend(8, 2, rungs) == 2.5 * R  # R (1 + K (1 - 1/eta)), K = 3
  rates = np.linspace(0.001, 0.01, 8)
  train = Recorder(rates, rates)
  result = successive_halving(train, range(8), rungs, eta=2)
  assert result.spent_rounds == 2.5 * R == sum(train.trained.values())
  assert result.spent_steps == 7 * result.spent_rounds
  assert result.trials == 8
  # 8 to 20 rounds, 4 to 40, 2 to 80, 1 to 160
  assert sorted(train.trained.values()) == [20] * 4 + [40] * 2 + [80, 160]
  assert result.choice.trial == Trial(7) and result.choice.round == R


def test_sha_promotes_by_validation_never_by_test():
  """Validation and test disagree: the configurations that learn fastest
  on test are the slowest on validation. SHA keeps the best by validation
  at every rung and reports the test accuracy of what it chose."""
  val = np.linspace(0.001, 0.01, 8)
  test = val[::-1].copy()
  train = Recorder(val, test)
  result = successive_halving(train, range(8), rung_rounds(8, 2, R, EVERY), 2)
  by_rung = {}
  for trial, rounds in train.calls:
    by_rung.setdefault(rounds, []).append(trial.config)
  assert by_rung == {20: list(range(8)), 40: [7, 6, 5, 4], 80: [7, 6],
                     160: [7]}
  assert result.choice.trial.config == 7
  assert result.choice.test_acc == pytest.approx(1 - np.exp(-test[7] * R))
  # the report is the chosen model's test accuracy, below the best test
  assert result.choice.test_acc < 1 - np.exp(-test[0] * 20)


def test_random_search_spends_n_runs_and_chooses_on_validation():
  val = np.array([0.002, 0.009, 0.004, 0.001])
  test = np.array([0.02, 0.001, 0.002, 0.003])
  train = Recorder(val, test)
  result = random_search(train, [0, 1, 3], R)
  assert result.spent_rounds == 3 * R and result.trials == 3
  assert result.choice.trial.config == 1
  assert result.choice.test_acc == pytest.approx(1 - np.exp(-0.001 * R))


def test_a_stopped_run_is_charged_what_it_ran():
  rates = np.linspace(0.001, 0.01, 4)
  train = Recorder(rates, rates, stop={3: 30})
  result = random_search(train, range(4), R)
  assert result.spent_rounds == 3 * R + 30
  assert result.choice.trial.config == 2  # 3 stopped before it led


def test_hyperband_spends_the_sum_of_its_brackets_each_trial_fresh():
  rng = np.random.default_rng(0)
  rates = np.linspace(0.001, 0.01, 8)
  train = Recorder(rates, rates)
  result = hyperband(train, rng, 8, s_max=3, eta=2, rounds=R, every=EVERY)
  assert result.spent_rounds == hyperband_spend(3, 2, 8, R, EVERY) == \
      12.25 * R == sum(train.trained.values())
  assert {t.bracket for t in train.trained} == {0, 1, 2, 3}
  assert result.trials == 8 + 6 + 4 + 4


@pytest.mark.parametrize('budget', [1, 2, 4, 8])
def test_sized_tuners_spend_at_most_their_budget(budget):
  for rounds, every in ((150, 10), (300, 25), (25, 5)):
    n = sized_sha(8, 2, budget, rounds, every)
    assert sha_spend(n, 2, rung_rounds(n, 2, rounds, every)) <= budget * rounds
    s = sized_hyperband(8, 2, budget, rounds, every)
    assert hyperband_spend(s, 2, 8, rounds, every) <= budget * rounds
  # the largest that fit: SHA over all 8 from 4 runs (2.5 R), Hyperband
  # with s_max = 2 (7 R) at 8
  assert sized_sha(8, 2, budget, R, EVERY) == {1: 1, 2: 4, 4: 8, 8: 8}[budget]
  assert sized_hyperband(8, 2, budget, R, EVERY) == {1: 0, 2: 0, 4: 1,
                                                     8: 2}[budget]


def test_the_anytime_curve_is_the_incumbent_after_each_evaluation():
  val = np.array([0.01, 0.002, 0.02])
  test = np.array([0.001, 0.03, 0.002])
  result = random_search(Recorder(val, test), [0, 1, 2], 30)
  spent = [p.rounds for p in result.history]
  assert spent == list(range(10, 91, 10))
  vals = [p.val_acc for p in result.history]
  assert vals == sorted(vals)  # the incumbent only gets better on val
  # config 1 never leads on validation, so its test accuracy never shows
  assert all(p.test_acc < 1 - np.exp(-0.03 * 10) for p in result.history)
