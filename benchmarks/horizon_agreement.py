"""How far the cheap credits over K rounds are from the exact one, on a preset.

Every estimator runs on the same rounds: a `gumbel` policy whose logits
never move (`optax.sgd(0)`: every client draws uniformly, from the same
keys), so the server's trajectory, and every window, is the same for all
(the script checks it). Each round after the first window closes, the
credits of the oldest round's clients from the first-order estimator and
from the sampled one at each of `--samples` clients
(`pfhpo.federated.horizon`) are set against the exact K-round credit:
Pearson correlation over the round's clients and the share of clients
whose signs agree, averaged over the rounds; the one-round credit of the
same round (K = 1) is set against it too, which says how much the horizon
changes the signal. Last, per estimator, the mean over rounds and clients
of each configuration's credit in units of its round's spread (what the
gumbel update moves the logits by): the lower, the more the estimator
favours the configuration.

    .venv/bin/python benchmarks/horizon_agreement.py \\
        --config=experiments/configs/cross_silo.toml --horizons=2,4 --rounds=40 \\
        --samples=1,2,4

Prints a table per horizon and writes JSON rows (`preset`, `horizon`,
`estimator`, `corr_with_exact`, `sign_agreement`, `rounds`,
`mean_normalized_credit` per configuration).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np
import optax

from common import write_rows
from pfhpo import algorithms, models
from pfhpo.experiment.flags import command_from_args
from pfhpo.experiment.setup import build, keys, sample_clients
from pfhpo.federated import Execution, make_round
from pfhpo.federated.credit import make_credit
from pfhpo.policies import GumbelConfig, gumbel


def credits(config: str, horizons: list[int], samples: list[int],
            rounds: int, seed: int):
  """{(horizon, estimator): f32[rounds, K] the credit each round reported}
  on one trajectory ('sampled:m' the sampled estimator from m clients),
  with the rounds' choices i32[rounds, K] and the space's size."""
  cfg = command_from_args([f'--config={config}', f'--rounds={rounds}',
                           f'--seed={seed}']).config
  exp = build(cfg)
  model = models.create(cfg.model.model, exp.data.feature_shape,
                        exp.data.num_classes,
                        conv_impl=exp.resolved['conv_impl'])
  estimators = [(1, 'exact')] + [
      (h, e) for h in horizons for e in (
          'exact', 'first_order', *(f'sampled:{m}' for m in samples))]
  init_key, round_key = keys(seed)
  first = exp.batch(sample_clients(seed, 1, exp.pool,
                                   cfg.run.clients_per_round))
  runs = {}
  for h, e in estimators:
    estimator, _, m = e.partition(':')
    algorithm = make_round(
        model, exp.data.features, cfg.server.optimizer(), exp.space,
        gumbel(exp.space, optax.sgd(0.0)),
        make_credit(h, estimator, int(m or 1), GumbelConfig().credit_at),
        algorithms.create('fedavg', None, model, exp.data.features,
                          exp.space.max_steps, exp.space.max_batch,
                          cfg.space.momentum, exp.resolved['unroll']),
        Execution(exp.resolved['client_chunk']))
    state, table = algorithm.init(init_key, exp.data.num_clients, first)
    runs[h, e] = [jax.jit(algorithm.apply), state, table, []]
  choices = []
  for r in range(1, rounds + 1):
    clients = sample_clients(seed, r, exp.pool, cfg.run.clients_per_round)
    batch = exp.batch(clients)
    losses = set()
    for run in runs.values():
      step, state, table, got = run
      run[1], run[2], m = step(state, table, batch,
                               jax.random.fold_in(round_key, r))
      got.append(np.asarray(m.credit))
      losses.add(float(m.val_loss))
    assert len(losses) == 1, f'round {r}: the trajectories parted'
    choices.append(np.asarray(m.choices))
    print(f'round {r}/{rounds}', end='\r', flush=True)
  return ({key: np.stack(run[3]) for key, run in runs.items()},
          np.stack(choices), exp.space.size)


def corr(a: np.ndarray, b: np.ndarray) -> float:
  a, b = a - a.mean(), b - b.mean()
  return float(a @ b / max(np.sqrt((a @ a) * (b @ b)), 1e-30))


def favour(credit: np.ndarray, choices: np.ndarray, size: int) -> list:
  """Each configuration's mean credit in units of its round's spread."""
  z = credit / np.maximum(credit.std(1, keepdims=True), 1e-30)
  return [round(float(z[choices == c].mean()), 3) if np.any(choices == c)
          else None for c in range(size)]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='experiments/configs/cross_silo.toml')
  p.add_argument('--horizons', default='2,4')
  p.add_argument('--samples', default='1,2,4',
                 help="the 'sampled' estimator's clients trained again")
  p.add_argument('--rounds', type=int, default=40)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--out', default=None,
                 help='default: benchmarks/results/horizon_agreement_'
                 '<preset>.json')
  a = p.parse_args()
  horizons = [int(h) for h in a.horizons.split(',')]
  samples = [int(m) for m in a.samples.split(',') if m]
  got, choices, size = credits(a.config, horizons, samples, a.rounds, a.seed)
  preset = Path(a.config).stem
  rows = []
  print(f'{preset}, {a.rounds} rounds, seed {a.seed}; credit of round t '
        'against the exact one over K rounds')
  print(f'{"K":>3} {"estimator":>12} {"corr":>6} {"signs":>6}  mean credit '
        'per configuration (in round spreads)')
  for h in horizons:
    exact = got[h, 'exact'][h - 1:]  # round t + h - 1 credits round t
    made = choices[:a.rounds - h + 1]  # the choices of the rounds credited
    for name, credit in (('one-round', got[1, 'exact'][:a.rounds - h + 1]),
                         *((e, got[h, e][h - 1:]) for e in (
                             'first_order',
                             *(f'sampled:{m}' for m in samples))),
                         ('exact', exact)):
      c = np.mean([corr(x, y) for x, y in zip(credit, exact)])
      s = float(np.mean(np.sign(credit) == np.sign(exact)))
      f = favour(credit, made, size)
      rows.append({'preset': preset, 'seed': a.seed, 'horizon': h,
                   'estimator': name, 'corr_with_exact': round(float(c), 3),
                   'sign_agreement': round(s, 3), 'rounds': len(exact),
                   'mean_normalized_credit': f})
      print(f'{h:3d} {name:>12} {c:6.3f} {s:6.3f}  {f}')
  write_rows(rows, a.out or f'benchmarks/results/horizon_agreement_'
             f'{preset}.json')


if __name__ == '__main__':
  main()
