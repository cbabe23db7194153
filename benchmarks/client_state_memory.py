"""Peak resident memory of a FEMNIST-sized run with per-client state.

Writes FEMNIST files in fedjax's own SQLite format with `--clients`
writers of random images (`--examples` training and a quarter as many test
examples each; FEMNIST has 3,400 writers), then runs
`experiments/femnist.py` on them, the FEMNIST CNN, for each algorithm in
its own process: a few rounds of `--clients_per_round` writers (one local
step of 16 examples: memory, not accuracy, is measured), the final
personalised evaluation of every writer, and the final checkpoint. The
figure is the process's peak resident set (`ru_maxrss`) beside the size of
its per-client table (C x the state one client keeps).

    .venv/bin/python benchmarks/client_state_memory.py
    .venv/bin/python benchmarks/client_state_memory.py --clients=500 --algorithms=ditto

Prints a table and writes JSON rows (`algorithm`, `clients`,
`table_bytes`, `peak_rss_bytes`, `seconds`, `personal_acc`).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from common import write_rows
from pfhpo import models
from pfhpo.data import femnist
from pfhpo.data.federated import write_sqlite

ROOT = Path(__file__).resolve().parents[1]


def write_files(directory: Path, clients: int, examples: int,
                seed: int = 0) -> None:
  """FEMNIST's two files: each writer's pixels multiples of 1/255 (so they
  are stored as u8, like the real data) and labels over 62 classes."""
  rng = np.random.default_rng(seed)
  for name, n in zip(femnist.file_names(), (examples, max(examples // 4, 1))):
    write_sqlite(directory / name, {
        f'w{c:05d}': {
            'pixels': rng.integers(0, 256, (n, 28, 28)).astype(np.float32)
                      / 255.0,
            'label': rng.integers(0, 62, n).astype(np.int32)}
        for c in range(clients)})


def table_bytes(algorithm: str, clients: int) -> int:
  """C x the per-client state of `algorithm` on the FEMNIST CNN."""
  params = jax.eval_shape(models.create('conv', (28, 28, 1), 62).init,
                          jax.random.PRNGKey(0))
  size = lambda tree: sum(a.size * a.dtype.itemsize
                          for a in jax.tree_util.tree_leaves(tree))
  per_client = {'ditto': size(params) + 1,
                'fedrep': size(params[models.HEADS['conv']])}.get(algorithm, 0)
  return clients * per_client


def measure(algorithm: str, data_dir: Path, out: Path, args) -> dict:
  """One run in a child process: its peak RSS, seconds and figures."""
  before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  start = time.perf_counter()
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'experiments' / 'femnist.py'),
       '--dataset=femnist', f'--data_dir={data_dir}', '--model=conv',
       f'--algorithm={algorithm}', '--policy=static', '--lrs=0.05',
       '--local_steps=1', '--batch_sizes=16', f'--rounds={args.rounds}',
       *(['--body_steps=1'] if algorithm == 'fedrep' else []),
       f'--clients_per_round={args.clients_per_round}',
       f'--eval_every={args.rounds}', '--checkpoint_every=0',
       f'--out_dir={out}'], capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise SystemExit(proc.stderr[-3000:])
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  # ru_maxrss is the largest child's, in KiB on Linux: each algorithm runs
  # after the previous ones, so a smaller peak than theirs reads as theirs.
  summary = json.loads((out / 'summary.json').read_text())
  return {'algorithm': algorithm, 'clients': args.clients,
          'table_bytes': table_bytes(algorithm, args.clients),
          'peak_rss_bytes': peak * 1024 if peak > before else None,
          'seconds': round(seconds, 1),
          'personal_acc': summary['personal_acc']}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--clients', type=int, default=3400)
  p.add_argument('--examples', type=int, default=64)
  p.add_argument('--rounds', type=int, default=3)
  p.add_argument('--clients_per_round', type=int, default=10)
  p.add_argument('--algorithms', default='fedavg,fedrep,ditto',
                 help='run in this order: increasing state, so that each '
                 "peak is the process's own")
  p.add_argument('--out', default='benchmarks/results/client_state_memory.json')
  args = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = Path(tmp) / 'femnist'
    data_dir.mkdir()
    start = time.perf_counter()
    write_files(data_dir, args.clients, args.examples)
    print(f'wrote {args.clients} writers in '
          f'{time.perf_counter() - start:.0f} s', flush=True)
    rows = []
    for name in args.algorithms.split(','):
      rows.append(measure(name, data_dir, Path(tmp) / name, args))
      r = rows[-1]
      peak = ('-' if r['peak_rss_bytes'] is None
              else f'{r["peak_rss_bytes"] / 2**30:.2f}')
      print(f'{name:8s} table {r["table_bytes"] / 2**30:6.2f} GiB  peak RSS '
            f'{peak} GiB  {r["seconds"]:7.1f} s  personal acc '
            f'{r["personal_acc"]:.3f}', flush=True)
  write_rows(rows, args.out)


if __name__ == '__main__':
  main()
