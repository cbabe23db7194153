"""What XLA:CPU's compiler settings cost and save: the seconds to compile
the round and the milliseconds it then takes, under each set of flags.

The test suite compiles hundreds of programs that each run for
milliseconds, so it compiles them the cheap way (tests/conftest.py's
FAST_COMPILE); runs, demos and benchmarks compile as shipped. This
measures that choice on the digits MLP's gumbel round (5 clients a round,
two learning rates by 1 or 5 local steps): for each flag set, in a fresh
process with no compilation cache, `jax.jit(round).lower(...).compile()`
timed, then the round's median over `--repeats` calls after a first one
(`common.timed`). The checksum (the sum of the new server parameters'
first leaf) shows that the flag sets compute the same round.

    .venv/bin/python benchmarks/compile_flags.py
    .venv/bin/python benchmarks/compile_flags.py --repeats=20

Prints a table and writes JSON rows (`flags`, `compile_s`, `round_ms`,
`checksum`).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ''
LEVEL0 = '--xla_backend_optimization_level=0'
FLAG_SETS = {
    'as shipped': SHIPPED,
    'LLVM optimisations off': LEVEL0,
    "and the elemental emitters (the suite's)": (
        f'{LEVEL0} --xla_cpu_use_fusion_emitters=false'),
}
ARGV = ['--dataset=digits', '--model=mlp', '--clients_per_round=5',
        '--policy=gumbel', '--lrs=0.05,0.1', '--local_steps=1,5',
        '--batch_sizes=16']


def measure(repeats: int) -> dict:
  """In this process (its XLA_FLAGS set by the caller): the round's
  compile seconds, its median milliseconds a call, and a checksum."""
  import jax
  from common import timed
  from pfhpo.experiment.flags import command_from_args
  from pfhpo.experiment.setup import build, keys, sample_clients
  cfg = command_from_args(ARGV + ['--out_dir=unused']).config
  exp = build(cfg)
  batch = exp.batch(sample_clients(cfg.run.seed, 1, exp.pool,
                                   cfg.run.clients_per_round))
  init_key, round_key = keys(cfg.run.seed)
  state, table = exp.algorithm.init(init_key, exp.data.num_clients, batch)
  args = (state, table, batch, jax.random.fold_in(round_key, 1))
  lowered = exp.step.lower(*args)
  start = time.perf_counter()
  compiled = lowered.compile()
  compile_s = time.perf_counter() - start
  _, round_s = timed(lambda: jax.block_until_ready(compiled(*args)), repeats)
  out = compiled(*args)
  first = jax.tree_util.tree_leaves(out[0].server.params)[0]
  return {'compile_s': round(compile_s, 2),
          'round_ms': round(1000 * round_s, 1), 'checksum': float(first.sum())}


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--repeats', type=int, default=10)
  p.add_argument('--out', default='benchmarks/results/compile_flags.json')
  p.add_argument('--measure', action='store_true',
                 help='(internal) measure in this process and print JSON')
  a = p.parse_args()
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  if a.measure:
    print(json.dumps(measure(a.repeats)))
    return
  from common import write_rows
  print(f'{"compile s":>9} {"round ms":>8}  {"checksum":>12}  flags')
  rows = []
  for name, flags in FLAG_SETS.items():
    env = {k: v for k, v in os.environ.items()
           if k not in ('XLA_FLAGS', 'JAX_COMPILATION_CACHE_DIR')}
    env['XLA_FLAGS'] = flags
    proc = subprocess.run(
        [sys.executable, __file__, '--measure', f'--repeats={a.repeats}'],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    if proc.returncode != 0:
      raise SystemExit(f'{name}: failed: {proc.stderr[-2000:]}')
    row = {'name': name, 'flags': flags,
           **json.loads(proc.stdout.splitlines()[-1])}
    rows.append(row)
    print(f'{row["compile_s"]:9.2f} {row["round_ms"]:8.1f}  '
          f'{row["checksum"]:12.6f}  {name}', flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
