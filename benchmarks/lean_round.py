"""The plainest XLA program of a FedAvg round's arithmetic: what our round's
features cost, and how fast the same work goes as JAX on this machine.

Every client takes `steps` plain SGD steps from the server model on batches
whose rows are given (`idx`, drawn on the host), and the server adds the
example-weighted mean update (server SGD at learning rate 1):

    theta_i <- theta_i - lr grad (1/B) sum_j l(theta_i; x_i[idx_i[s, j]])
    theta   <- theta + sum_i w_i (theta_i - theta),   w_i = D_i / D

It walks the clients as our round does (`aggregate_clients`: groups of
`chunk` vmapped, the client axis split over the mesh), and leaves out all
that the round adds around it: the per-client configurations (traced
learning rate, step and batch masks), the on-device example order, the
divergence checks and their extra forward pass, the aggregate's validation
and the policy. With the same rows and dropout keys it computes our FedAvg
round's model (`tests/test_benchmarks.py`), so `round_throughput.py` can
time it beside ours and fedjax's on identical work.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pfhpo.federated.aggregate import aggregate_clients
from pfhpo.models import Model, cross_entropy

tree_map = jax.tree_util.tree_map


def lean_round(model: Model, features: Callable, lr: float,
               chunk: int | None = None, mesh: Mesh | None = None,
               unroll: bool = False) -> Callable:
  """round(params, x, y, idx, keys, weights) -> the next server params.

  x: [K, N, ...] stored features, y: i32[K, N], idx: i32[K, steps, B] the
  rows of each step's batch, keys: [K, 2] each client's dropout key (step
  s draws with `fold_in(key, s)`, as our local update does), weights:
  f32[K] w_i. Jit it; `unroll` unrolls the step loop (a `lax` convolution
  on a CPU needs it, as in our round).
  """

  def local_sgd(params, x, y, idx, key):
    def step(p, s_rows):
      s, rows = s_rows
      loss = lambda p: jnp.mean(cross_entropy(model.apply(
          p, features(x[rows]), train=True, rng=jax.random.fold_in(key, s)),
          y[rows]))
      return tree_map(lambda a, g: a - lr * g, p, jax.grad(loss)(p)), None

    steps = idx.shape[0]
    trained, _ = jax.lax.scan(step, params, (jnp.arange(steps), idx),
                              unroll=steps if unroll else 1)
    return trained, None

  def one_round(params, x, y, idx, keys, weights):
    delta, _ = aggregate_clients(
        lambda *a: local_sgd(params, *a), params, (x, y, idx, keys), weights,
        jnp.ones_like(weights), chunk, mesh)
    return tree_map(jnp.add, params, delta)

  return one_round
