"""Which clients diverged: a client-side test run beside local training.

A client's update is left out of the aggregate when its parameters or its
training loss come back non-finite, or when its trained model's mean loss on
up to `max_batch` of its own first examples ends above EXPLODED times the
larger of its loss before training and a uniform guess's, log(classes):
finite weights whose logits overflowed, the mark of a learning rate that
explodes. Tenfold is far above what a working step does to a client's own
training loss and far below what an exploding one does (the loss of a
client at lr 1e3 reaches 1e4 or more within its first steps).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pfhpo.models import Model, cross_entropy
from pfhpo.types import Params

EXPLODED = 10.0


def all_finite(tree) -> jax.Array:
  """bool[]: every entry of every leaf is finite."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a))
                            for a in jax.tree_util.tree_leaves(tree)]))


def make_masked_loss(model: Model, features: Callable) -> Callable:
  """masked_loss(params, x, y, count): mean loss on the first `count` of
  x: [N, ...], y: i32[N] (at most N)."""

  def masked_loss(params: Params, x, y, count) -> jax.Array:
    real = jnp.arange(y.shape[0]) < count
    losses = cross_entropy(model.apply(params, features(x)), y)
    return jnp.sum(jnp.where(real, losses, 0.0)) / jnp.maximum(
        jnp.minimum(count, y.shape[0]), 1)

  return masked_loss


def make_diverged(model: Model, features: Callable, probe: int) -> Callable:
  """diverged(before, after, train_loss, x, y, count) -> bool[]: the test
  above for one client, on its first `probe` examples."""
  masked_loss = make_masked_loss(model, features)
  uniform_loss = float(jnp.log(model.num_classes))

  def diverged(before: Params, after: Params, train_loss, x, y, count):
    sample = (x[:probe], y[:probe], count)
    start, end = masked_loss(before, *sample), masked_loss(after, *sample)
    return ~(all_finite(after) & jnp.isfinite(train_loss) &
             (end <= EXPLODED * jnp.maximum(start, uniform_loss)))

  return diverged
