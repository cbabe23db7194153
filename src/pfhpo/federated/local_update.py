"""The local update: SGD with per-client, traced hyper-parameters.

Client i starts from the server's parameters and runs `local_steps[i]` SGD
steps (optax `sgd`, momentum optional) with learning rate `lr[i]` on batches
of `batch_size[i]` examples:

    theta <- theta - lr_i * v,   v <- mu * v + grad (1/b_i) sum_{j<b_i} l(theta; x_j, y_j)

Shapes are static: the step loop always runs `max_steps` times over batches of
`max_batch` rows. Steps s >= local_steps[i] leave parameters and optimizer
state unchanged (a `lax.cond`: a client trained alone skips them, clients
vmapped side by side compute them and keep the old values), and rows
j >= batch_size[i] get weight zero, so a client computes what it would
compute alone with its own configuration. This is what lets `jax.vmap` put
clients with different configurations side by side.

Batches. A client draws one random order of its n real examples (padding
sorts last) and walks through it cyclically: step s, row j uses example
`order[(s * b + j) mod n]`. A client with fewer examples than its batch
therefore *wraps*: its batch holds every example once and some twice. This is
fedjax's `shuffle_repeat_batch(skip_shuffle=True)` applied to the data in
`order`, which the equivalence tests rely on.

Two variants for the personalisation algorithms (`pfhpo.algorithms`):
`trainable` freezes part of the model (its gradient is taken as zero:
FedRep's head or body), and an `anchor` with strength `lam` adds the
proximal step of Ditto's personal objective F_i(v) + lam/2 |v - anchor|^2,
taken in closed form after each SGD step,

    v <- (v' + lr_i lam anchor) / (1 + lr_i lam),   v' the SGD step,

which is stable for every lam (lam -> inf pins v to the anchor; lam = 0 is
plain SGD). A `scale` pytree multiplies the gradient leaf by leaf, a
learning rate per parameter (Meta-SGD's alpha) under the client's lr_i.

Alignment (for FATHOM, Kan 2022, eq. 12 as in its released code): with
`track_alignment`, a client also reports

    phi_i = min_{s < steps_i} cos(g_s, theta_0 - theta_{s+1})

the least cosine between a step's gradient and the cumulative update that
includes it (1 at s = 0). Gradients that turn against the way the client
has already moved say that more local steps stop paying.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from pfhpo.models import CONV_MODELS, Model, cross_entropy
from pfhpo.trees import tree_cosine
from pfhpo.types import LocalStats


def example_order(key: jax.Array, count: jax.Array, n_max: int) -> jax.Array:
  """A random order of a client's `count` real examples, padding last: i32[n_max]."""
  u = jax.random.uniform(key, (n_max,))
  return jnp.argsort(jnp.where(jnp.arange(n_max) < count, u, 2.0))


def make_local_update(model: Model, features: Callable, max_steps: int,
                      max_batch: int, momentum: float = 0.0,
                      unroll: bool = False, track_alignment: bool = False,
                      trainable: Callable[[Any], Any] | None = None):
  """Builds `local_update` for one client; `jax.vmap` it over clients.

  Args:
    model: the model to train.
    features: raw stored features -> f32 (`FederatedData.features`).
    max_steps: the most local steps any client may take (static).
    max_batch: the largest batch any client may use (static).
    momentum: SGD momentum (0 = plain SGD).
    unroll: unroll the step loop. XLA:CPU runs a `lax` convolution's backward
      pass ~14x slower inside a while loop; unroll for that case only (the
      `'patches'` convolution is dots and slices, fast in a loop).
    track_alignment: measure `LocalStats.alignment` (three dot products
      over the parameters per step).
    trainable: params -> the same pytree of Python bools, False where the
      parameters stay fixed (None: all are trained).

  Returns:
    local_update(params, x: [N_max, ...], y: i32[N_max], count: i32[],
                 lr: f32[], local_steps: i32[], batch_size: i32[], key,
                 anchor=None, lam=None, scale=None)
      -> (new_params, LocalStats)
  """
  opt = lambda lr: optax.sgd(lr, momentum=momentum or None)

  def local_update(params, x, y, count, lr, local_steps, batch_size, key,
                   anchor=None, lam=None, scale=None):
    mask = None if trainable is None else trainable(params)
    order_key, dropout_key = jax.random.split(key)
    order = example_order(order_key, count, y.shape[0])  # i32[N_max]
    rows = jnp.arange(max_batch)
    row_weight = (rows < batch_size) / batch_size.astype(jnp.float32)  # f32[B]

    def batch_loss(p, xb, yb, step):
      rng = jax.random.fold_in(dropout_key, step)
      logits = model.apply(p, features(xb), train=True, rng=rng)
      return jnp.sum(row_weight * cross_entropy(logits, yb))

    def take_step(carry, step):
      p, opt_state = carry
      idx = order[(step * batch_size + rows) % jnp.maximum(count, 1)]  # i32[B]
      loss, grads = jax.value_and_grad(batch_loss)(p, x[idx], y[idx], step)
      if scale is not None:
        grads = jax.tree_util.tree_map(jnp.multiply, grads, scale)
      if mask is not None:
        grads = jax.tree_util.tree_map(
            lambda g, t: g if t else jnp.zeros_like(g), grads, mask)
      updates, new_state = opt(lr).update(grads, opt_state, p)
      new_p = optax.apply_updates(p, updates)
      if anchor is not None:  # Ditto's proximal step towards the anchor
        new_p = jax.tree_util.tree_map(
            lambda v, a: (v + lr * lam * a) / (1 + lr * lam), new_p, anchor)
      cos = (tree_cosine(grads, jax.tree_util.tree_map(jnp.subtract, params,
                                                       new_p))
             if track_alignment else jnp.float32(1.0))
      return (new_p, new_state), (loss, cos)

    def skip_step(carry, step):  # take_step's outputs' types (f64 under x64)
      loss, cos = jax.eval_shape(take_step, carry, step)[1]
      return carry, (jnp.zeros((), loss.dtype), jnp.ones((), cos.dtype))

    def step_fn(carry, step):
      # A client alone (`aggregate_clients` with groups of one) skips its
      # steps past local_steps; vmapped, the branches become a select.
      return jax.lax.cond(step < local_steps, take_step, skip_step, carry,
                          step)

    (new_params, _), (losses, cosines) = jax.lax.scan(
        step_fn, (params, opt(lr).init(params)), jnp.arange(max_steps),
        unroll=max_steps if unroll else 1)
    # The trained model on the first step's batch, without dropout: beside
    # that step's loss, what tells a client that exploded (divergence.py).
    # (Fewer rows miss it: an exploded model is confidently right on some.)
    first = order[rows % jnp.maximum(count, 1)]  # i32[B]
    end_loss = jnp.sum(row_weight * cross_entropy(
        model.apply(new_params, features(x[first])), y[first]))
    return new_params, LocalStats(losses.sum() / jnp.maximum(local_steps, 1),
                                  jnp.min(cosines), losses[0], end_loss)

  return local_update


def default_client_chunk(model_name: str,
                         backend: str | None = None) -> int | None:
  """Clients trained side by side (`aggregate_clients`): on a CPU one at a
  time for the convolutional models, whose step is large enough that
  vmapping two gains nothing and a client trained alone skips the steps
  past its own `local_steps`, and 2 for the others; all elsewhere (the
  fastest measured: BUILD_NOTES.md has the sweeps).
  """
  if (backend or jax.default_backend()) != 'cpu':
    return None
  return 1 if model_name in CONV_MODELS else 2


def default_unroll(model_name: str, conv_impl: str,
                   backend: str | None = None) -> bool:
  """Whether the step loop is unrolled: only for XLA's (`lax`)
  convolutions on a CPU, whose backward pass XLA:CPU runs ~14x slower
  inside a while loop (the `patches` form is dots, fast in a loop)."""
  return ((backend or jax.default_backend()) == 'cpu' and conv_impl == 'lax'
          and model_name != 'mlp')


def make_masked_loss(model: Model, features: Callable) -> Callable:
  """masked_loss(params, x, y, count): mean loss on the first `count` of
  x: [N, ...], y: i32[N] (at most N)."""

  def masked_loss(params: Any, x, y, count) -> jax.Array:
    real = jnp.arange(y.shape[0]) < count
    losses = cross_entropy(model.apply(params, features(x)), y)
    return jnp.sum(jnp.where(real, losses, 0.0)) / jnp.maximum(
        jnp.minimum(count, y.shape[0]), 1)

  return masked_loss
