"""Where a run's personalised accuracy comes from: its final model
fine-tuned by every client with each configuration of the space in turn,
against the configuration its policy prefers.

    python experiments/personal_configs.py RUN_DIR [RUN_DIR ...] [--out=F]

For each finished run (its config.json and last checkpoint), every client
fine-tunes the final server model (`Experiment.personalize`, the figures'
own evaluation) with configuration h, for every h of the space, and is
measured on its test split and on its own validation split. Printed per
run: the mean personal accuracy at each h, at the policy's preferred
configuration (what the run reports), and with each client's
configuration chosen on its validation split (never on test). Runs of
two methods on one preset and seed then separate the aggregate a client
starts from (the same h for both) from the configuration it fine-tunes
with (preferred against chosen). JSON rows (`run`, `policy`, `seed`, `preferred`,
`by_validation`, `best_single` and its `best_single_acc` (a single
configuration for every client, chosen on test: a diagnosis, not a
figure to report), `per_config` (the mean at each configuration, in
the space's order), `preferred_configs`, `chosen_configs`) go to
`--out`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.errors import ConfigError
from pfhpo.experiment.checkpoints import RunCheckpoints, RunState, Totals
from pfhpo.experiment.config import Config, override
from pfhpo.experiment.outputs import settings_of_record
from pfhpo.experiment.setup import build, keys, sample_clients


def _acc(value) -> float:
  """An accuracy as the rows keep it: four decimals."""
  return round(float(value), 4)


def diagnose(run_dir: Path) -> dict:
  """The run's personal accuracy per configuration (test and validation,
  per client), at its preferred configuration and chosen on validation."""
  if not (run_dir / 'config.json').exists():
    raise ConfigError(f'{run_dir} holds no config.json; pass the directory '
                      'of a finished run (its `out_dir`)')
  record = json.loads((run_dir / 'config.json').read_text())
  cfg = override(Config(), settings_of_record(record))
  exp = build(cfg)
  init_key, _ = keys(cfg.run.seed)
  first = sample_clients(cfg.run.seed, 1, exp.pool, cfg.run.clients_per_round)
  algorithm, table = exp.algorithm.init(init_key, exp.data.num_clients,
                                        exp.batch(first))
  like = RunState(0, algorithm, table, Totals.zeros(), (), (), None, 0.0)
  checkpoints = RunCheckpoints(run_dir, writes=False)
  state = checkpoints.restore(like)
  checkpoints.close()
  final = exp.observe_all(state.algorithm)
  seen = np.ones(exp.data.num_clients, bool)
  reported = exp.personalize(final, state.client_table, seen)
  size = exp.space.size
  test, val = [], []  # f[H, C] each client's accuracy fine-tuned with h
  for h in range(size):
    choices = np.full(exp.data.num_clients, h, np.int32)
    test.append(exp.personalize(final, state.client_table, seen,
                                choices).client_acc)
    val.append(exp.personalize(final, state.client_table, seen, choices,
                               exp.data.val).client_acc)
  test, val = np.asarray(test), np.asarray(val)
  has_test = ~np.isnan(test[0])
  single = test[:, has_test].mean(axis=1)  # f[H]
  chosen = np.argmax(np.where(np.isnan(val), -1.0, val), axis=0)  # i[C]
  by_val = test[chosen, np.arange(test.shape[1])][has_test]
  preferred = exp.policy.prefer(final.policy, jnp.arange(
      exp.data.num_clients), jax.random.PRNGKey(0))[1]
  return {
      'run': str(run_dir), 'round': int(state.round),
      'policy': cfg.policy.policy + (
          f'[{cfg.policy.options.static_index}]'
          if cfg.policy.policy == 'static' else ''),
      'seed': cfg.run.seed,
      'preferred': _acc(reported.mean), 'preferred_p10': _acc(reported.p10),
      'by_validation': _acc(by_val.mean()),
      'by_validation_p10': _acc(np.percentile(by_val, 10)),
      'best_single': exp.space.describe(int(np.argmax(single))),
      'best_single_acc': _acc(single.max()),
      'per_config': [round(float(a), 3) for a in single],  # by h
      'preferred_configs': np.bincount(np.asarray(preferred),
                                       minlength=size).tolist(),
      'chosen_configs': np.bincount(chosen[has_test], minlength=size)
      .tolist()}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('runs', nargs='+', type=Path)
  p.add_argument('--out', type=Path, default=None)
  a = p.parse_args(argv)
  rows = []
  try:
    for run_dir in a.runs:
      row = diagnose(run_dir)
      rows.append(row)
      print(f"{row['run']}: preferred {row['preferred']:.3f} "
            f"(p10 {row['preferred_p10']:.3f}), chosen on validation "
            f"{row['by_validation']:.3f} (p10 {row['by_validation_p10']:.3f})"
            f", best single {row['best_single_acc']:.3f} "
            f"({row['best_single']})", flush=True)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if a.out:
    a.out.write_text(json.dumps(rows, indent=1))
  return 0


if __name__ == '__main__':
  sys.exit(main())
