"""What the round's measurements cost over a bare FedAvg round.

The one round every experiment runs (`pfhpo.algorithms.fedavg`) also tests
each client for divergence (one forward pass of its first batch) and
measures the aggregate on a validation batch (which the server's divergence
test then compares with its bound). This times it against a bare
FedAvg round built from the same pieces (local updates, `aggregate_clients`,
`server_step`: what `round_throughput.py` timed before the redesign),
alternating the two in one process so that both see the same machine.

    .venv/bin/python benchmarks/guard_overhead.py
    .venv/bin/python benchmarks/guard_overhead.py --models=conv --clients=10

Prints a table and writes JSON rows (`model`, `clients_per_round`,
`bare_s_per_round`, `round_s_per_round`, `overhead`).
"""
from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from common import CLASSES, FEATURES, SHAPE, client_data, write_rows
from pfhpo import models
from pfhpo.algorithms import fedavg
from pfhpo.federated import Execution
from pfhpo.federated.aggregate import aggregate_clients, example_weights
from pfhpo.federated.local_update import default_client_chunk, make_local_update
from pfhpo.federated.server import server_step
from pfhpo.types import ClientBatch, RoundBatch, ValBatch

LR, STEPS, BATCH = 0.05, 5, 16


def medians(name: str, k: int, n: int, val_size: int, rounds: int):
  model = models.create(name, SHAPE, CLASSES)
  x, y = map(jnp.asarray, client_data(k, n))
  count = jnp.full(k, n, jnp.int32)
  chunk, opt = default_client_chunk(name), optax.sgd(1.0)
  one = make_local_update(model, FEATURES, STEPS, BATCH)

  def bare(server, key):
    weights = example_weights(count)
    delta, _ = aggregate_clients(
        lambda *a: one(server.params, *a), server.params,
        (x, y, count, jnp.full(k, LR), jnp.full(k, STEPS, jnp.int32),
         jnp.full(k, BATCH, jnp.int32), jax.random.split(key, k)),
        weights, jnp.ones_like(weights), chunk)
    return server_step(opt, server, delta)

  algorithm = fedavg(model, FEATURES, opt, LR, STEPS, BATCH,
                     execution=Execution(client_chunk=chunk))
  val = ValBatch(x[0, :val_size], y[0, :val_size],
                 jnp.full(val_size, 1 / val_size))
  batch = RoundBatch(jnp.arange(k, dtype=jnp.int32), ClientBatch(x, y, count),
                     val)
  state, rows = algorithm.init(jax.random.PRNGKey(0), k)
  server = state.server
  bare_step, round_step = jax.jit(bare), jax.jit(algorithm.apply)
  key = jax.random.PRNGKey(1)
  times = ([], [])
  for r in range(rounds + 1):  # the first of each compiles
    t = time.perf_counter()
    server = jax.block_until_ready(bare_step(server, key))
    times[0].append(time.perf_counter() - t)
    t = time.perf_counter()
    state, rows, _ = round_step(state, rows, batch, key)
    jax.block_until_ready(state)
    times[1].append(time.perf_counter() - t)
  return tuple(statistics.median(t[1:]) for t in times)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='mlp,conv')
  p.add_argument('--clients', default='10,50')
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--val_size', type=int, default=100)
  p.add_argument('--rounds', type=int, default=10)
  p.add_argument('--out', default=f'benchmarks/results/guard_overhead_'
                 f'{jax.device_count()}dev.json')
  a = p.parse_args()
  print(f'backend={jax.default_backend()} steps={STEPS} batch={BATCH} '
        f'val_size={a.val_size}')
  print(f'{"model":6} {"K":>4} {"bare s":>8} {"round s":>8} {"overhead":>9}')
  rows = []
  for name in a.models.split(','):
    for k in map(int, a.clients.split(',')):
      bare, full = medians(name, k, a.examples, a.val_size, a.rounds)
      rows.append({'model': name, 'clients_per_round': k,
                   'bare_s_per_round': round(bare, 4),
                   'round_s_per_round': round(full, 4),
                   'overhead': round(full / bare, 3), 'val_size': a.val_size,
                   'backend': jax.default_backend()})
      print(f'{name:6} {k:4d} {bare:8.3f} {full:8.3f} {full / bare:8.2f}x',
            flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
