"""The server's configuration as a choice of the project's method
(`pfhpo.policies.server_axis`): its credit is the derivative of the
validation loss along the server step, which finite differences in the
server learning rate confirm, and its row finds the better server step."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo.federated import make_round
from pfhpo.federated.server import (credited_server_step, init_server,
                                    server_optimizer, server_step,
                                    with_server_hparams)
from pfhpo.models import Model, cross_entropy
from pfhpo.policies import gumbel, static
from pfhpo.policies.space import make_space, server_space
from pfhpo.types import ClientBatch, RoundBatch, ValBatch

D = 6
SERVERS = server_space((0.3, 1.5), (0.0, 0.9), 'sgd')


def linear():
  return Model(lambda key: {'w': 0.1 * jax.random.normal(key, (D, 3)),
                            'b': jnp.zeros(3)},
               lambda params, x, train=False, rng=None:
               x @ params['w'] + params['b'], 'linear', 3)


def val_set(seed=0, m=128):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(m, D)).astype(np.float32)
  y = np.argmax(x[:, :3] + 0.3 * rng.normal(size=(m, 3)), 1).astype(np.int32)
  return ValBatch(x, y, np.full(m, 1 / m, np.float32))


def val_loss_of(val):
  model = linear()
  return lambda p: jnp.sum(val.weight * cross_entropy(model.apply(p, val.x),
                                                       val.y))


@pytest.mark.parametrize('z', [0, 1, 2, 3])
@pytest.mark.parametrize('t', [0.5, 1.0])
def test_the_server_credit_is_the_finite_difference_in_the_server_lr(z, t):
  """g = dL(theta + c u)/dc at c = t equals eta dL(theta + u(e))/de at
  e = t eta: u is linear in the learning rate eta, with or without
  momentum (whose buffer is not empty: the step follows one before)."""
  opt = server_optimizer('sgd', 1.0, injected=True)
  params = linear().init(jax.random.PRNGKey(0))
  key = jax.random.PRNGKey(1)
  delta = jax.tree_util.tree_map(
      lambda p: 0.3 * jax.random.normal(key, p.shape), params)
  state = init_server(opt, params)
  state = server_step(opt, state._replace(opt_state=with_server_hparams(
      state.opt_state, SERVERS, jnp.int32(3))), delta)  # a momentum buffer
  loss = val_loss_of(val_set())
  _, g = credited_server_step(opt, state, delta, SERVERS, jnp.int32(z), loss,
                              t)
  eta = float(SERVERS.values()[0][z])

  def loss_at(e):
    opt_state = with_server_hparams(state.opt_state, SERVERS, jnp.int32(z))
    opt_state.hyperparams['learning_rate'] = jnp.float32(e)
    return float(loss(server_step(
        opt, state._replace(opt_state=opt_state), delta).params))

  h = 1e-2 * eta
  fd = (loss_at(t * eta + h) - loss_at(t * eta - h)) / (2 * h)
  assert float(g) == pytest.approx(eta * fd, rel=2e-3, abs=1e-6)
  assert abs(float(g)) > 1e-3  # a credit that could be wrong


def test_the_server_row_finds_the_best_server_configuration():
  """Clients that each take a short step towards a good model, four server
  configurations (lr 0.3 / 1.5 x momentum 0 / 0.9): gumbel's server row
  puts its mass on the one whose static run ends at the lowest validation
  loss (the run of each, alone, is the ground truth)."""
  c, n, rounds = 8, 64, 60
  rng = np.random.default_rng(0)
  x = rng.normal(size=(c, n, D)).astype(np.float32)
  y = np.argmax(x[..., :3], -1).astype(np.int32)
  batch = RoundBatch(np.arange(c), ClientBatch(x, y, np.full(c, n, np.int32)),
                     val_set(1, 256))
  space = make_space([0.05], [2], [16])
  opt = server_optimizer('sgd', 1.0, injected=True)

  def round_of(policy):
    algorithm = make_round(linear(), lambda v: v, opt, space, policy)
    return algorithm, jax.jit(algorithm.apply)

  def run(made, z=None):
    algorithm, step = made
    state, rows = algorithm.init(jax.random.PRNGKey(0), c, batch)
    if z is not None:  # a static run of server configuration z
      state = state._replace(server=state.server._replace(
          opt_state=with_server_hparams(state.server.opt_state, SERVERS,
                                        jnp.int32(z))))
    for r in range(rounds):
      state, rows, m = step(state, rows, batch, jax.random.PRNGKey(r))
    return state, m

  fixed = round_of(static(space, 0))  # one compiled round for every z
  final = [float(val_loss_of(batch.val)(run(fixed, z)[0].server.params))
           for z in range(SERVERS.size)]
  state, m = run(round_of(gumbel(space, optax.sgd(0.5), server=SERVERS)))
  p = np.asarray(jax.nn.softmax(state.policy.server.logits))
  assert int(np.argmax(p)) == int(np.argmin(final)) and p.max() > 0.5, (
      p, final)
  # the server steps with the configuration it drew
  hp = state.server.opt_state.hyperparams
  z = int(m.server_choice)
  assert (float(hp['learning_rate']), float(hp['momentum'])) == (
      SERVERS.values()[0][z], SERVERS.values()[1][z])
