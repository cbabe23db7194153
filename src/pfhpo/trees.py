"""Pytree arithmetic that every layer uses (the round, the algorithms, the
policies), kept below them all."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def tree_cosine(a, b) -> jax.Array:
  """<a, b> / (|a| |b|) over two pytrees of the same structure; 0 if either
  is zero."""
  dot = lambda u, v: sum(jnp.vdot(x, y) for x, y in zip(
      jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(v)))
  norms = jnp.sqrt(dot(a, a) * dot(b, b))
  return jnp.where(norms > 0, dot(a, b) / jnp.where(norms > 0, norms, 1.0),
                   0.0)


def ravel_like(params_like) -> tuple[jax.Array, Callable]:
  """(zeros f32[P], unravel) of a model's parameters or their shapes
  (`jax.ShapeDtypeStruct`s): `jax.flatten_util.ravel_pytree` without the
  values."""
  return ravel_pytree(jax.tree_util.tree_map(
      lambda a: jnp.zeros(a.shape, a.dtype), params_like))
