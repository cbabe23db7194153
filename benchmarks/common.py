"""What the benchmarks share: FEMNIST-shaped random clients, how rounds are
timed, the JSON rows each writes, and the host allocator the command line
runs with (`pfhpo.host_memory.keep_freed_memory`, set on import)."""
from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from pfhpo.host_memory import keep_freed_memory

keep_freed_memory()

CLASSES, SHAPE = 62, (28, 28, 1)
FEATURES = lambda x: x.astype(jnp.float32) / 255.0


def client_data(k: int, n: int, seed: int = 0):
  """k clients of n random FEMNIST-shaped examples: (u8[k, n, 28, 28, 1],
  i32[k, n])."""
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (k, n, *SHAPE), dtype=np.uint8)
  y = rng.integers(0, CLASSES, (k, n)).astype(np.int32)
  return x, y


def timed(fn, rounds: int) -> tuple[float, float]:
  """(first call incl. compilation, median of `rounds` further calls), seconds."""
  t = time.perf_counter()
  fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(rounds):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return first, statistics.median(times)


def interleaved(rounds: dict, repeats: int) -> dict:
  """{name: (median seconds, minor page faults a round)} of `rounds`
  ({name: one_round(index)}, each compiled already) run in turn, `repeats`
  times each, so that the machine's drift falls on all of them alike. A
  buffer XLA:CPU maps afresh at every call faults its pages in again: the
  faults show it."""
  times = {name: [] for name in rounds}
  faults = dict.fromkeys(rounds, 0)
  for r in range(repeats):
    for name, one_round in rounds.items():
      before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
      t = time.perf_counter()
      one_round(r + 1)
      times[name].append(time.perf_counter() - t)
      faults[name] += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
  return {name: (statistics.median(times[name]), faults[name] / repeats)
          for name in rounds}


def write_rows(rows: list, path: str) -> None:
  out = Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(rows, indent=2))
  print(f'wrote {out}')
