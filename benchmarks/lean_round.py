"""The plainest XLA program of a FedAvg round's arithmetic: what our round's
features cost, and how fast the same work goes as JAX on this machine.

Every client takes `steps` plain SGD steps from the server model, walking
a given order of its N examples (drawn on the host) B at a time, as our
local update walks the order it draws, and the server adds the
example-weighted mean update (server SGD at learning rate 1):

    theta_i <- theta_i - lr grad (1/B) sum_{j<B} l(theta_i; x_i[r_sj]),
    r_sj     = order_i[(s B + j) mod N]                   (step s, row j)
    theta   <- theta + sum_i w_i (theta_i - theta),       w_i = D_i / D

It walks the clients as our round does (`aggregate_clients`: groups of
`chunk` vmapped, the client axis split over the mesh), and leaves out all
that the round adds around it: the per-client configurations (traced
learning rate, step and batch masks), drawing the example order on the
device, the divergence checks and their extra forward pass, the
aggregate's validation and the policy. With the same example orders and
dropout keys it computes our FedAvg round's model
(`tests/test_benchmarks.py`), so `round_throughput.py` can time it beside
ours and fedjax's on identical work.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from pfhpo.federated.aggregate import aggregate_clients
from pfhpo.models import Model, cross_entropy

tree_map = jax.tree_util.tree_map


def lean_round(model: Model, features: Callable, lr: float, steps: int,
               batch: int, chunk: int | None = None, mesh: Mesh | None = None,
               unroll: bool = False) -> Callable:
  """round(params, x, y, order, keys, weights) -> the next server params.

  x: [K, N, ...] stored features, y: i32[K, N], order: i32[K, N] each
  client's order of its examples, keys: [K, 2] each client's dropout key
  (step s draws with `fold_in(key, s)`, as our local update does),
  weights: f32[K] w_i. Jit it; `unroll` unrolls the step loop (a `lax`
  convolution on a CPU needs it, as in our round).
  """

  def local_sgd(params, x, y, order, key):
    def step(p, s):
      rows = order[(s * batch + jnp.arange(batch)) % order.shape[0]]  # i32[B]
      loss = lambda p: jnp.mean(cross_entropy(model.apply(
          p, features(x[rows]), train=True, rng=jax.random.fold_in(key, s)),
          y[rows]))
      return tree_map(lambda a, g: a - lr * g, p, jax.grad(loss)(p)), None

    trained, _ = jax.lax.scan(step, params, jnp.arange(steps),
                              unroll=steps if unroll else 1)
    return trained, None

  def one_round(params, x, y, order, keys, weights):
    delta, _ = aggregate_clients(
        lambda *a: local_sgd(params, *a), params, (x, y, order, keys),
        weights, jnp.ones_like(weights), chunk, mesh)
    return tree_map(jnp.add, params, delta)

  return one_round
