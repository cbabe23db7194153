"""What one run of a learned method pays for exploring, round by round: its
accuracy against the static grid's best configuration's, and the mass of
its draws on harmful configurations.

    python experiments/start_cost.py COMPARISON_DIR [--method=gumbel]
        [--model=mlp] [--harm=0.05] [--out=F]

COMPARISON_DIR is an `experiments/compare.py` output with the static grid
(its `runs/<model>/static_<j>/seed<s>/`) and the method's runs. Per seed,
every choice is made on validation: the best configuration is the static
run of best validation accuracy, and a configuration is harmful when its
static run's best validation accuracy is more than `--harm` below the
best's. Per window of evaluated rounds (the rounds up to each evaluation),
mean over seeds:

    method_acc, best_acc   the method's and the best configuration's test
                           accuracy at the window's last round
    deficit                best_acc - method_acc
    best_mass              the share of the method's client draws in the
                           window on the best configuration
    harmful_mass           the share on harmful configurations

Prints a table; JSON rows with those fields (and `rounds`, `seeds`) go to
`--out`.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

from pfhpo.errors import ConfigError


def _rows(path: Path) -> list[dict]:
  return [json.loads(line) for line in path.read_text().splitlines()]


def seed_cost(runs: Path, method: str, seed: int, harm: float) -> list[dict]:
  """One seed's windows (module docstring), or [] if a run is missing."""
  statics = {}
  for d in runs.glob(f'static_*/seed{seed}'):
    rows = _rows(d / 'metrics.jsonl')
    statics[int(re.fullmatch(r'static_(\d+)', d.parent.name)[1])] = rows
  mine = runs / method / f'seed{seed}'
  if not statics or not (mine / 'metrics.jsonl').exists():
    return []
  best_val = {j: max(r['val_acc'] for r in rows) for j, rows in
              statics.items()}
  best = max(best_val, key=best_val.get)
  harmful = {j for j, v in best_val.items() if v < best_val[best] - harm}
  best_test = {r['round']: r['global_acc'] for r in statics[best]}
  draws = {r['round']: np.asarray(r['choices'])
           for r in _rows(mine / 'choices.jsonl')}
  out, start = [], 1
  for row in _rows(mine / 'metrics.jsonl'):
    r = row['round']
    window = np.concatenate([draws[t] for t in range(start, r + 1)
                             if t in draws] or [np.zeros(0, int)])
    out.append({'round': r, 'first': start, 'method_acc': row['global_acc'],
                'best_acc': best_test.get(r),
                'best_mass': float(np.mean(window == best)) if window.size
                else None,
                'harmful_mass': float(np.isin(window, list(harmful)).mean())
                if window.size else None})
    start = r + 1
  return out


def start_cost(root: Path, method: str, model: str,
               harm: float) -> list[dict]:
  """The windows of every seed the comparison ran, averaged by round."""
  runs = root / 'runs' / model
  seeds = sorted(int(d.name[4:]) for d in (runs / method).glob('seed*'))
  per_seed = [w for w in (seed_cost(runs, method, s, harm) for s in seeds)
              if w]
  if not per_seed:
    raise ConfigError(f'{runs} holds no static grid and {method} runs of '
                      'one seed; pass a comparison run with the static grid '
                      '(--static_grid, the default) and that method')
  rows = []
  for windows in zip(*per_seed):
    mean = {key: (round(float(np.mean([w[key] for w in windows])), 4)
                  if all(w[key] is not None for w in windows) else None)
            for key in ('method_acc', 'best_acc', 'best_mass',
                        'harmful_mass')}
    rows.append({'rounds': f'{windows[0]["first"]}-{windows[0]["round"]}',
                 'seeds': len(windows), 'method_acc': mean['method_acc'],
                 'best_acc': mean['best_acc'],
                 'deficit': None if mean['best_acc'] is None else
                 round(mean['best_acc'] - mean['method_acc'], 4),
                 'best_mass': mean['best_mass'],
                 'harmful_mass': mean['harmful_mass']})
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('comparison', type=Path)
  p.add_argument('--method', default='gumbel')
  p.add_argument('--model', default='mlp')
  p.add_argument('--harm', type=float, default=0.05,
                 help='a configuration is harmful when its static run is '
                 'this far below the best on validation')
  p.add_argument('--out', type=Path, default=None)
  a = p.parse_args(argv)
  try:
    rows = start_cost(a.comparison, a.method, a.model, a.harm)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{"rounds":>8} {"method":>7} {"best":>7} {"deficit":>8} '
        f'{"on best":>8} {"harmful":>8}')
  show = lambda v: '-' if v is None else f'{v:.3f}'
  for r in rows:
    print(f'{r["rounds"]:>8} {show(r["method_acc"]):>7} '
          f'{show(r["best_acc"]):>7} {show(r["deficit"]):>8} '
          f'{show(r["best_mass"]):>8} {show(r["harmful_mass"]):>8}')
  if a.out:
    a.out.write_text(json.dumps(rows, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
