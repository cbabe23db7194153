"""What credit assignment costs: a `gumbel` round against a `static` round.

Same data, model, clients and search space in one process; the static round
computes the validation loss but skips the backward pass through it and
the aggregation, the gumbel round takes `dL/dc` with `jax.value_and_grad`
and updates per-client logits. The rounds are timed in turn (static,
gumbel, sampled gumbel, again), so that the machine's drift falls on each.

    .venv/bin/python benchmarks/policy_overhead.py
    .venv/bin/python benchmarks/policy_overhead.py --models=mlp --clients=50

The gumbel round is the one-round credit (`horizon` 1); the third column
is the shipped method, `gumbel`'s defaults (the credit over two rounds).
Prints a table and writes JSON rows (`model`, `clients_per_round`,
`static_s_per_round`, `gumbel_s_per_round`, `overhead`,
`default_s_per_round`, `default_overhead`, and the minor page faults of a
static and a one-round gumbel round).

A second table times the credit over K rounds (`--horizons`, each with
the estimators of `pfhpo.federated.horizon` that `--horizon_credits`
names, 'sampled' at each of `--horizon_samples` clients;
`--horizon_models` at `--horizon_clients`) against the same static round,
with each compiled round's device memory as XLA plans it (arguments,
outputs and temporaries, `memory_analysis`; on a CPU there is no
allocator peak to read): JSON rows in `horizon_cost_<n>dev.json`
(`horizon`, `horizon_credit`, `horizon_sample`, `s_per_round`,
`overhead`, `memory_bytes`). `--donate_window` donates the state to every
round, a window included, which the round itself declines.
"""
from __future__ import annotations

import argparse

import jax
import optax

from common import (CLASSES, FEATURES, SHAPE, compiled_round, interleaved,
                    random_round, write_rows)
from pfhpo import models, policies
from pfhpo.federated import Execution, client_mesh, make_round
from pfhpo.federated.credit import make_credit
from pfhpo.federated.local_update import default_client_chunk
from pfhpo.policies import make_space


def round_of(model, space, name: str, k: int, n: int, val_size: int,
             horizon: int | None = 1, horizon_credit: str = 'exact',
             horizon_sample: int | None = None, donate: bool = False):
  """One round of `name` ('static' or 'gumbel'; gumbel's credit over
  `horizon` rounds, 'sampled' from `horizon_sample` clients, or with
  `horizon` None its defaults, the shipped method; `donate`: the state donated
  whatever the round says, `FederatedAlgorithm.donate`)
  over k clients, compiled: (a function of the round's index that runs it
  and waits, the compiled round's device memory in bytes)."""
  batch = random_round(k, n, val_size)
  if name == 'static':
    policy = policies.create(name, space, policies.StaticConfig(0))
  else:
    policy = policies.create(name, space)
  credit = (None if name == 'static' or horizon is None else make_credit(
      horizon, horizon_credit, **({'sample': horizon_sample}
                                  if horizon_sample else {})))
  algorithm = make_round(model, FEATURES, optax.sgd(1.0), space, policy,
                         credit, execution=Execution(
                             default_client_chunk(model.name), client_mesh()))
  # the warm rounds compile it and fill a credit's window: the timed rounds
  # each take the credit of the round `horizon` - 1 back
  return compiled_round(algorithm, batch, horizon or 2,
                        (0,) if donate else None)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='mlp,conv')
  p.add_argument('--clients', default='10,50')
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--val_size', type=int, default=1000)
  p.add_argument('--rounds', type=int, default=7,
                 help='timed rounds of each, interleaved (median)')
  p.add_argument('--out', default=f'benchmarks/results/policy_overhead_'
                 f'{jax.device_count()}dev.json')
  p.add_argument('--horizons', default='2,4,8',
                 help='credits over K rounds to time (empty: none)')
  p.add_argument('--horizon_credits', default='exact,first_order,sampled')
  p.add_argument('--horizon_samples', default='1,2,4',
                 help="the 'sampled' credit's clients trained again")
  p.add_argument('--donate_window', action='store_true',
                 help='donate a state that holds a window too (what the '
                 'round declines: BUILD_NOTES.md, "Issue 28")')
  p.add_argument('--horizon_models', default='mlp')
  p.add_argument('--horizon_clients', default='50')
  p.add_argument('--horizon_out', default=f'benchmarks/results/horizon_cost_'
                 f'{jax.device_count()}dev.json')
  a = p.parse_args()
  space = make_space([0.01, 0.05, 0.2], [1, 5], [8, 16])
  print(f'backend={jax.default_backend()} devices={jax.device_count()} '
        f'H={space.size} val_size={a.val_size}')
  print(f'{"model":6} {"K":>4} {"static s":>9} {"gumbel s":>9} {"overhead":>9}'
        f' {"default s":>10} {"overhead":>9} {"faults st":>10}'
        f' {"faults gu":>10}')
  rows = []
  for name in a.models.split(','):
    model = models.create(name, SHAPE, CLASSES)
    for k in map(int, a.clients.split(',')):
      built = {'static': round_of(model, space, 'static', k, a.examples,
                                  a.val_size),
               'gumbel': round_of(model, space, 'gumbel', k, a.examples,
                                  a.val_size),
               'default': round_of(model, space, 'gumbel', k, a.examples,
                                   a.val_size, horizon=None)}
      got = interleaved({key: b[0] for key, b in built.items()}, a.rounds)
      (s, fs), (g, fg), (gd, _) = (got[key] for key in built)
      rows.append({'model': name, 'clients_per_round': k,
                   'static_s_per_round': round(s, 4),
                   'gumbel_s_per_round': round(g, 4),
                   'overhead': round(g / s, 2),
                   'default_s_per_round': round(gd, 4),
                   'default_overhead': round(gd / s, 2),
                   'val_size': a.val_size,
                   'static_page_faults_per_round': round(fs),
                   'gumbel_page_faults_per_round': round(fg),
                   'search_space_size': space.size,
                   'backend': jax.default_backend()})
      print(f'{name:6} {k:4d} {s:9.3f} {g:9.3f} {g / s:8.2f}x {gd:10.3f} '
            f'{gd / s:8.2f}x {fs:10.0f} {fg:10.0f}', flush=True)
  write_rows(rows, a.out)
  if a.horizons:
    horizon_table(a, space)


def horizon_table(a, space) -> None:
  """The credit over K rounds, each estimator, against a static round."""
  print(f'{"model":6} {"K":>4} {"horizon":>7} {"credit":>11} {"s":>8} '
        f'{"overhead":>9} {"memory MB":>10}')
  rows = []
  for name in a.horizon_models.split(','):
    model = models.create(name, SHAPE, CLASSES)
    for k in map(int, a.horizon_clients.split(',')):
      runs = {('static', 1, '-'): ('static', 1, 'exact', 0)}
      runs[('gumbel', 1, '-')] = ('gumbel', 1, 'exact', 0)
      for h in map(int, a.horizons.split(',')):
        for credit in a.horizon_credits.split(','):
          for m in (a.horizon_samples.split(',') if credit == 'sampled'
                    else ['0']):
            label = f'{credit}:{m}' if credit == 'sampled' else credit
            runs[('gumbel', h, label)] = ('gumbel', h, credit, int(m))
      built = {key: round_of(model, space, policy, k, a.examples, a.val_size,
                             h, credit, m, a.donate_window)
               for key, (policy, h, credit, m) in runs.items()}
      got = interleaved({key: b[0] for key, b in built.items()}, a.rounds)
      static_s = got[('static', 1, '-')][0]
      for key, (seconds, _) in got.items():
        policy, h, credit = key
        memory = built[key][1]
        rows.append({'model': name, 'clients_per_round': k, 'policy': policy,
                     'horizon': h, 'horizon_credit': credit.split(':')[0],
                     'horizon_sample': runs[key][3] or None,
                     's_per_round': round(seconds, 4),
                     'overhead': round(seconds / static_s, 2),
                     'memory_bytes': int(memory),
                     'backend': jax.default_backend()})
        print(f'{name:6} {k:4d} {h if policy == "gumbel" else "-":>7} '
              f'{credit if policy == "gumbel" else "static":>11} '
              f'{seconds:8.3f} {seconds / static_s:8.2f}x '
              f'{memory / 2**20:10.1f}', flush=True)
  write_rows(rows, a.horizon_out)


if __name__ == '__main__':
  main()
