"""What the benchmarks share: FEMNIST-shaped random clients, the JSON rows
each writes, and the host allocator the command line runs with
(`pfhpo.host_memory.keep_freed_memory`, set on import)."""
from __future__ import annotations

import json
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


def write_rows(rows: list, path: str) -> None:
  out = Path(path)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(rows, indent=2))
  print(f'wrote {out}')
