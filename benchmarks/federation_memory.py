"""A FEMNIST-sized federation on the host: load time and peak memory.

Writes FEMNIST's two files in fedjax's own SQLite format with 3,400
writers whose sizes follow FEMNIST's (LEAF: 226.8 +- 88.9 examples a
writer; about 800,000 in all, a tenth of each writer's in the test file),
random 8-bit images, 62 classes. Then, each in a process of its own (its
peak resident set is its `ru_maxrss`):

  load:   `pfhpo.data.load('femnist')` alone: seconds, peak memory, and the
          bytes the splits hold (clients end to end) beside what padding
          every writer to the largest would take;
  fedavg: `experiments/femnist.py`, the FEMNIST CNN, FedAvg (one local
          step: memory, not accuracy, is measured), 100 writers a round,
          the final evaluation and fine-tuning of every writer;
  gumbel: the mlp under `gumbel` with `--clients_per_round` (default 2,000)
          writers a round: credits for thousands of clients per round,
          each group of clients trained again in the credit's backward
          pass (`--recompute_clients`); `gumbel_kept` the same keeping
          every client's update.

    .venv/bin/python benchmarks/federation_memory.py
    .venv/bin/python benchmarks/federation_memory.py --writers=500 --runs=load

Prints a table and writes JSON rows (`run`, `seconds`, `peak_rss_bytes`,
and for `load` the host bytes and the padded bytes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import write_rows
from pfhpo.data import femnist
from pfhpo.data.federated import write_sqlite

ROOT = Path(__file__).resolve().parents[1]
LEAF_MEAN, LEAF_STD = 226.8, 88.9  # FEMNIST examples per writer (LEAF)

LOAD = '''
import json, sys, time
import pfhpo.data
start = time.perf_counter()
data = pfhpo.data.load('femnist', data_dir=sys.argv[1])
seconds = time.perf_counter() - start
splits = (data.train, data.val, data.test)
held = sum(s.x.nbytes + s.y.nbytes + s.offsets.nbytes for s in splits)
example = data.train.x[0].nbytes + 4  # features and label
padded = sum(s.num_clients * s.width * (example + 1) for s in splits)  # + mask
print(json.dumps({'load_seconds': round(seconds, 1),
                  'examples': int(sum(len(s.y) for s in splits)),
                  'host_bytes': held, 'padded_bytes': padded}))
'''


def write_files(directory: Path, writers: int, seed: int = 0) -> int:
  """FEMNIST's two files, writer sizes drawn around LEAF's mean and spread
  (a lognormal, at least 10); the examples written."""
  rng = np.random.default_rng(seed)
  sigma2 = np.log1p((LEAF_STD / LEAF_MEAN) ** 2)
  sizes = np.maximum(10, rng.lognormal(np.log(LEAF_MEAN) - sigma2 / 2,
                                       np.sqrt(sigma2), writers)).astype(int)
  train_name, test_name = femnist.file_names()
  for name, part in ((train_name, lambda n: n - n // 10),
                     (test_name, lambda n: max(n // 10, 1))):
    write_sqlite(directory / name, {
        f'w{c:05d}': {
            'pixels': rng.integers(0, 256, (part(n), 28, 28)).astype(
                np.float32) / 255.0,
            'label': rng.integers(0, 62, part(n)).astype(np.int32)}
        for c, n in enumerate(sizes)})
  return int(sizes.sum())


def child(argv: list) -> tuple[dict, str]:
  """Runs argv in a child process: ({seconds, peak_rss_bytes}, its stdout).
  The peak is the child's own (wait4's rusage), whatever ran before it."""
  with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
      err.seek(0)
      raise SystemExit(err.read()[-3000:])
    out.seek(0)
    return {'seconds': round(seconds, 1),
            'peak_rss_bytes': usage.ru_maxrss * 1024}, out.read()


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--writers', type=int, default=3400)
  p.add_argument('--clients_per_round', type=int, default=2000,
                 help="gumbel's writers a round")
  p.add_argument('--runs', default='load,fedavg,gumbel,gumbel_kept')
  p.add_argument('--out', default='benchmarks/results/federation_memory.json')
  args = p.parse_args()
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    data_dir = Path(tmp) / 'femnist'
    data_dir.mkdir()
    start = time.perf_counter()
    examples = write_files(data_dir, args.writers)
    print(f'wrote {args.writers} writers, {examples} examples, in '
          f'{time.perf_counter() - start:.0f} s', flush=True)
    common = ['--dataset=femnist', f'--data_dir={data_dir}', '--rounds=2',
              '--eval_every=2', '--checkpoint_every=0']
    for name in args.runs.split(','):
      if name == 'load':
        row, out = child([sys.executable, '-c', LOAD, str(data_dir)])
        row.update(json.loads(out.strip().splitlines()[-1]))
      else:
        flags = (['--model=conv', '--policy=static', '--lrs=0.05',
                  '--local_steps=1', '--clients_per_round=100']
                 if name == 'fedavg' else
                 ['--model=mlp', '--policy=gumbel', '--lrs=0.03,0.1',
                  '--local_steps=1,5',
                  f'--clients_per_round={args.clients_per_round}',
                  f'--recompute_clients={int(name == "gumbel")}'])
        row, _ = child([sys.executable, str(ROOT / 'experiments' /
                                            'femnist.py'), *common, *flags,
                        '--batch_sizes=16', f'--out_dir={Path(tmp) / name}'])
        summary = json.loads((Path(tmp) / name / 'summary.json').read_text())
        row.update(first_round_seconds=summary['first_round_seconds'],
                   round_compilations=summary['round_compilations'],
                   global_acc=summary['global_acc'])
      row = {'run': name, 'writers': args.writers, **row}
      rows.append(row)
      print(json.dumps(row), flush=True)
  write_rows(rows, args.out)


if __name__ == '__main__':
  main()
