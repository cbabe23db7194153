"""pFedHN: a server hypernetwork that writes each client's model.

Personalized Federated Learning using Hypernetworks.
  A. Shamsian, A. Navon, E. Fetaya, G. Chechik. ICML 2021.
  https://arxiv.org/abs/2103.04628

The server holds a hypernetwork h(.; phi) and each client an embedding v_i
(a row of the host table). In a round, client i (Algorithm 1):

    theta_i  = h(v_i; phi)
    theta~_i = LocalSGD(theta_i; lr_i, steps_i, batch_i)
    g_phi_i, g_v_i = (d theta_i / d(phi, v_i))^T (theta_i - theta~_i)

a vector-Jacobian product through h; the server moves phi by the
pseudo-gradient sum_i w_i g_phi_i (the round's server optimizer: the
client sends phi - g_phi_i, and the aggregate is the mean of those), and
the embedding by its own step, v_i <- v_i - embed_lr g_v_i. A client's
personal model is h(v_i; phi). There is no global model; the round
validates (and reports as global) h(0; phi), the model of the embeddings'
centre.

h: v (embed_dim) -> 100 -> 100 (ReLU) -> every parameter of the client
model, flattened. Its output layer starts at small weights and with the
model's own initial parameters as its bias, so every client starts from
the model's ordinary initialisation; embeddings start at N(0, 0.1^2).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm, ServerModel
from pfhpo.settings import checked, require, setting
from pfhpo.trees import ravel_like
from pfhpo.types import ClientHParams

HIDDEN = (100, 100)


@checked
class PFedHNConfig:
  embed_dim: int = setting(
      16, "the size of each client's embedding")
  embed_lr: float = setting(
      0.01, "the step of each client's embedding (the hypernetwork's "
      "is the server optimizer's)")

  def __post_init__(self):
    require(self.embed_dim >= 1,
            f'`embed_dim` must be >= 1, got {self.embed_dim}')
    require(self.embed_lr > 0, f'`embed_lr` must be > 0, got {self.embed_lr}')


def hypernetwork(params_like, embed_dim: int):
  """(init(key, params) -> phi, apply(phi, v: f32[embed_dim]) -> the
  model's params) for models shaped like `params_like`; `params` are the
  model's initial parameters, the output layer's bias."""
  flat_like, unravel = ravel_like(params_like)
  size = flat_like.size

  def init(key, params):
    sizes = (embed_dim, *HIDDEN)
    keys = jax.random.split(key, len(sizes))
    dense = lambda k, n, m, scale: (
        scale * jax.random.normal(k, (n, m)) / np.sqrt(n))
    layers = [(dense(k, n, m, 1.0), jnp.zeros(m))
              for k, n, m in zip(keys, sizes[:-1], sizes[1:])]
    out = (dense(keys[-1], HIDDEN[-1], size, 0.01), ravel_pytree(params)[0])
    return {'layers': layers, 'out': out}

  def apply(phi, v):
    h = v
    for w, b in phi['layers']:
      h = jax.nn.relu(h @ w + b)
    w, b = phi['out']
    return unravel(h @ w + b)

  return init, apply


def pfedhn_server(params_like, embed_dim: int) -> ServerModel:
  """The server's {'hnet': phi}, and h(0; phi) as its global model."""
  init, h = hypernetwork(params_like, embed_dim)
  return ServerModel(lambda key, params: {'hnet': init(key, params)},
                     lambda server: h(server['hnet'], jnp.zeros(embed_dim)))


def pfedhn(sgd: Callable, params_like, embed_dim: int) -> ClientAlgorithm:
  """`params_like`: the client model's parameters or their shapes. The
  embedding's step is the client's tuned setting (`embed_lr`)."""
  _, h = hypernetwork(params_like, embed_dim)
  train = sgd()

  def local(server, v, x, y, count, hp: ClientHParams, key):
    theta, vjp = jax.vjp(h, server['hnet'], v)
    trained, stats = train(theta, x, y, count, *hp.sgd, key)
    g_phi, g_v = vjp(jax.tree_util.tree_map(jnp.subtract, theta, trained))
    sent = {'hnet': jax.tree_util.tree_map(jnp.subtract, server['hnet'],
                                           g_phi)}
    return sent, v - hp.tuned * g_v, stats, trained

  def init_rows(params, num_clients: int):
    rng = np.random.default_rng(0)
    return 0.1 * rng.standard_normal((num_clients, embed_dim)).astype(
        np.float32)

  return ClientAlgorithm('pfedhn', init_rows, local,
                         lambda server, v, *config: h(server['hnet'], v),
                         pfedhn_server(params_like, embed_dim))


@register('pfedhn', PFedHNConfig, tuned='embed_lr',
          server_model=lambda config, params_like, num_clients:
          pfedhn_server(params_like, config.embed_dim))
def _build(config: PFedHNConfig, context: AlgorithmContext
           ) -> ClientAlgorithm:
  return pfedhn(context.sgd, context.params_like, config.embed_dim)
