"""Per-FedAvg: FedAvg whose clients take MAML steps, so that the global model
is a good start for one step of personal adaptation.

Personalized Federated Learning with Theoretical Guarantees: A
Model-Agnostic Meta-Learning Approach.
  A. Fallah, A. Mokhtari, A. Ozdaglar. NeurIPS 2020.
  https://arxiv.org/abs/2002.07948

Client i runs steps_i local steps (Algorithm 1), each on three independent
batches D, D', D'' of batch_i examples:

    w~ = w - a grad f(w; D)                                  (a = lr_i)
    w <- w - b grad f(w~; D')                                FO
    w <- w - b (I - a H f(w; D'')) grad f(w~; D')            HF

and sends its w; the server averages as FedAvg does. HF's Hessian-vector
product is exact (`jax.jvp` of the gradient) where the paper estimates it
by a finite difference; b is `meta_lr`. A client's personal model is the
final w adapted on its own training data with the configuration its
policy prefers (the paper's one step of a, or more).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm
from pfhpo.federated.local_update import example_order
from pfhpo.models import Model, cross_entropy
from pfhpo.settings import check_choice, checked, require, setting
from pfhpo.types import ClientHParams, LocalStats

LEARNERS = ('maml', 'fomaml')  # HF and FO


@checked
class PerFedAvgConfig:
  meta_learner: str = setting(
      'maml', "the inner learner: 'maml' (the paper's HF) or 'fomaml' (its FO)")
  meta_lr: float = setting(
      0.1, "the outer step beta (its inner step is the client's "
      'learning rate)')

  def __post_init__(self):
    check_choice('meta_learner', self.meta_learner, LEARNERS)
    require(self.meta_lr > 0, f'`meta_lr` must be > 0, got {self.meta_lr}')


def make_meta_steps(model: Model, features: Callable, max_steps: int,
                    max_batch: int, learner: str) -> Callable:
  """meta_steps(w, x, y, count, hp: ClientHParams, key) -> (w', LocalStats):
  hp.local_steps Per-FedAvg steps of inner step hp.lr and outer step
  beta = hp.tuned (`meta_lr`), masked like `make_local_update`'s (the loop
  runs `max_steps` times over batches of `max_batch` rows). Step s takes
  its three batches at positions 3s, 3s+1, 3s+2 of a cyclic walk through
  a random order of the client's examples."""
  rows = jnp.arange(max_batch)

  def meta_steps(w, x, y, count, hp: ClientHParams, key):
    lr, steps, batch, meta_lr = hp
    order_key, dropout_key = jax.random.split(key)
    walk = example_order(order_key, count, y.shape[0])  # i32[N_max]
    weight = (rows < batch) / batch.astype(jnp.float32)  # f32[B]

    def loss(p, at):  # the mean loss of the batch at walk position `at`
      idx = walk[(at * batch + rows) % jnp.maximum(count, 1)]
      logits = model.apply(p, features(x[idx]), train=True,
                           rng=jax.random.fold_in(dropout_key, at))
      return jnp.sum(weight * cross_entropy(logits, y[idx]))

    grad = jax.grad(loss)
    axpy = lambda a, u, v: jax.tree_util.tree_map(lambda s, t: s + a * t, u, v)

    def step_fn(p, s):
      first, g0 = jax.value_and_grad(loss)(p, 3 * s)
      temp = axpy(-lr, p, g0)
      g = grad(temp, 3 * s + 1)
      if learner == 'maml':  # (I - a H) g, H on the third batch
        hvp = jax.jvp(lambda q: grad(q, 3 * s + 2), (p,), (g,))[1]
        g = axpy(-lr, g, hvp)
      new = axpy(-meta_lr, p, g)
      active = s < steps
      p = jax.tree_util.tree_map(lambda a, b: jnp.where(active, a, b), new, p)
      return p, jnp.where(active, first, 0.0)

    new_w, losses = jax.lax.scan(step_fn, w, jnp.arange(max_steps))
    return new_w, LocalStats(
        losses.sum() / jnp.maximum(steps, 1), jnp.float32(1.0), losses[0],
        jax.lax.stop_gradient(_eval_loss(model, features, new_w, x, y, walk,
                                         rows, weight, count, batch)))

  return meta_steps


def _eval_loss(model, features, w, x, y, walk, rows, weight, count, batch):
  """The trained w's loss, without dropout, on the first step's first
  batch (what `divergence` compares with that batch's loss at the start)."""
  idx = walk[rows % jnp.maximum(count, 1)]
  return jnp.sum(weight * cross_entropy(model.apply(w, features(x[idx])),
                                        y[idx]))


def per_fedavg(sgd: Callable, meta_steps: Callable) -> ClientAlgorithm:
  """`meta_steps` from `make_meta_steps`; `sgd()` the personal adaptation."""
  adapt = sgd()

  def personal(theta, row, x, y, count, hp: ClientHParams, key):
    return adapt(theta, x, y, count, *hp.sgd, key)[0]

  def local(theta, row, x, y, count, hp: ClientHParams, key):
    w, stats = meta_steps(theta, x, y, count, hp, key)
    return w, row, stats, personal(w, row, x, y, count, hp, key)

  return ClientAlgorithm('per_fedavg', lambda params, num_clients: (), local,
                         personal)


@register('per_fedavg', PerFedAvgConfig, tuned='meta_lr')
def _build(config: PerFedAvgConfig, context: AlgorithmContext
           ) -> ClientAlgorithm:
  return per_fedavg(context.sgd, make_meta_steps(
      context.model, context.features, context.max_steps, context.max_batch,
      config.meta_learner))
