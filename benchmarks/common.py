"""What the benchmarks share: FEMNIST-shaped random clients, how rounds are
timed, the JSON rows each writes, and the host allocator the command line
runs with (`pfhpo.host_memory.keep_freed_memory`, set on import)."""
from __future__ import annotations

import json
import resource
import statistics
import time
from pathlib import Path

import jax
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


def random_round(k: int, n: int, val_size: int):
  """A round of k FEMNIST-shaped random clients of n examples each and
  `val_size` random server validation examples: a `RoundBatch` on the
  device."""
  from pfhpo.types import ClientBatch, RoundBatch, ValBatch
  (xv,), (yv,) = client_data(1, val_size, seed=1)
  val = ValBatch(jnp.asarray(xv), jnp.asarray(yv),
                 jnp.full(val_size, 1 / val_size, jnp.float32))
  x, y = client_data(k, n)
  return RoundBatch(jnp.arange(k, dtype=jnp.int32), ClientBatch(
      jnp.asarray(x), jnp.asarray(y), jnp.full(k, n, jnp.int32)), val)


def compiled_round(algorithm, batch, warm: int, donate=None):
  """`algorithm` (a `FederatedAlgorithm`) compiled on `batch` and run
  `warm` rounds (compiling it and filling a credit's window): (a function
  of the round's index that runs one more round and waits, the compiled
  round's device memory in bytes as XLA plans it: arguments, outputs and
  temporaries). `donate`: the arguments donated (unset: the round's own
  choice, `FederatedAlgorithm.donate`)."""
  step = jax.jit(algorithm.apply, donate_argnums=algorithm.donate
                 if donate is None else donate)
  state = list(algorithm.init(jax.random.PRNGKey(0), batch.clients.shape[0],
                              batch))
  memory = step.lower(state[0], state[1], batch,
                      jax.random.PRNGKey(0)).compile().memory_analysis()

  def one_round(r):
    state[0], state[1], _ = step(state[0], state[1], batch,
                                 jax.random.PRNGKey(r))
    jax.block_until_ready(state[0])

  for r in range(warm):
    one_round(r)
  return one_round, (memory.argument_size_in_bytes +
                     memory.output_size_in_bytes - memory.alias_size_in_bytes
                     + memory.temp_size_in_bytes)


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
