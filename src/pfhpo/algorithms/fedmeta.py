"""FedMeta: the server learns an initialisation that adapts well per client.

Federated Meta-Learning with Fast Convergence and Efficient Communication.
  F. Chen, M. Luo, Z. Dong, Z. Li, X. He. 2018.
  https://arxiv.org/abs/1802.07876
Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks.
  C. Finn, P. Abbeel, S. Levine. ICML 2017. https://arxiv.org/abs/1703.03400
Meta-SGD: Learning to Learn Quickly for Few-Shot Learning.
  Z. Li, F. Zhou, F. Chen, H. Li. 2017. https://arxiv.org/abs/1707.09835

Client i splits its training examples at random into a support set S_i
and a query set Q_i (`query_fraction` of them), adapts the server model on
the support set and returns the meta-gradient of the query loss:

    phi_i(theta) = LocalSGD(theta on S_i; lr_i, steps_i, batch_i)
    g_i          = d/dtheta L_{Q_i}(phi_i(theta))            MAML
                 = grad L_{Q_i}(phi_i)   (d phi_i / d theta := I)   FO-MAML

Meta-SGD learns the inner step too: the server holds (theta, log alpha),
alpha one learning rate per parameter (1 at the start), each inner step is
phi <- phi - lr_i alpha * grad L_S(phi), and g_i is the gradient of the
query loss with respect to both, through the inner loop.

and sends theta_i = theta - g_i, so the round's aggregate is the
pseudo-gradient sum_i w_i g_i, weighted by the client's examples (its query
set is a fraction of them, the client's tuned setting `query_fraction`:
`ClientHParams.tuned`), for the server optimizer: Adam in the
paper (`--server_opt=adam`). MAML differentiates through the inner loop
with `jax.grad`. A client's personal model is the final theta adapted on
all its training examples with the configuration its policy prefers.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm, ServerModel
from pfhpo.federated.local_update import make_masked_loss
from pfhpo.settings import check_choice, checked, require, setting
from pfhpo.types import ClientHParams

LEARNERS = ('maml', 'fomaml', 'metasgd')


@checked
class FedMetaConfig:
  meta_learner: str = setting(
      'maml', "the inner learner: 'maml' (the meta-gradient through "
      "the inner loop), 'fomaml' (first order) or 'metasgd' (MAML with a "
      'learned per-parameter inner rate)')
  query_fraction: float = setting(
      0.5, "the fraction of a client's training examples in its "
      'query set')

  def __post_init__(self):
    check_choice('meta_learner', self.meta_learner, LEARNERS)
    require(0 < self.query_fraction < 1, '`query_fraction` must be in '
            f'(0, 1), got {self.query_fraction}')

# Meta-SGD's server: the model and the log of its per-parameter inner rates.
META_SGD = ServerModel(
    lambda key, params: {'model': params, 'log_alpha':
                         jax.tree_util.tree_map(jnp.zeros_like, params)},
    lambda server: server['model'])


def _server(learner: str) -> ServerModel:
  return META_SGD if learner == 'metasgd' else ServerModel()


def support_query(key, x, y, count, query_fraction: float):
  """The client's `count` real examples in a random order, cut into the
  support set (first) and the query set: (xs, ys, ns, xq, yq, nq), each
  padded to N_max with its real examples first; nq = round(query_fraction
  count), at least 1 each when count >= 2."""
  n_max = y.shape[0]
  u = jax.random.uniform(key, (n_max,))
  order = jnp.argsort(jnp.where(jnp.arange(n_max) < count, u, 2.0))
  nq = jnp.clip(jnp.round(query_fraction * count).astype(jnp.int32), 1,
                jnp.maximum(count - 1, 1))
  ns = jnp.maximum(count - nq, 1)
  xs, ys = x[order], y[order]
  return (xs, ys, ns, jnp.roll(xs, -ns, axis=0), jnp.roll(ys, -ns, axis=0),
          nq)


def fedmeta(sgd: Callable, masked_loss: Callable,
            learner: str) -> ClientAlgorithm:
  """`masked_loss(params, x, y, count)`: the mean loss on the first count."""
  local_sgd = sgd()
  server = _server(learner)

  def adapt(theta, x, y, count, hp: ClientHParams, key):  # phi from theta
    if learner == 'metasgd':
      return local_sgd(theta['model'], x, y, count, *hp.sgd, key,
                       scale=jax.tree_util.tree_map(jnp.exp,
                                                    theta['log_alpha']))
    return local_sgd(theta, x, y, count, *hp.sgd, key)

  def local(theta, row, x, y, count, hp: ClientHParams, key):
    split_key, adapt_key = jax.random.split(key)
    xs, ys, ns, xq, yq, nq = support_query(split_key, x, y, count, hp.tuned)

    def query_loss(t):
      phi, stats = adapt(t, xs, ys, ns, hp, adapt_key)
      if learner == 'fomaml':  # the same phi, with d phi / d t taken as I
        phi = jax.tree_util.tree_map(
            lambda a, b: a + jax.lax.stop_gradient(b - a), t, phi)
      return masked_loss(phi, xq, yq, nq), (stats, phi)

    (_, (stats, phi)), g = jax.value_and_grad(query_loss, has_aux=True)(theta)
    return jax.tree_util.tree_map(jnp.subtract, theta, g), row, stats, phi

  return ClientAlgorithm(
      'fedmeta', lambda params, num_clients: (), local,
      lambda theta, row, *data: adapt(theta, *data)[0], server)


@register('fedmeta', FedMetaConfig, tuned='query_fraction',
          server_model=lambda config, params_like, num_clients:
          _server(config.meta_learner))
def _build(config: FedMetaConfig, context: AlgorithmContext
           ) -> ClientAlgorithm:
  return fedmeta(context.sgd, make_masked_loss(context.model,
                                               context.features),
                 config.meta_learner)
