"""The policies side by side on real data, against the tuned-FedAvg oracle.

Runs `experiment.run` for every static configuration of one search space (the
tuned-FedAvg oracle: the best of them is what a grid search would find), then
for the chosen variants, each over several seeds: `random`, `reinforce`, the
gumbel variants (credit through the update `delta` or the parameters, with
or without normalisation across the round's clients, with a running
baseline, shared scope) and the baselines `fedex`, `pfedex`, `fathom`
(starting from lr 0.1, batch 16, a quarter epoch). Few clients, sampled
often, so every client's policy sees dozens of updates. It chose gumbel's
default variant (BUILD_NOTES.md).

    .venv/bin/python benchmarks/policy_study.py            # gumbel, ~20 min
    .venv/bin/python benchmarks/policy_study.py --variants=fedex,pfedex,fathom \
        --out=benchmarks/results/policy_study_baselines.json

Prints a table (mean and spread over seeds) and writes one JSON row per run
(`variant`, `seed`, `global_acc`, `personal_acc`, `personal_acc_p10`,
`local_steps_total`, `mass_on_best_static`, `total_seconds`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import numpy as np

from pfhpo.experiment import Config, override, run
from pfhpo.experiment.flags import load_preset

VARIANTS = {
    'random': dict(policy='random'),
    'reinforce': dict(policy='reinforce', baseline_decay=0.9),
    'gumbel delta norm': dict(policy='gumbel', credit='delta'),
    'gumbel params norm': dict(policy='gumbel', credit='params'),
    'gumbel delta raw': dict(policy='gumbel', credit='delta',
                             credit_normalize=False),
    'gumbel params raw': dict(policy='gumbel', credit='params',
                              credit_normalize=False),
    'gumbel delta norm baseline': dict(policy='gumbel', credit='delta',
                                       baseline_decay=0.9),
    'gumbel delta norm global': dict(policy='gumbel', credit='delta',
                                     policy_scope='global'),
    'fedex': dict(policy='fedex'),
    'pfedex': dict(policy='pfedex'),
    'fathom': dict(policy='fathom', static_index=4, fathom_epochs=0.25),
}
GUMBEL_STUDY = [v for v in VARIANTS if v not in ('fedex', 'pfedex', 'fathom')]


def one_run(base: Config, out: Path, name: str, seed: int,
            **settings) -> dict:
  slug = name.replace(' ', '_')
  s = run(override(base, {'seed': seed, 'out_dir': str(out / f'{slug}_{seed}'),
                          **settings}))
  f = s.final
  return {'variant': name, 'seed': seed, 'global_acc': f.global_acc,
          'personal_acc': f.personal_acc,
          'personal_acc_p10': f.personal_acc_p10,
          'local_steps_total': f.local_steps_total,
          'total_seconds': s.total_seconds,
          'mean_probabilities': s.policy.get('mean_probabilities')}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='experiments/configs/cross_device.toml',
                 help='the preset every run starts from')
  p.add_argument('--rounds', type=int, help='override the preset\'s rounds')
  p.add_argument('--seeds', default='0,1,2')
  p.add_argument('--variants', default=','.join(GUMBEL_STUDY))
  p.add_argument('--out', default='benchmarks/results/policy_study_gumbel.json')
  a = p.parse_args()
  base = override(Config(), load_preset(a.config))
  rounds = a.rounds or base.run.rounds
  base = override(base, {'rounds': rounds, 'eval_every': rounds})
  seeds = [int(s) for s in a.seeds.split(',')]
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    out = Path(tmp)
    h = base.space.space().size
    for z in range(h):  # the oracle: every configuration for everyone
      rows.append(one_run(base, out, f'static {z}', seeds[0], policy='static',
                          static_index=z))
    statics = {r['variant']: r['global_acc'] for r in rows}
    best = max(range(h), key=lambda z: statics[f'static {z}'])
    for name in a.variants.split(','):
      for seed in seeds:
        rows.append(one_run(base, out, name, seed, **VARIANTS[name]))
  for r in rows:  # fathom is no distribution over the grid
    probs = r.pop('mean_probabilities')
    r['mass_on_best_static'] = None if probs is None else probs[best]
  Path(a.out).parent.mkdir(parents=True, exist_ok=True)
  Path(a.out).write_text(json.dumps(
      {'best_static': best, 'config': dataclasses.asdict(base), 'rows': rows},
      indent=1))

  print(f'\nbest static configuration: {best}; {rounds} rounds, '
        f'{len(seeds)} seed(s); mean (min-max) over seeds')
  print(f'{"variant":28s} {"global":>17s} {"personal":>17s} {"p10":>17s} '
        f'{"steps":>7s} {"p(best)":>7s}')

  def mass(rs):
    v = [r['mass_on_best_static'] for r in rs]
    return '-' if None in v else f'{np.mean(v):.3f}'

  for name in dict.fromkeys(r['variant'] for r in rows):
    rs = [r for r in rows if r['variant'] == name]

    def cell(key):
      v = [r[key] for r in rs]
      return f'{statistics.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})'
    print(f'{name:28s} {cell("global_acc"):>17s} {cell("personal_acc"):>17s} '
          f'{cell("personal_acc_p10"):>17s} '
          f'{np.mean([r["local_steps_total"] for r in rs]):7.0f} '
          f'{mass(rs):>7s}')


if __name__ == '__main__':
  main()
