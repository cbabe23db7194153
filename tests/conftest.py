"""Suite-wide settings: one compilation cache for every test and every run
the tests start as a process, and a cheaper compiler.

Many tests compile the same programs (the digits MLP's round, its
evaluation, a model's initialisation); JAX's persistent compilation cache
lets the second compile of a program load the first's executable, the same
bits, so results are unchanged. It lives in pytest's own cache directory
and is set through the environment, so subprocesses inherit it.

Most of the suite's time is XLA compiling programs that then run for
milliseconds. The suite compiles them the cheap way (FAST_COMPILE): LLVM's
optimisations off, and XLA:CPU's elemental emitters in place of its MLIR
fusion emitters. The same HLO programs and XLA passes; the digits MLP's
gumbel round compiles in 3.5 s against 8.4 s with LLVM's optimisations
alone off and 12.8 s as shipped, and runs a round in 34 ms against 29 and
10, to the same numbers (benchmarks/compile_flags.py). Every comparison a
test makes is between programs compiled alike (a subprocess adds its
device count to these flags); runs, demos and benchmarks compile as
shipped, and so does the one test whose time is its steps, not its
compiling (the Shakespeare LSTM's, in a process of its own).
"""
import gc
import os
from pathlib import Path

import pytest

_CACHE = Path(__file__).resolve().parents[1] / '.pytest_cache' / 'jax'
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(_CACHE))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
FAST_COMPILE = ('--xla_backend_optimization_level=0',
                '--xla_cpu_use_fusion_emitters=false')
_flags = os.environ.get('XLA_FLAGS', '').split()
os.environ['XLA_FLAGS'] = ' '.join(
    _flags + [f for f in FAST_COMPILE if f not in _flags])


@pytest.fixture(autouse=True, scope='module')
def _release_compiled_programs():
  """Drops every compiled program after each test module. XLA:CPU maps each
  executable's code on its own; a worker that kept all of a suite's
  programs neared the kernel's limit of 65,530 mappings
  (`vm.max_map_count`), and a compilation past it segfaulted (twice, in
  workers three quarters through the suite). One module's programs come
  to a few thousand mappings (test_round.py: 5,300, 700 once dropped);
  the next module loads what it shares from the compilation cache."""
  yield
  import jax  # after the environment above is set
  jax.clear_caches()
  gc.collect()
