"""Which clients diverged: a client-side test of what local training reports.

A client's update is left out of the aggregate when its parameters or its
training loss come back non-finite, or when a loss ends above EXPLODED
times the larger of its first step's loss at the starting parameters
(`LocalStats.start_loss`) and a uniform guess's, log(classes): its mean
training loss over its steps (an explosion during training), or its trained
model's loss on that first batch (`end_loss`: finite weights whose logits
overflowed after the last step). That is the mark of a learning rate that
explodes: tenfold is far above what a working step does to a client's own
training loss and far below what an exploding one does (the loss of a
client at lr 1e3 reaches 1e4 or more within its first steps). Both losses
come out of the local update: the test costs one forward pass of one batch
per client.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pfhpo.types import LocalStats, Params

EXPLODED = 10.0


def all_finite(tree) -> jax.Array:
  """bool[]: every entry of every leaf is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a))
                            for a in jax.tree_util.tree_leaves(tree)]))


def make_diverged(num_classes: int) -> Callable:
  """diverged(params, stats) -> bool[]: the test above for one client's
  trained `params` and its `LocalStats`."""
  uniform_loss = float(jnp.log(num_classes))

  def diverged(params: Params, stats: LocalStats) -> jax.Array:
    bound = EXPLODED * jnp.maximum(stats.start_loss, uniform_loss)
    # NaN compares False: a non-finite loss fails both tests.
    return ~(all_finite(params) & (stats.loss <= bound) &
             (stats.end_loss <= bound))

  return diverged
