"""A policy that is a categorical distribution over the search space per
client: it samples each client's configuration z_i ~ Categorical(softmax(
alpha_i)), prefers the argmax (ties broken by what the clients prefer
together), and summarises the mean distribution."""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.policies.base import Policy
from pfhpo.policies.space import SearchSpace, hparams_for
from pfhpo.types import ClientHParams


def summarize_probabilities(probabilities: Callable) -> Callable:
  """`summarize` of a categorical policy: its mean distribution over the
  clients asked about."""

  def summarize(state, clients) -> dict:
    p = np.asarray(probabilities(state, clients))  # f32[K, H]
    return {'mean_probabilities': p.mean(0).round(4).tolist()}

  return summarize


def distribution_policy(space: SearchSpace, init: Callable, logits: Callable,
                        update: Callable, needs: frozenset) -> Policy:
  """A policy that is a categorical distribution over `space` per client,
  `logits(state, clients) -> f32[K, H]`: it samples from it, prefers its
  argmax, and summarises its mean."""
  probabilities = lambda state, clients: jax.nn.softmax(logits(state, clients))
  return Policy(init, sample_of(space, logits), update,
                argmax_of(space, logits), probabilities,
                summarize_probabilities(probabilities), needs)


def sample_of(space: SearchSpace, logits: Callable) -> Callable:
  """`propose` of a categorical policy: z_i ~ Categorical(softmax(logits_i))."""

  def propose(state, clients, key):
    choices = jax.random.categorical(key, logits(state, clients))
    return hparams_for(space, choices), choices

  return propose


TIE = 1e-6  # probabilities closer than this are a tie


def argmax_of(space: SearchSpace, logits: Callable) -> Callable:
  """`prefer` of a categorical policy: each client's most likely candidate.

  A row whose largest probability is tied (a client the policy never
  updated has uniform logits) does not take the tie's first index, which
  is the smallest value of every axis: it takes the candidate the asked
  clients prefer together (the argmax of their mean distribution), and if
  that is tied too (a policy that learned nothing), the row's expected
  configuration E_p[lr, steps, batch, tuned] (steps and batch rounded;
  choice -1, off the grid).
  """
  values = [jnp.asarray(a, jnp.float32)
            for a in (space.lr, space.local_steps, space.batch_size,
                      space.tuned)]

  def prefer(state, clients, key):
    del key
    p = jax.nn.softmax(logits(state, clients))  # f32[K, H]
    tied = lambda q: jnp.sum(q >= q.max(-1, keepdims=True) - TIE, -1) > 1
    shared = jnp.mean(p, 0)  # f32[H]
    choices = jnp.where(tied(p), jnp.argmax(shared), jnp.argmax(p, -1))
    choices = jnp.where(tied(shared[None])[0] & tied(p), -1,
                        choices).astype(jnp.int32)
    grid = hparams_for(space, jnp.maximum(choices, 0))
    lr, steps, batch, tuned = (p @ v for v in values)  # f32[K] each
    off = choices < 0
    return ClientHParams(
        jnp.where(off, lr, grid.lr),
        jnp.where(off, jnp.round(steps).astype(jnp.int32), grid.local_steps),
        jnp.where(off, jnp.round(batch).astype(jnp.int32), grid.batch_size),
        jnp.where(off, tuned, grid.tuned)), choices

  return prefer
