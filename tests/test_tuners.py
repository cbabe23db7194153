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


# Worked by hand from the definitions in `pfhpo.tuners.search`, eta = 2 over
# H = 8 configurations. SHA of n = 2^K: rung k at R / 2^(K-k) rounds, rounded
# to the nearest multiple of `every` (at least `every`), the last at R; it
# spends sum_k n_k (r_k - r_{k-1}), n_k = n / 2^k. Hyperband's bracket s is
# an SHA of n_s = ceil((s_max + 1) 2^s / (s + 1)) configurations (at most 8;
# from rung to rung max(1, floor(alive / 2)) go on) over the rungs of 2^s.
#
# R = 160, every 10 (no rounding): rungs [160], [80, 160], [40, 80, 160],
# [20, 40, 80, 160]; SHA spends 160 (n = 1), 2*80 + 80 = 240 (n = 2),
# 4*40 + 2*40 + 80 = 320 (n = 4), 8*20 + 4*20 + 2*40 + 80 = 400 (n = 8).
# Hyperband s_max = 1: brackets (s, n_s) = (1, 2), (0, 2): 240 + 2*160 = 560;
# s_max = 2: (2, 4), (1, 3), (0, 3): 320 + (3*80 + 1*80) + 3*160 = 1120;
# s_max = 3: (3, 8), (2, 6), (1, 4), (0, 4):
#   400 + (6*40 + 3*40 + 1*80) + (4*80 + 2*80) + 4*160 = 1960.
#
# R = 200, every 30 (rounding both ways): 100/30 = 3.3 -> 90, 50/30 = 1.7 ->
# 60, 25/30 = 0.8 -> 30: rungs [90, 200], [60, 90, 200], [30, 60, 90, 200];
# SHA spends 200, 2*90 + 110 = 290, 4*60 + 2*30 + 110 = 410,
# 8*30 + 4*30 + 2*30 + 110 = 530. Hyperband: s_max = 1: 290 + 2*200 = 690;
# s_max = 2: 410 + (3*90 + 110) + 3*200 = 1390; s_max = 3:
#   530 + (6*60 + 3*30 + 110) + (4*90 + 2*110) + 4*200 = 2470.
#
# R = 50, every 20 (rungs clamped at `every`): 25/20 -> 20, 12.5/20 -> 20,
# 6.25/20 -> 0 -> 20: rungs [20, 50], [20, 20, 50], [20, 20, 20, 50]; SHA
# spends 50, 2*20 + 30 = 70, 4*20 + 0 + 30 = 110, 8*20 + 0 + 0 + 30 = 190.
# Hyperband: s_max = 1: 70 + 2*50 = 170; s_max = 2: 110 + (3*20 + 30) +
# 3*50 = 350; s_max = 3: 190 + (6*20 + 0 + 30) + (4*20 + 2*30) + 4*50 = 680.
RUNGS = {(160, 10): [[160], [80, 160], [40, 80, 160], [20, 40, 80, 160]],
         (200, 30): [[200], [90, 200], [60, 90, 200], [30, 60, 90, 200]],
         (50, 20): [[50], [20, 50], [20, 20, 50], [20, 20, 20, 50]]}
SHA_SPEND = {(160, 10): [160, 240, 320, 400], (200, 30): [200, 290, 410, 530],
             (50, 20): [50, 70, 110, 190]}  # n = 1, 2, 4, 8
HYPERBAND_SPEND = {(160, 10): [160, 560, 1120, 1960],
                   (200, 30): [200, 690, 1390, 2470],
                   (50, 20): [50, 170, 350, 680]}  # s_max = 0 .. 3
# The largest that spends at most B R: SHA's n and Hyperband's s_max. At
# B = 2, R = 200 and R = 50 fit only n = 2 (410 > 400, 110 > 100) where the
# even-rung formula's 2 R would fit n = 4; at B = 7 Hyperband's s_max = 2
# fits with nothing to spare at R = 160 and R = 50 (1120 = 7 * 160,
# 350 = 7 * 50); s_max = 3 (8 = H configurations in its first bracket)
# needs B = 16.
SIZED = {(160, 10): {1: (1, 0), 2: (4, 0), 3: (8, 0), 4: (8, 1), 7: (8, 2),
                     8: (8, 2), 16: (8, 3)},
         (200, 30): {1: (1, 0), 2: (2, 0), 3: (8, 0), 4: (8, 1), 7: (8, 2),
                     8: (8, 2), 16: (8, 3)},
         (50, 20): {1: (1, 0), 2: (2, 0), 3: (4, 0), 4: (8, 1), 7: (8, 2),
                    8: (8, 2), 16: (8, 3)}}


@pytest.mark.parametrize('rounds,every', sorted(RUNGS))
def test_rungs_and_spends_are_the_hand_worked_ones(rounds, every):
  """The rungs of SHA over 1, 2, 4, 8 configurations, their spends and
  Hyperband's for s_max = 0 .. 3, against the values worked out above."""
  for i, n in enumerate((1, 2, 4, 8)):
    assert rung_rounds(n, 2, rounds, every) == RUNGS[rounds, every][i]
    assert sha_spend(n, 2, RUNGS[rounds, every][i]) == \
        SHA_SPEND[rounds, every][i]
    assert hyperband_spend(i, 2, 8, rounds, every) == \
        HYPERBAND_SPEND[rounds, every][i]


@pytest.mark.parametrize('budget', [1, 2, 3, 4, 7, 8, 16])
def test_sized_tuners_take_the_largest_instance_within_their_budget(budget):
  """SHA's n and Hyperband's s_max sized to B runs are the hand-worked
  largest whose spend is at most B R (`SIZED`, from the spends above)."""
  for (rounds, every), sized in SIZED.items():
    n, s = sized[budget]
    assert sized_sha(8, 2, budget, rounds, every) == n, (rounds, budget)
    assert sized_hyperband(8, 2, budget, rounds, every) == s, (rounds,
                                                                budget)


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
