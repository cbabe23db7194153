"""The comparison: methods x models x seeds under one budget, one command.

    python experiments/compare.py                                  # cross-silo preset
    python experiments/compare.py --config=experiments/configs/cross_device.toml
    python experiments/compare.py --models=mlp,conv --policies=gumbel,fedex \
        --seeds=0,1,2 --rounds=100 --out_dir=runs/my-comparison

A preset (`experiments/configs/*.toml`) gives the base run and, in its
[compare] table, the grid; the flags below override either. Every run goes
to `<out_dir>/runs/...`; the same command with the same `--out_dir`
continues an interrupted comparison (finished runs are read, not redone).
A comparison holds its `--out_dir` while it runs: another into it stops at
once (exit status 2), writing nothing.
The tuners `rs`, `sha` and `hyperband` are methods of `--policies` too,
each run at every budget of `--budgets` (in runs of `--rounds` rounds):

    python experiments/compare.py --policies=gumbel,rs,sha,hyperband \
        --budgets=1,2,4,8 --seeds=0,1,2

The method's measured variants are named methods of their own files,
`experiments/ablations/<preset>.toml`, which `--methods` adds:

    python experiments/compare.py --methods=experiments/ablations/cross_silo.toml \
        --policies=gumbel,gumbel-global

Writes results.json, results.csv, table.md (with a table per budget),
best_acc_<model>.png and, with a tuner, budget_<model>.png into
`--out_dir`, and prints the table. Exit status: 0, or 1 if a run failed
(the table says which; its traceback is beside its run), or 2 for bad input.
"""
import argparse
import dataclasses
import sys
import time
import typing
from pathlib import Path

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison import (CompareConfig, claim, plan,
                                         run_all, write_report)
from pfhpo.experiment.config import Config, override
from pfhpo.experiment.flags import (OneLineParser, flag_message,
                                    load_preset, load_table)
from pfhpo.host_memory import keep_freed_memory
from pfhpo.settings import coerce, require

PRESET = 'experiments/configs/cross_silo.toml'
# The base run's settings the command line may change (the search space's
# axes too: every method and tuner searches the same space).
RUN_FLAGS = ('dataset', 'data_dir', 'max_clients', 'rounds',
             'clients_per_round', 'holdout_fraction', 'eval_every',
             'noisy_fraction', 'noise_rate', 'noise_kind', 'few_fraction',
             'few_examples', 'lrs', 'local_steps', 'batch_sizes',
             'server_opt', 'server_lr')
# The grid's settings the command line may change; the named methods
# ([compare.methods.NAME]) are the preset's alone.
GRID_FLAGS = tuple(f.name for f in dataclasses.fields(CompareConfig)
                   if f.name != 'methods')


def parser() -> argparse.ArgumentParser:
  p = OneLineParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default=PRESET, help=f'the preset ({PRESET})')
  p.add_argument('--methods', default=None,
                 help='a file of more named methods, [compare.methods.NAME] '
                 "tables (experiments/ablations/: the method's variants)")
  p.add_argument('--out_dir', default=None,
                 help='where the comparison goes; the same one continues it '
                 '(unset: runs/compare-<preset>-<time>)')
  for name in RUN_FLAGS:
    p.add_argument(f'--{name}', default=argparse.SUPPRESS,
                   help="the base run's setting (see femnist.py --help)")
  for f in dataclasses.fields(CompareConfig):
    if f.name not in GRID_FLAGS:
      continue
    p.add_argument(f'--{f.name}', default=argparse.SUPPRESS,
                   help=f"{f.metadata['help']} (the preset's [compare], else "
                   f'{f.default})')
  return p


def configs(argv=None) -> tuple[Config, CompareConfig, Path, str]:
  """(base run, grid, out_dir, title) from the command line."""
  given = vars(parser().parse_args(argv))
  preset, out_dir = given.pop('config'), given.pop('out_dir')
  methods = given.pop('methods')
  base = override(Config(), load_preset(preset))
  base = override(base, {k: v for k, v in given.items() if k in RUN_FLAGS})
  grid = {**load_table(preset, 'compare'),
          **{k: v for k, v in given.items() if k in GRID_FLAGS}}
  if methods is not None:
    more = load_table(methods, 'compare')
    require(set(more) <= {'methods'}, f'`methods`={methods} holds '
            '[compare.methods.NAME] tables alone')
    grid['methods'] = {**grid.get('methods', {}), **more.get('methods', {})}
  hints = typing.get_type_hints(CompareConfig)
  unknown = set(grid) - set(hints)
  if unknown:
    raise ConfigError(f'`config`={preset}: [compare] has no {sorted(unknown)}'
                      f'; its settings are {", ".join(hints)}')
  grid = CompareConfig(**{k: v if k == 'methods' else coerce(v, hints[k], k)
                          for k, v in grid.items()})
  stem = Path(preset).stem
  out = Path(out_dir or f'runs/compare-{stem}-{time.strftime("%Y%m%d-%H%M%S")}')
  return base, grid, out, f'{stem}: {base.data.dataset}, {base.run.rounds} rounds'


def main(argv=None) -> int:
  keep_freed_memory()
  try:
    base, grid, out, title = configs(argv)

    def progress(i, n, spec, what):
      print(f'[{i}/{n}] {spec.model} {spec.method} seed {spec.seed}'
            f'{" (finished: read)" if what == "read" else ""}',
            file=sys.stderr, flush=True)

    plan(base, grid)  # every setting checked before `out` is made
    with claim(out):  # for the comparison's life, its report included
      results = run_all(base, grid, out, progress)
      report = write_report(results, out, title)
  except ConfigError as e:
    more = GRID_FLAGS + ('out_dir', 'methods')
    print(f'error: {flag_message(str(e), more)}',
          file=sys.stderr)
    return 2
  print(report)
  failed = [r for r in results if r.status == 'failed']
  for r in failed:
    print(f'failed: {r.model} {r.method} seed {r.seed}: {r.error}',
          file=sys.stderr)
  print(f'results in {out}', file=sys.stderr)
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
