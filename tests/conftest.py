"""Suite-wide settings: one compilation cache for every test and every run
the tests start as a process.

Many tests compile the same programs (the digits MLP's round, its
evaluation, a model's initialisation); JAX's persistent compilation cache
lets the second compile of a program load the first's executable, the same
bits, so results are unchanged. It lives in pytest's own cache directory
and is set through the environment, so subprocesses inherit it.
"""
import os
from pathlib import Path

_CACHE = Path(__file__).resolve().parents[1] / '.pytest_cache' / 'jax'
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', str(_CACHE))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
