"""Seconds per FedAvg round with the client axis split over 1, 2 and 4
processes (jax.distributed, one CPU device each; gloo collectives), beside
one process of two host devices (the split without processes).

Each layout (processes x devices per process) starts that many copies of this script as the processes of one
run (`--worker`), joined through a coordinator on localhost. Every process
builds the same round (`pfhpo.algorithms.fedavg` over `client_mesh()`, the
mesh of every process's devices), gathers and sends only its own clients'
rows (`sharding.client_rows`), and times the rounds; process 0 reports.

    .venv/bin/python benchmarks/process_scaling.py
    .venv/bin/python benchmarks/process_scaling.py --layouts=1x1,2x1 --models=mlp

On a host with fewer cores than processes they share the cores: the figure
then shows what the collectives and the extra processes cost, not a
speedup. Prints a table and writes JSON rows (`model`, `processes`,
`devices`, `clients_per_round`, `s_per_round`, `speedup_over_one`: over
the first layout).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

WORKER_FLAGS = ('model', 'clients', 'steps', 'batch', 'examples', 'rounds')


def worker(a) -> None:
  """One process of the run: times `a.rounds` rounds after the first."""
  from pfhpo.distributed import Processes, initialize
  initialize(Processes(a.coordinator_address, a.num_processes, a.process_id))
  import jax
  import numpy as np
  import optax
  from common import CLASSES, FEATURES, SHAPE, client_data, timed
  from pfhpo import models
  from pfhpo.algorithms import fedavg
  from pfhpo.federated import Execution
  from pfhpo.federated import client_mesh
  from pfhpo.federated.local_update import default_client_chunk
  from pfhpo.federated.sharding import client_rows, replicated
  from pfhpo.types import ClientBatch, RoundBatch, ValBatch

  k, n = a.clients, a.examples
  mesh = client_mesh()
  model = models.create(a.model, SHAPE, CLASSES)
  algo = fedavg(model, FEATURES, optax.sgd(1.0), 0.05, a.steps, a.batch,
                execution=Execution(default_client_chunk(a.model), mesh))
  x, y = client_data(k, n)
  everyone = np.arange(k)
  val = ValBatch(x[0, :100], y[0, :100], np.full(100, 0.01, np.float32))
  batch = RoundBatch(everyone.astype(np.int32), ClientBatch(
      *(client_rows(a.__getitem__, everyone, mesh)
        for a in (x, y, np.full(k, n, np.int32)))), val)
  apply = jax.jit(algo.apply, donate_argnums=algo.donate, out_shardings=None
                  if mesh is None else replicated(mesh))
  state = list(algo.init(jax.random.PRNGKey(0), k))
  key = jax.random.PRNGKey(1)

  def one_round():
    state[0], state[1], m = apply(state[0], state[1], batch, key)
    jax.block_until_ready(m.val_loss)

  first, seconds = timed(one_round, a.rounds)
  if jax.process_index() == 0:
    print(json.dumps({
        'model': a.model, 'processes': jax.process_count(),
        'devices': jax.device_count(), 'clients_per_round': k,
        's_per_round': round(seconds, 4), 'first_round_s': round(first, 2),
        'examples_per_s': round(k * a.steps * a.batch / seconds, 1),
        'local_steps': a.steps, 'batch_size': a.batch}))


def launch(a, model: str, processes: int, devices: int) -> dict:
  """Runs `processes` workers of `devices` CPU devices each as one run;
  process 0's JSON row."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  env = {**os.environ,
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  flags = [f'--{f}={getattr(a, f)}' for f in WORKER_FLAGS if f != 'model']
  procs = [subprocess.Popen(
      [sys.executable, __file__, '--worker', f'--model={model}', *flags,
       f'--num_processes={processes}', f'--process_id={p}',
       f'--coordinator_address=localhost:{port}'],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for p in range(processes)]
  outs = [p.communicate(timeout=1800) for p in procs]
  for p, (_, err) in zip(procs, outs):
    if p.returncode:
      sys.exit(f'a worker failed:\n{err[-3000:]}')
  return json.loads(outs[0][0].strip().splitlines()[-1])


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--layouts', default='1x1,1x2,2x1,4x1',
                 help='processes x CPU devices per process, comma-separated')
  p.add_argument('--models', default='mlp,conv')
  p.add_argument('--clients', type=int, default=100)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--rounds', type=int, default=3, help='timed rounds (median)')
  p.add_argument('--out', default='benchmarks/results/process_scaling.json')
  p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--model', default='mlp', help=argparse.SUPPRESS)
  p.add_argument('--num_processes', type=int, help=argparse.SUPPRESS)
  p.add_argument('--process_id', type=int, help=argparse.SUPPRESS)
  p.add_argument('--coordinator_address', help=argparse.SUPPRESS)
  a = p.parse_args()
  if a.worker:
    return worker(a)
  from common import write_rows
  print(f'{os.cpu_count()} cores; {a.clients} clients x {a.steps} steps x '
        f'batch {a.batch}')
  print(f'{"model":6} {"processes":>9} {"devices":>7} {"s/round":>9} '
        f'{"speedup":>8} {"examples/s":>11} {"first round s":>14}')
  rows = []
  for model in a.models.split(','):
    base = None
    for layout in a.layouts.split(','):
      n, devices = map(int, layout.split('x'))
      t = time.perf_counter()
      row = launch(a, model, n, devices)
      base = base or row['s_per_round']
      row.update(speedup_over_one=round(base / row['s_per_round'], 2),
                 wall_s=round(time.perf_counter() - t, 1),
                 cores=os.cpu_count())
      rows.append(row)
      print(f'{model:6} {n:9d} {row["devices"]:7d} {row["s_per_round"]:9.3f} '
            f'{row["speedup_over_one"]:7.2f}x {row["examples_per_s"]:11.0f} '
            f'{row["first_round_s"]:14.1f}', flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
