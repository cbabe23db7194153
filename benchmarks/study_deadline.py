"""How long benchmarks/device_study.sh's toy study takes here, and whether
it beats a short deadline.

`tests/test_benchmarks.py` makes the study's stops certain (a deadline
already reached; a comparison that never ends); it once raced the real toy
study against a 3 s deadline, which a fast machine with a warm compilation
cache may beat. This measures that race: for each repeat, a fresh OUT
(the JAX compilation cache shared across repeats, so the first is cold and
the rest warm), a call with STUDY_SECONDS=`--deadline`, then a call with
time to finish, each timed, with the line each ended on.

    .venv/bin/python benchmarks/study_deadline.py
    .venv/bin/python benchmarks/study_deadline.py --repeats=3 --deadline=1

Prints a table and writes JSON rows (`repeat`, `cache`, `deadline_s`,
`first_s`, `first_line`, `beat_deadline`, `continue_s`, `continue_line`).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOY = ['--dataset=digits', '--max_clients=4', '--clients_per_round=4',
       '--rounds=2', '--eval_every=1', '--seeds=0', '--static_grid=0',
       '--policies=gumbel']


def call(out: Path, cache: Path, seconds: int) -> tuple[float, str]:
  """(wall seconds, last line printed) of one study call."""
  env = {**os.environ, 'PY': sys.executable, 'OUT': str(out), 'MODELS': 'mlp',
         'STUDY_SECONDS': str(seconds),
         'JAX_COMPILATION_CACHE_DIR': str(cache)}
  start = time.perf_counter()
  proc = subprocess.run(
      ['bash', str(ROOT / 'benchmarks' / 'device_study.sh'), *TOY], env=env,
      capture_output=True, text=True, timeout=900)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    raise SystemExit(f'the study failed ({proc.returncode}): '
                     f'{proc.stderr[-2000:]}')
  return seconds, proc.stdout.splitlines()[-1]


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--deadline', type=int, default=3,
                 help="the first call's STUDY_SECONDS (the old test's 3)")
  p.add_argument('--repeats', type=int, default=2)
  p.add_argument('--out', default='benchmarks/results/study_deadline.json')
  a = p.parse_args()
  sys.path.insert(0, str(ROOT / 'benchmarks'))
  from common import write_rows
  print(f'deadline={a.deadline}s repeats={a.repeats}')
  print(f'{"repeat":>6} {"cache":5} {"first s":>8} {"beat":>5} '
        f'{"continue s":>10}  first line')
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    cache = Path(tmp) / 'jax_cache'
    for r in range(a.repeats):
      out = Path(tmp) / f'study{r}'
      first_s, first_line = call(out, cache, a.deadline)
      continue_s, continue_line = call(out, cache, 540)
      beat = first_line == 'study: done'
      rows.append({'repeat': r, 'cache': 'cold' if r == 0 else 'warm',
                   'deadline_s': a.deadline, 'first_s': round(first_s, 2),
                   'first_line': first_line, 'beat_deadline': beat,
                   'continue_s': round(continue_s, 2),
                   'continue_line': continue_line})
      print(f'{r:6d} {rows[-1]["cache"]:5} {first_s:8.2f} {str(beat):>5} '
            f'{continue_s:10.2f}  {first_line}', flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
