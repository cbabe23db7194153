"""What the method's population costs: a round of B members (`gumbel_pop`)
against one member's round (`gumbel`, the shipped method), B = 1, 2, 4, 8.

Same data, model, clients and search space in one process; every round
compiled before it is timed, the rounds timed in turn so that the
machine's drift falls on each. The target (issue 44): a population's
round at most B times one member's, `ratio` <= B (`per_member` <= 1). A
population of one is the run alone (no vmap), so its ratio is 1 up to
noise.

    .venv/bin/python benchmarks/population_cost.py
    .venv/bin/python benchmarks/population_cost.py --models=mlp --clients=50

Prints a table and writes JSON rows (`model`, `clients_per_round`,
`population`, `member_s_per_round`, `s_per_round`, `ratio`,
`per_member`, `memory_bytes`).
"""
from __future__ import annotations

import argparse

import jax
import optax

from common import (CLASSES, FEATURES, SHAPE, compiled_round, interleaved,
                    random_round, write_rows)
from pfhpo import models, policies
from pfhpo.evaluate import make_val_loss
from pfhpo.federated import Execution, client_mesh, make_round
from pfhpo.federated.local_update import default_client_chunk
from pfhpo.federated.population import population_round
from pfhpo.policies import make_space


def round_of(model, space, size: int, k: int, n: int, val_size: int):
  """The method's round as a population of `size` (0: the run alone) over k
  clients, compiled: (a function of the round's index that runs it and
  waits, the compiled round's memory in bytes)."""
  batch = random_round(k, n, val_size)
  name = 'gumbel_pop' if size else 'gumbel'
  config = (policies.GumbelPopConfig(population=size, exploit_every=2)
            if size else None)
  policy = policies.create(name, space, config)
  algorithm = make_round(model, FEATURES, optax.sgd(1.0), space, policy,
                         execution=Execution(default_client_chunk(model.name),
                                             client_mesh()))
  if size:
    algorithm = population_round(algorithm, policy.population,
                                 make_val_loss(model, FEATURES))
  return compiled_round(algorithm, batch, 2)  # compiles, fills the window


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='mlp')
  p.add_argument('--clients', default='10')
  p.add_argument('--populations', default='1,2,4,8')
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--val_size', type=int, default=500)
  p.add_argument('--rounds', type=int, default=7,
                 help='timed rounds of each, interleaved (median)')
  p.add_argument('--out', default=f'benchmarks/results/population_cost_'
                 f'{jax.device_count()}dev.json')
  a = p.parse_args()
  space = make_space([0.01, 0.05, 0.2], [1, 5], [8, 16])
  print(f'backend={jax.default_backend()} devices={jax.device_count()} '
        f'H={space.size} val_size={a.val_size}')
  print(f'{"model":6} {"K":>4} {"B":>3} {"member s":>9} {"pop s":>9} '
        f'{"ratio":>7} {"per member":>11} {"memory MB":>10}')
  rows = []
  sizes = [int(b) for b in a.populations.split(',')]
  for name in a.models.split(','):
    model = models.create(name, SHAPE, CLASSES)
    for k in map(int, a.clients.split(',')):
      built = {b: round_of(model, space, b, k, a.examples, a.val_size)
               for b in [0] + sizes}
      got = interleaved({b: run[0] for b, run in built.items()}, a.rounds)
      member = got[0][0]
      for b in sizes:
        seconds = got[b][0]
        rows.append({'model': name, 'clients_per_round': k, 'population': b,
                     'member_s_per_round': round(member, 4),
                     's_per_round': round(seconds, 4),
                     'ratio': round(seconds / member, 2),
                     'per_member': round(seconds / member / b, 2),
                     'memory_bytes': int(built[b][1]),
                     'backend': jax.default_backend()})
        print(f'{name:6} {k:4d} {b:3d} {member:9.3f} {seconds:9.3f} '
              f'{seconds / member:6.2f}x {seconds / member / b:10.2f}x '
              f'{built[b][1] / 2**20:10.1f}', flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
