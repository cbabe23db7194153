"""Every searching policy over a space that holds an exploding configuration.

Runs the command line (`experiments/femnist.py`, one process per policy, the
same seed and budget) on `synthetic` with an MLP, every client in every
round, the space lr {0.01, 0.03, 0.1, 3} x steps {1, 10}: lr 3 with 10 steps
blows the server model up within a round (alone, the run stops: the static
row). Prints the final global accuracy and loss, the aggregates the server
rejected, the longest run of rounds without an update, the clients dropped
and how each run ended; writes JSON rows.

    .venv/bin/python benchmarks/exploding_space.py                # ~2 min
    .venv/bin/python benchmarks/exploding_space.py --clients=10 --rounds=40

`--femnist` runs another checkout's command line (with its `src` on
PYTHONPATH), so the same table can be made before a change:

    git worktree add /tmp/before <commit>
    PYTHONPATH=/tmp/before/src .venv/bin/python benchmarks/exploding_space.py \
        --femnist=/tmp/before/experiments/femnist.py
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import write_rows

POLICIES = ('random', 'pfedex', 'reinforce', 'gumbel', 'fedex')
EXPLODING = '--lrs=3 --local_steps=10'


def one_run(femnist: str, args: list, out: Path) -> dict:
  done = subprocess.run([sys.executable, femnist, *args, f'--out_dir={out}'],
                        capture_output=True, text=True)
  summary = json.loads((out / 'summary.json').read_text())
  rows = [json.loads(line) for line in
          (out / 'metrics.jsonl').read_text().splitlines()]
  return {'exit_status': done.returncode,
          'global_acc': summary['global_acc'],
          'global_loss': summary['global_loss'], 'round': summary['round'],
          'rejected_aggregates': summary.get('rejected_aggregates_total'),
          'longest_stall': max(r['stalled_rounds'] for r in rows)
                           if 'stalled_rounds' in rows[0] else None,
          'dropped_clients': summary['dropped_clients_total'],
          'stopped': summary.get('stopped')}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--clients', type=int, default=30)
  p.add_argument('--rounds', type=int, default=150)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--policies', default=','.join(POLICIES))
  p.add_argument('--femnist', default='experiments/femnist.py')
  p.add_argument('--out', default='benchmarks/results/exploding_space.json')
  a = p.parse_args()
  base = ['--dataset=synthetic', f'--max_clients={a.clients}',
          f'--clients_per_round={a.clients}', '--model=mlp',
          '--batch_sizes=16', f'--rounds={a.rounds}',
          '--eval_every=1', f'--seed={a.seed}']  # every round's stall count
  runs = {'static lr=3 steps=10': ['--policy=static', *EXPLODING.split()]}
  for policy in a.policies.split(','):
    runs[policy] = [f'--policy={policy}', '--lrs=0.01,0.03,0.1,3',
                    '--local_steps=1,10']
  rows = []
  print(f'{"policy":22s} {"exit":>4s} {"round":>5s} {"global_acc":>10s} '
        f'{"global_loss":>11s} {"rejected":>8s} {"stall":>5s} {"dropped":>7s}')
  with tempfile.TemporaryDirectory() as tmp:
    for name, args in runs.items():
      row = {'policy': name, 'clients': a.clients, 'rounds': a.rounds,
             'seed': a.seed,
             **one_run(a.femnist, base + args, Path(tmp) / name.split()[0])}
      rows.append(row)
      print(f'{name:22s} {row["exit_status"]:4d} {row["round"]:5d} '
            f'{row["global_acc"]:10.3f} {row["global_loss"]:11.4g} '
            f'{str(row["rejected_aggregates"]):>8s} {str(row["longest_stall"]):>5s} '
            f'{row["dropped_clients"]:7d}', flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
