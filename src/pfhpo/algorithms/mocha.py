"""MOCHA: federated multi-task learning of convex per-client models.

Federated Multi-Task Learning. V. Smith, C.-K. Chiang, M. Sanjabi,
  A. Talwalkar. NeurIPS 2017. https://arxiv.org/abs/1705.10467
  (its task-relationship regulariser and closed-form update are Zhang and
  Yeung's, "A Convex Formulation for Learning Task Relationships in
  Multi-Task Learning", UAI 2010).

Every client t keeps its own weights w_t of a convex model (multinomial
logistic regression on the inputs: `--model=logreg`), the rows of W
(f32[C, P]), coupled by a task-relationship matrix Omega (f32[C, C]):

    min_{W, Omega}  sum_t F_t(w_t) + lam/2 tr(W^T Omega^{-1} W)
                    Omega > 0, tr(Omega) = C

solved, as MOCHA does, by alternating the two blocks (primal form):

  * W, per client, vmapped: with the other rows fixed, the coupling is the
    quadratic lam/2 A_tt |w_t|^2 + lam <b_t, w_t>, A = Omega^{-1}, b_t =
    sum_{s != t} A_ts w_s, that is lam A_tt/2 |w_t - a_t|^2 with anchor
    a_t = -b_t / A_tt: the client's local SGD on F_t with that proximal
    step in closed form (`make_local_update`'s anchor), its configuration
    chosen by the policy;
  * Omega, on the server, in closed form from the new rows:
    Omega = C (W W^T + eps I)^{1/2} / tr((W W^T + eps I)^{1/2}), eps a
    1e-3 fraction of the mean eigenvalue (Omega starts at I: independent
    tasks, each with an L2 penalty lam).

On the round: the server holds {W, A, seen}; client t sends its new row
as W with row t moved by K (w_t' - w_t) and `seen` with entry t at 1, so
the round's aggregate (uniform weights 1/K) moves row t by c_t (w_t' -
w_t), and the credit dL/dc_t is that of client t's own row. The server
step (`mocha_server`) divides each row's move by K seen_t, which makes it
exact even when a client is left out as diverged, then updates A. The
global model, for the global metrics, is the mean row; a client's personal
model is its own row, w_t.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.aggregate import uniform_weights
from pfhpo.federated.client import ClientAlgorithm, ServerModel
from pfhpo.settings import checked, require, setting
from pfhpo.trees import ravel_like
from pfhpo.types import ClientHParams

EPS = 1e-3  # Omega's eigenvalue floor, a fraction of the mean eigenvalue


@checked
class MochaConfig:
  mocha_lambda: float = setting(
      0.01, "the strength of the task-relationship coupling (an L2 "
      'penalty while the tasks look independent)')

  def __post_init__(self):
    require(self.mocha_lambda > 0,
            f'`mocha_lambda` must be > 0, got {self.mocha_lambda}')


def _fits(config: MochaConfig, model: str, default_server: bool) -> None:
  require(model == 'logreg', 'mocha learns convex per-client models: use '
          f'`model`=logreg, not {model}.')
  require(default_server, "mocha's server step is its own closed form; drop "
          '`server_opt` and `server_lr`.')


def relationship(rows: jax.Array) -> jax.Array:
  """A = Omega^{-1} of rows W (f32[C, P]): Omega = C S / tr(S), S = (W W^T
  + eps I)^{1/2}, so A = tr(S) / C S^{-1}. f32[C, C]."""
  c = rows.shape[0]
  gram = rows @ rows.T
  e, u = jnp.linalg.eigh(gram)
  s = jnp.sqrt(jnp.maximum(e, 0.0) + EPS * jnp.trace(gram) / c + 1e-12)
  return (jnp.sum(s) / c) * (u / s) @ u.T


def mocha_server_model(params_like, num_clients: int) -> ServerModel:
  """The server's {W: every client's row (all start at the model's initial
  parameters), A: I, seen: 0}, and the mean row as its global model."""
  _, unravel = ravel_like(params_like)

  def init(key, params):
    flat = ravel_pytree(params)[0]
    return {'W': jnp.tile(flat, (num_clients, 1)),
            'A': jnp.eye(num_clients, dtype=flat.dtype),
            'seen': jnp.zeros(num_clients, flat.dtype)}

  return ServerModel(init, lambda server: unravel(server['W'].mean(0)))


def mocha_server(clients_per_round: int) -> optax.GradientTransformation:
  """The server's step on the aggregate Delta (= -pseudo-gradient): each
  row seen this round to W_t + Delta_W[t] / (K Delta_seen[t]); A to the
  closed form of the new rows; `seen` back to 0."""

  def update(grads, state, params):
    delta = jax.tree_util.tree_map(jnp.negative, grads)
    seen = clients_per_round * delta['seen']
    rows = params['W'] + delta['W'] / jnp.where(seen > 0, seen, 1.0)[:, None]
    return {'W': rows - params['W'], 'A': relationship(rows) - params['A'],
            'seen': -params['seen']}, state

  return optax.GradientTransformation(lambda params: optax.EmptyState(),
                                      update)


def mocha(sgd: Callable, params_like, lam: float, num_clients: int,
          clients_per_round: int) -> ClientAlgorithm:
  """Rows: each client's index t into the server's W."""
  _, unravel = ravel_like(params_like)
  train = sgd()

  def personal(server, t, *config):
    return unravel(server['W'][t])

  def local(server, t, x, y, count, hp: ClientHParams, key):
    w, a = server['W'], server['A']
    b = a[t] @ w - a[t, t] * w[t]  # f32[P]
    trained, stats = train(unravel(w[t]), x, y, count, *hp.sgd, key,
                           anchor=unravel(-b / a[t, t]), lam=lam * a[t, t])
    move = clients_per_round * (ravel_pytree(trained)[0] - w[t])
    sent = {'W': w.at[t].add(move), 'A': a,
            'seen': server['seen'].at[t].add(1.0)}
    return sent, t, stats, trained

  return ClientAlgorithm(
      'mocha', lambda params, num_clients: np.arange(num_clients,
                                                     dtype=np.int32),
      local, personal, mocha_server_model(params_like, num_clients),
      lambda count, server: uniform_weights(count))


@register('mocha', MochaConfig, check=_fits,
          server_model=lambda config, params_like, num_clients:
          mocha_server_model(params_like, num_clients),
          server_optimizer=lambda config, server_opt, clients_per_round:
          mocha_server(clients_per_round))
def _build(config: MochaConfig, context: AlgorithmContext) -> ClientAlgorithm:
  return mocha(context.sgd, context.params_like, config.mocha_lambda,
               context.num_clients, context.clients_per_round)
