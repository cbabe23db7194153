"""Host memory: let a round reuse the last round's pages (XLA:CPU, glibc).

On CPU, XLA takes a compiled round's temporaries (gumbel's kept client
updates, [K, P] floats, 40 MB for `mlp` at 50 clients) from the C
library's `malloc`. glibc serves a block above its mmap threshold (32 MiB
at most) with a fresh `mmap` and unmaps it on `free`, so every round
faults the same pages in again: 12,671 minor page faults a round for a
gumbel `mlp` round at 50 clients against 120 for `static`, a third of the
credit's cost (docs/scale.md, "What a credit costs").

`keep_freed_memory` sets glibc's `M_MMAP_MAX` to 0 (every block from the
heap) and `M_TRIM_THRESHOLD` to its largest value (freed memory stays in
the heap), the effect of `MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...`
in the environment but from inside the process: each round's temporaries
land on pages already mapped. The price is that the process's resident
memory never shrinks below its peak. It changes nothing on a C library
other than glibc, nor the device memory of a GPU or TPU.
"""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc's malloc.h
M_MMAP_MAX = -4
_LARGEST = 2 ** 31 - 1  # mallopt takes an int


def keep_freed_memory() -> bool:
  """Keeps freed host memory in the heap for reuse (see the module's
  docstring). Returns whether the C library took the setting (False on a
  C library without glibc's `mallopt`). Call it once, at the start of a
  program; it applies to the whole process."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library('c'))
  except OSError:
    return False
  if not hasattr(libc, 'gnu_get_libc_version'):  # not glibc
    return False
  libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(
      libc.mallopt(M_TRIM_THRESHOLD, _LARGEST))
