"""Seconds per FedAvg round: our compiled vmapped round against fedjax's FedAvg.

Both sides do identical work in one process: the same architecture (our flax
`mlp`/`conv` and fedjax's haiku EMNIST dense/CNN models: same layers, same
parameter count, dropout in both CNNs; for `resnet18`, which fedjax's EMNIST
models lack, our flax network wrapped as a fedjax Model), K clients of 200 examples, `steps`
SGD steps of `batch` examples each, server SGD at learning rate 1. fedjax
runs its `fed_avg.federated_averaging` (a Python loop over clients of jitted
per-step calls); ours runs the one compiled round every experiment runs
(`pfhpo.federated.fedavg`: the round with the static policy, which also
measures the aggregate's loss on 100 validation examples), clients vmapped
`--client_chunk` at a time (CPU default 2) and sharded over all devices.

    .venv/bin/python benchmarks/round_throughput.py            # full table
    .venv/bin/python benchmarks/round_throughput.py --models=mlp --clients=50
    # the client axis sharded over both cores of a CPU host:
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        .venv/bin/python benchmarks/round_throughput.py

Prints a table and writes JSON rows (`model`, `clients_per_round`,
`ours_s_per_round`, `fedjax_s_per_round`, `speedup`, examples per second,
compile time, backend, conv implementation), and the FLOP/s our round's
local training achieves (`ours_gflops`: the model's forward FLOPs as XLA
counts them, x3 for the backward pass, over the round's seconds) against
the machine's float32 matmul peak measured at the start of the same run
(`matmul_peak_gflops`).
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
from pfhpo.compat import fedjax
from pfhpo.federated import client_mesh, fedavg
from pfhpo.federated.local_update import default_client_chunk
from pfhpo.models import cross_entropy
from pfhpo.types import ClientBatch, RoundBatch, ValBatch
from fedjax.algorithms import fed_avg
from fedjax.models import emnist



def timed(fn, rounds: int) -> tuple[float, float]:
  """(first call incl. compilation, median of `rounds` further calls), seconds."""
  t = time.perf_counter()
  fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(rounds):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return first, statistics.median(times)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """This machine's dense float32 matmul rate, FLOP/s: the best of
  `repeats` timed n x n products (measured in the same run as the rounds)."""
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  dot(a, a).block_until_ready()
  best = min(timed(lambda: dot(a, a).block_until_ready(), 1)[1]
             for _ in range(repeats))
  return 2 * n**3 / best


def training_flops(name: str, k: int, steps: int, batch: int) -> float:
  """The FLOPs of a round's local training: K x steps x batch examples, each
  a forward pass and a backward pass of twice its cost (XLA's count of the
  model's forward pass on one batch, conv_impl `lax`: the convolutions'
  own FLOPs, whatever form computes them)."""
  model = models.create(name, SHAPE, CLASSES, conv_impl='lax')
  params = model.init(jax.random.PRNGKey(0))
  x = jnp.zeros((batch, *SHAPE), jnp.float32)
  cost = jax.jit(model.apply).lower(params, x).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return 3 * cost['flops'] * k * steps


def ours(name: str, k: int, steps: int, batch: int, n: int, rounds: int,
         conv_impl: str, chunk: int | None):
  model = models.create(name, SHAPE, CLASSES, conv_impl=conv_impl)
  # As a run does (experiment/setup.py): XLA's convolutions on a CPU need
  # the step loop unrolled.
  unroll = jax.default_backend() == 'cpu' and conv_impl == 'lax' and name != 'mlp'
  algo = fedavg(model, FEATURES, optax.sgd(1.0), 0.05, steps, batch,
                client_chunk=chunk, mesh=client_mesh(), unroll=unroll)
  x, y = client_data(k, n)
  val = ValBatch(jnp.asarray(x[0, :100]), jnp.asarray(y[0, :100]),
                 jnp.full(100, 0.01))
  data = RoundBatch(jnp.arange(k, dtype=jnp.int32), ClientBatch(
      jnp.asarray(x), jnp.asarray(y), jnp.full(k, n, jnp.int32)), val)
  apply = jax.jit(algo.apply, donate_argnums=(0,))
  state = list(algo.init(jax.random.PRNGKey(0), k))
  key = jax.random.PRNGKey(1)

  def one_round():
    state[0], state[1], _ = apply(state[0], state[1], data, key)
    jax.block_until_ready(state[0])

  return timed(one_round, rounds)


def flax_as_fedjax(name: str) -> fedjax.Model:
  """Our flax model `name` (XLA's convolutions) as a fedjax Model, for the
  architectures fedjax's EMNIST models lack (resnet18): the same network
  on both sides."""
  model = models.create(name, SHAPE, CLASSES, conv_impl='lax')
  logits = jax.jit(lambda params, batch, rng=None: model.apply(params,
                                                               batch['x']))
  return fedjax.Model(
      init=jax.jit(model.init), apply_for_train=logits,
      apply_for_eval=logits,
      train_loss=lambda batch, preds: cross_entropy(preds, batch['y']),
      eval_metrics={})


def theirs(name: str, k: int, steps: int, batch: int, n: int, rounds: int):
  model = {'conv': emnist.create_conv_model,
           'mlp': emnist.create_dense_model,
           'resnet18': lambda: flax_as_fedjax('resnet18')}[name]()
  algo = fed_avg.federated_averaging(
      fedjax.model_grad(model), fedjax.optimizers.sgd(0.05),
      fedjax.optimizers.sgd(1.0),
      fedjax.ShuffleRepeatBatchHParams(batch_size=batch, num_epochs=None,
                                       num_steps=steps))
  x, y = client_data(k, n)
  clients = [(f'{i}'.encode(),
              fedjax.ClientDataset({'x': FEATURES(x[i]), 'y': y[i]}),
              jax.random.PRNGKey(i)) for i in range(k)]
  state = [algo.init(model.init(jax.random.PRNGKey(0)))]

  def one_round():
    state[0], _ = algo.apply(state[0], clients)
    jax.block_until_ready(state[0].params)

  return timed(one_round, rounds)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='mlp,conv')
  p.add_argument('--clients', default='10,50,100')
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--rounds', type=int, default=3, help='timed rounds (median)')
  p.add_argument('--conv_impl', default=models.default_conv_impl())
  p.add_argument('--client_chunk', type=int, default=default_client_chunk(),
                 help='clients trained side by side (0: all at once)')
  p.add_argument('--out', default=f'benchmarks/results/round_throughput_'
                 f'{jax.device_count()}dev.json')
  a = p.parse_args()
  chunk = a.client_chunk or None
  peak = matmul_peak()
  print(f'matmul peak {peak / 1e9:.0f} GFLOP/s (float32, 2048 x 2048)')
  rows = []
  print(f'backend={jax.default_backend()} devices={jax.devices()} '
        f'conv_impl={a.conv_impl} client_chunk={chunk} steps={a.steps} '
        f'batch={a.batch}')
  print(f'{"model":6} {"K":>4} {"ours s/round":>13} {"fedjax s/round":>15} '
        f'{"speedup":>8} {"ours ex/s":>10} {"compile s":>10} '
        f'{"GFLOP/s":>8} {"of peak":>8}')
  for name in a.models.split(','):
    for k in map(int, a.clients.split(',')):
      first, ours_s = ours(name, k, a.steps, a.batch, a.examples, a.rounds,
                           a.conv_impl, chunk)
      _, fedjax_s = theirs(name, k, a.steps, a.batch, a.examples, a.rounds)
      examples = k * a.steps * a.batch
      row = {
          'model': name, 'clients_per_round': k,
          'ours_s_per_round': round(ours_s, 4),
          'fedjax_s_per_round': round(fedjax_s, 4),
          'speedup': round(fedjax_s / ours_s, 2),
          'ours_examples_per_s': round(examples / ours_s, 1),
          'fedjax_examples_per_s': round(examples / fedjax_s, 1),
          'ours_first_round_s': round(first, 2),
          'ours_gflops': round(training_flops(name, k, a.steps, a.batch)
                               / ours_s / 1e9, 1),
          'matmul_peak_gflops': round(peak / 1e9, 1),
          'local_steps': a.steps, 'batch_size': a.batch,
          'backend': jax.default_backend(), 'conv_impl': a.conv_impl,
          'client_chunk': chunk, 'devices': jax.device_count(),
      }
      rows.append(row)
      print(f'{name:6} {k:4d} {ours_s:13.3f} {fedjax_s:15.3f} '
            f'{row["speedup"]:7.2f}x {row["ours_examples_per_s"]:10.0f} '
            f'{first:10.1f} {row["ours_gflops"]:8.1f} '
            f'{row["ours_gflops"] / row["matmul_peak_gflops"]:8.0%}',
            flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
