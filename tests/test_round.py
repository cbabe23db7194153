"""The compiled policy round on a constructed federated problem.

Eight clients share one logistic-regression task; clients 0-3 hold flipped
labels. The validation set is clean, so a flipped client does least harm
with the smallest learning rate and a clean client helps most with the
largest: the best configuration differs by group, and only per-client
credit can tell the groups apart.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo.algorithms.fedavg import RoundBatch, ServerState
from pfhpo.models import Model
from pfhpo.policies import gumbel, random, reinforce, static
from pfhpo.round import ValBatch, make_round
from pfhpo.space import make_space

C, N, D = 8, 64, 10
SPACE = make_space([0.001, 0.03, 0.3], [5], [16])
FLIPPED = np.arange(C) < 4
BEST = np.where(FLIPPED, 0, 2)  # smallest lr for flipped, largest for clean


def linear_model():
  def init(key):
    return {'w': jnp.zeros((D, 2)), 'b': jnp.zeros(2)}

  def apply(params, x, train=False, rng=None):
    return x @ params['w'] + params['b']

  return Model(init, apply, 'linear', 2)


def problem(seed=0):
  rng = np.random.default_rng(seed)
  w_true = rng.normal(size=D)
  x = rng.normal(size=(C, N, D)).astype(np.float32)
  y = (x @ w_true > 0).astype(np.int32)
  y[FLIPPED] = 1 - y[FLIPPED]
  xv = rng.normal(size=(500, D)).astype(np.float32)
  val = ValBatch(xv, (xv @ w_true > 0).astype(np.int32),
                 np.full(500, 1 / 500, np.float32))
  return RoundBatch(x, y, np.full(C, N, np.int32)), val


def run_policy(policy, rounds=40, chunk=None, data=None, space=SPACE):
  """Runs `rounds` rounds with every client; (probabilities f32[C, H] of the
  final policy, the last round's metrics)."""
  model = linear_model()
  batch, val = data or problem()
  step = jax.jit(make_round(model, lambda x: x, optax.sgd(1.0), space, policy,
                            client_chunk=chunk))
  server = ServerState(model.init(None), optax.sgd(1.0).init(model.init(None)))
  pstate = policy.init(jax.random.PRNGKey(0), C)
  clients = jnp.arange(C)
  for r in range(rounds):
    server, pstate, metrics = step(server, pstate, clients, batch, val,
                                   jax.random.PRNGKey(r))
  return np.asarray(policy.probabilities(pstate, clients)), metrics


@pytest.mark.parametrize('chunk', [None, 2])
def test_gumbel_finds_each_groups_best_configuration(chunk):
  probs, metrics = run_policy(
      gumbel(SPACE, optax.sgd(0.5), normalize=True), chunk=chunk)
  p_best = probs[np.arange(C), BEST]
  assert p_best.min() > 0.8, p_best
  assert float(metrics['val_acc']) > 0.9


def test_baselines_do_not_separate_the_groups():
  probs, _ = run_policy(random(SPACE))
  np.testing.assert_allclose(probs, 1 / 3)
  probs, _ = run_policy(static(SPACE, 1))
  np.testing.assert_array_equal(probs[:, 1], 1.0)
  # One shared reward cannot tell a flipped client from a clean one.
  probs, _ = run_policy(reinforce(SPACE, optax.sgd(0.5)))
  p_best = probs[np.arange(C), BEST]
  assert p_best[FLIPPED].mean() < 0.8
