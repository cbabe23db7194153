"""Divergence tests: of each client (what its local training reports) and of
the server's aggregate (its validation loss).

Client side. A client's update is left out of the aggregate when its
parameters or its training loss come back non-finite, or when a loss ends
above EXPLODED times the larger of its first step's loss at the starting
parameters (`LocalStats.start_loss`) and a uniform guess's, log(classes):
its mean training loss over its steps (an explosion during training), or
its trained model's loss on that first batch (`end_loss`: finite weights
whose logits overflowed after the last step). That is the mark of a
learning rate that explodes: tenfold is far above what a working step does
to a client's own training loss and far below what an exploding one does
(the loss of a client at lr 1e3 reaches 1e4 or more within its first
steps). Both losses come out of the local update: the test costs one
forward pass of one batch per client.

Server side. The client test compares a client with the model it started
from, so it cannot see a server model that is itself blowing up: every
client then looks no worse than its start, and the exploded aggregate would
be accepted until it is non-finite, after which nothing brings the run back
(a static lr of 1.0 x 10 steps on `synthetic`'s MLP went 189, 5e4, 2e8 ... NaN
in validation loss, rounds 1-5). So the server accepts an aggregate only when
its validation loss is finite and at most EXPLODED times a uniform guess's,
log(classes) (23.0 for ten classes). A model above that predicts confidently
wrong on average: no round of a model that learns produces one, and an
exploding configuration does within a round or two. The bound is fixed by
the task rather than by the last accepted model: it rejects everything a
bound of EXPLODED x max(last accepted loss, log classes) does whenever that
model is no worse than a guess, and a slowly exploding model cannot ratchet
it upward round by round.
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


def make_rejected(num_classes: int) -> Callable[[jax.Array], jax.Array]:
  """rejected(val_loss) -> bool[]: the server-side test above for an
  aggregate's validation loss (f32[])."""
  bound = EXPLODED * float(jnp.log(num_classes))
  return lambda val_loss: ~(val_loss <= bound)  # NaN compares False
