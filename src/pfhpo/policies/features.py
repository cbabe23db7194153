"""Client features and the small network that maps them to logits (the
'features' policy scope, `logits.py`).

A client is described by what it could report before it trains:

    phi_i = [log(1 + n_i), its label histogram (num_classes), the entropy
             of that histogram / log(num_classes), log l_i - mean_j log l_j]

the first three standardised over the federation's clients, and l_i the
server model's loss on the client's training data, measured when the client
is next asked (`observe`: the round measures it for its clients before
proposing, a run's end for every client), relative to the mean over the
clients measured (0 for a client not measured yet). The 'features'
scope reads alpha_i = g_w(phi_i) + b_i, a one-hidden-layer network shared
by every client plus the client's own offset, so that a client never seen
in a round (b_i = 0) starts from what clients like it learned: a writer
with few examples has a small n_i, one whose labels are noisy a flat
histogram (symmetric noise) or a high loss under the shared model (any
noise that contradicts the other writers, pair noise included). The same amortisation over clients is pFedHN's (Shamsian et al., ICML
2021, "Personalized Federated Learning using Hypernetworks"), here for the
configuration policy instead of the model. The last layer starts at zero:
the policy starts uniform.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.models import PAD

HIDDEN = 16  # units of the hidden layer


def client_features(y: np.ndarray, owner: np.ndarray, num_clients: int,
                    num_classes: int) -> np.ndarray:
  """phi: f32[C, 2 + num_classes], standardised per column (a column that
  does not vary is 0). y: i32[N] training labels (i32[N, T] a sequence's
  next tokens: the histogram is of its tokens but `PAD`), owner: i32[N] the
  client of each."""
  counts = np.bincount(owner, minlength=num_clients)  # i64[C]
  labels = y.reshape(-1)  # i32[N * T]
  whose = np.repeat(owner, int(np.prod(y.shape[1:])))  # i32[N * T]
  if y.ndim > 1:
    whose, labels = whose[labels != PAD], labels[labels != PAD]
  hist = np.bincount(whose * num_classes + labels,
                     minlength=num_clients * num_classes).reshape(
                         num_clients, num_classes).astype(np.float64)
  hist /= np.maximum(hist.sum(1), 1)[:, None]  # f64[C, classes]
  plogp = np.where(hist > 0, hist * np.log(np.where(hist > 0, hist, 1)), 0)
  entropy = -plogp.sum(1) / np.log(num_classes)
  phi = np.column_stack([np.log1p(counts), hist, entropy])
  std = phi.std(0)
  return ((phi - phi.mean(0)) / np.where(std > 0, std, 1)).astype(np.float32)


def relative_log_loss(seen: jax.Array) -> jax.Array:
  """The loss column of phi: log l_i minus its mean over the clients
  measured, 0 for a client not measured (NaN). seen: f32[C] -> f32[C]."""
  known = ~jnp.isnan(seen)
  mean = jnp.sum(jnp.where(known, seen, 0.0)) / jnp.maximum(jnp.sum(known), 1)
  return jnp.where(known, seen - mean, 0.0)


def init_net(key: jax.Array, num_features: int, size: int) -> dict:
  """g_w's parameters: w1 ~ N(0, 1/num_features), the rest zeros."""
  return {'w1': jax.random.normal(key, (num_features, HIDDEN)) /
                jnp.sqrt(num_features),
          'b1': jnp.zeros(HIDDEN), 'w2': jnp.zeros((HIDDEN, size)),
          'b2': jnp.zeros(size)}


def apply_net(net: dict, phi: jax.Array) -> jax.Array:
  """g_w(phi) = tanh(phi w1 + b1) w2 + b2: f32[K, F] -> f32[K, H]."""
  return jnp.tanh(phi @ net['w1'] + net['b1']) @ net['w2'] + net['b2']
