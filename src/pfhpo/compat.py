"""Shims that let fedjax 0.0.17 import on jax 0.10.

fedjax 0.0.17 (its last release) still uses two names that jax has since
removed: `jax.tree_map` (removed in jax 0.6; now `jax.tree_util.tree_map`) and
`jax.numpy.NINF` (removed with NumPy 2's removal of `np.NINF`). Importing
`fedjax` through this module puts both back, once, before fedjax is imported.
Nothing else in pfhpo uses the restored names.
"""
import jax
import jax.numpy as jnp

if not hasattr(jax, 'tree_map'):
  jax.tree_map = jax.tree_util.tree_map
if not hasattr(jnp, 'NINF'):
  jnp.NINF = -jnp.inf

import fedjax  # noqa: E402  (must follow the shims)

__all__ = ['fedjax']
