"""Seconds per FedAvg round: our compiled vmapped round against fedjax's FedAvg.

Both sides do identical work in one process: the same architecture (our flax
`mlp`/`conv` and fedjax's haiku EMNIST dense/CNN models: same layers, same
parameter count, dropout in both CNNs; for `resnet18`, which fedjax's EMNIST
models lack, our flax network wrapped as a fedjax Model), K clients of 200 examples, `steps`
SGD steps of `batch` examples each, server SGD at learning rate 1. fedjax
runs its `fed_avg.federated_averaging` (a Python loop over clients of jitted
per-step calls); ours runs the one compiled round every experiment runs
(`pfhpo.algorithms.fedavg`: the round with the static policy, which also
measures the aggregate's loss on 100 validation examples), clients vmapped
`--client_chunk` at a time (CPU default: 1 for conv and resnet18, 2 for
mlp) and sharded over all devices, its clients' rows already split over
the devices as a run's loop sends them while the round before computes.
A third side, `lean_round.py`, is the same work as the plainest XLA
program, laid out as ours but without the round's per-client
configurations, divergence checks, validation and policy: `lean s` is how
fast JAX does this work on this machine, and `lean x` fedjax's seconds
over it.
The three sides' rounds are timed in turn (`common.interleaved`), so that
the machine's drift falls on all of them.

    .venv/bin/python benchmarks/round_throughput.py            # full table
    .venv/bin/python benchmarks/round_throughput.py --models=mlp --clients=50
    # the client axis sharded over both cores of a CPU host:
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        .venv/bin/python benchmarks/round_throughput.py

Prints a table and writes JSON rows (`model`, `clients_per_round`,
`ours_s_per_round`, `fedjax_s_per_round`, `speedup`, `lean_s_per_round`,
`lean_speedup`, examples per second,
compile time, backend, conv implementation). `ours_gflops` is the FLOP/s
our round's local training achieves: the multiply-adds of every matmul of
a client step (`matmul_floor.step_matmuls`, convolutions as patches x
matrix, counted exactly) over the round's seconds, against the machine's
float32 matmul peak measured at the start of the same run
(`matmul_peak_gflops`). `matmul_floor_s` is those matmuls timed alone
(`matmul_floor.matmul_floor`), and `speedup_cap` fedjax's seconds over it:
the most any implementation of the same arithmetic could gain on this
machine at these matmuls' rates (`of cap` in the table: floor / ours).
"""
from __future__ import annotations

import argparse
import time
from typing import Callable, NamedTuple

import jax
import numpy as np
import optax

from common import CLASSES, FEATURES, SHAPE, client_data, interleaved, write_rows
from lean_round import lean_round
from matmul_floor import matmul_floor, matmul_peak, round_flops, step_matmuls
from pfhpo import convolution, models
from pfhpo.compat import fedjax
from pfhpo.algorithms import fedavg
from pfhpo.federated import Execution, client_mesh
from pfhpo.federated.local_update import default_client_chunk, default_unroll
from pfhpo.federated.sharding import client_rows, replicate
from pfhpo.models import cross_entropy
from pfhpo.types import ClientBatch, RoundBatch, ValBatch
from fedjax.algorithms import fed_avg
from fedjax.models import emnist



class OurRound(NamedTuple):
  first_s: float              # the first round's seconds, compilation included
  run: Callable[..., None]    # run(index): one more round, waited for
  hlo: Callable[[], str]      # the round's optimized HLO, as XLA compiled it


def chunk_for(name: str, flag: int | None) -> int | None:
  """The clients trained side by side for model `name` given `--client_chunk`
  (None: the model's default, 0: all at once)."""
  return default_client_chunk(name) if flag is None else flag or None


def ours(name: str, k: int, steps: int, batch: int, n: int, conv_impl: str,
         chunk: int | None) -> OurRound:
  """Our round of k clients, compiled and run once."""
  model = models.create(name, SHAPE, CLASSES, conv_impl=conv_impl)
  mesh = client_mesh()
  algo = fedavg(model, FEATURES, optax.sgd(1.0), 0.05, steps, batch,
                unroll=default_unroll(name, conv_impl),
                execution=Execution(chunk, mesh))
  x, y = client_data(k, n)
  # As a run's loop builds a round (data/batches.py): the clients' rows
  # already on their devices, split over the mesh (a run sends the next
  # round's while this one computes; here every round has the same
  # clients, sent once), and the validation set from the host.
  clients = np.arange(k, dtype=np.int32)
  rows = lambda a: client_rows(a.__getitem__, clients, mesh)
  val = ValBatch(x[0, :100], y[0, :100], np.full(100, 0.01, np.float32))
  data = RoundBatch(clients, ClientBatch(rows(x), rows(y), rows(
      np.full(k, n, np.int32))), val)
  apply = jax.jit(algo.apply, donate_argnums=algo.donate)
  state = list(algo.init(jax.random.PRNGKey(0), k))
  key = jax.random.PRNGKey(1)

  def one_round(_=0):
    state[0], state[1], _ = apply(state[0], state[1], data, key)
    jax.block_until_ready(state[0])

  t = time.perf_counter()
  one_round()
  return OurRound(time.perf_counter() - t, one_round, lambda: apply.lower(
      state[0], state[1], data, key).compile().as_text())


def lean(name: str, k: int, steps: int, batch: int, n: int, conv_impl: str,
         chunk: int | None) -> Callable[..., None]:
  """one_round(index) of `lean_round`: our round's work as the plainest
  XLA program, laid out as ours (the same model, client groups and mesh;
  rows sent once), each client's example order drawn on the host."""
  model = models.create(name, SHAPE, CLASSES, conv_impl=conv_impl)
  mesh = client_mesh()
  x, y = client_data(k, n)
  rng = np.random.default_rng(2)
  order = np.stack([rng.permutation(n) for _ in range(k)]).astype(np.int32)
  keys = np.asarray(jax.random.split(jax.random.PRNGKey(1), k))
  clients = np.arange(k, dtype=np.int32)
  args = [client_rows(a.__getitem__, clients, mesh)
          for a in (x, y, order, keys, np.full(k, 1 / k, np.float32))]
  apply = jax.jit(lean_round(model, FEATURES, 0.05, steps, batch, chunk, mesh,
                             default_unroll(name, conv_impl)),
                  donate_argnums=(0,))
  params = [replicate(model.init(jax.random.PRNGKey(0)), mesh)]

  def one_round(_=0):
    params[0] = apply(params[0], *args)
    jax.block_until_ready(params[0])

  one_round()
  return one_round


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


def theirs(name: str, k: int, steps: int, batch: int, n: int):
  """one_round(index) of fedjax's FedAvg, its per-step functions compiled."""
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

  def one_round(_=0):
    state[0], _ = algo.apply(state[0], clients)
    jax.block_until_ready(state[0].params)

  one_round()
  return one_round


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='mlp,conv')
  p.add_argument('--clients', default='10,50,100')
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--rounds', type=int, default=5,
                 help='timed rounds of each side, interleaved (median)')
  p.add_argument('--conv_impl', default=convolution.default_conv_impl())
  p.add_argument('--client_chunk', type=int, default=None,
                 help="clients trained side by side (0: all at once; "
                 "default: the model's, `default_client_chunk`)")
  p.add_argument('--out', default=f'benchmarks/results/round_throughput_'
                 f'{jax.device_count()}dev.json')
  a = p.parse_args()
  peak = matmul_peak()
  print(f'matmul peak {peak / 1e9:.0f} GFLOP/s (float32, 2048 x 2048)')
  rows = []
  print(f'backend={jax.default_backend()} devices={jax.devices()} '
        f'conv_impl={a.conv_impl} client_chunk={a.client_chunk} '
        f'steps={a.steps} batch={a.batch}')
  print(f'{"model":8} {"K":>5} {"ours s":>8} {"lean s":>8} {"fedjax s":>9} '
        f'{"speedup":>8} {"lean x":>7} {"floor s":>8} {"cap":>6} '
        f'{"of cap":>7} {"compile s":>9} {"GFLOP/s":>8} {"of peak":>8}')
  for name in a.models.split(','):
    chunk = chunk_for(name, a.client_chunk)
    for k in map(int, a.clients.split(',')):
      our_round = ours(name, k, a.steps, a.batch, a.examples, a.conv_impl,
                       chunk)
      first = our_round.first_s
      work = (name, k, a.steps, a.batch, a.examples)
      timing = interleaved({
          'ours': our_round.run,
          'lean': lean(*work, a.conv_impl, chunk),
          'fedjax': theirs(*work)}, a.rounds)
      ours_s, lean_s, fedjax_s = (timing[side][0]
                                  for side in ('ours', 'lean', 'fedjax'))
      matmuls = step_matmuls(name, a.batch)
      floor_s = matmul_floor(matmuls, k, a.steps, chunk)
      flops = round_flops(matmuls, k, a.steps)
      examples = k * a.steps * a.batch
      row = {
          'model': name, 'clients_per_round': k,
          'ours_s_per_round': round(ours_s, 4),
          'fedjax_s_per_round': round(fedjax_s, 4),
          'speedup': round(fedjax_s / ours_s, 2),
          'lean_s_per_round': round(lean_s, 4),
          'lean_speedup': round(fedjax_s / lean_s, 2),
          'matmul_floor_s': round(floor_s, 4),
          'speedup_cap': round(fedjax_s / floor_s, 2),
          'ours_examples_per_s': round(examples / ours_s, 1),
          'fedjax_examples_per_s': round(examples / fedjax_s, 1),
          'ours_first_round_s': round(first, 2),
          'ours_gflops': round(flops / ours_s / 1e9, 1),
          'matmul_peak_gflops': round(peak / 1e9, 1),
          'local_steps': a.steps, 'batch_size': a.batch,
          'timed_rounds': a.rounds,
          'backend': jax.default_backend(), 'conv_impl': a.conv_impl,
          'client_chunk': chunk, 'devices': jax.device_count(),
      }
      rows.append(row)
      print(f'{name:8} {k:5d} {ours_s:8.3f} {lean_s:8.3f} {fedjax_s:9.3f} '
            f'{row["speedup"]:7.2f}x {row["lean_speedup"]:6.2f}x '
            f'{floor_s:8.3f} {fedjax_s / floor_s:5.2f}x '
            f'{floor_s / ours_s:7.0%} {first:9.1f} '
            f'{row["ours_gflops"]:8.1f} '
            f'{row["ours_gflops"] / row["matmul_peak_gflops"]:8.0%}',
            flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
