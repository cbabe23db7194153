"""The baselines' updates on their own: FedEx's exponentiated gradient and
baseline, personalised FedEx's hypernetwork, and FATHOM's hypergradients on
a quadratic whose best learning rate is known in closed form."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo.errors import ConfigError
from pfhpo.policies import fathom, fedex, pfedex
from pfhpo.types import Feedback
from pfhpo.policies.fathom import hyperparameters
from pfhpo.policies.fedex import DiscountedMean
from pfhpo.policies.space import make_space

SPACE = make_space([0.01, 0.1, 1.0], [1, 5], [16])  # H = 6


def _feedback(clients, choices, local_val_loss=None, val_count=None,
              delta=None, alignment=None):
  k = len(clients)
  return Feedback(jnp.asarray(clients), jnp.asarray(choices), jnp.zeros(k),
                  jnp.float32(1.0), jnp.float32(0.5), jnp.zeros(k),
                  None if local_val_loss is None else jnp.asarray(
                      local_val_loss, jnp.float32),
                  None if val_count is None else jnp.asarray(val_count),
                  delta,
                  None if alignment is None else jnp.asarray(
                      alignment, jnp.float32))


@pytest.mark.parametrize('gamma', [0.0, 0.5, 1.0])
def test_discounted_mean_is_the_weighted_formula(gamma):
  xs = [0.3, 1.2, -0.4, 2.0]
  m = DiscountedMean.empty()
  assert float(m.value()) == 0.0
  for t, x in enumerate(xs):
    m = m.add(jnp.float32(x), gamma)
    ages = np.arange(t, -1, -1)  # 0 for the newest
    want = np.sum(gamma**ages * xs[:t + 1]) / np.sum(gamma**ages)
    np.testing.assert_allclose(float(m.value()), want, rtol=1e-6)


def test_fedex_step_is_the_exponentiated_gradient_of_the_paper():
  policy = fedex(SPACE, baseline_decay=0.5)
  state = policy.init(None, 10)
  state = state._replace(
      log_theta=jax.nn.log_softmax(jnp.linspace(-1.0, 1.0, 6))[None],
      baseline=DiscountedMean.empty().add(jnp.float32(0.8), 0.5))
  theta = np.exp(np.asarray(state.log_theta[0], np.float64))
  choices, losses, sizes = [1, 4, 1, 5], [0.5, 1.1, 0.9, 0.7], [10, 30, 20, 40]
  new = policy.update(state, _feedback([0, 3, 4, 9], choices, losses, sizes))
  w = np.array(sizes) / np.sum(sizes)
  grad = np.zeros(6)
  for z, loss, wi in zip(choices, losses, w):
    grad[z] += wi * (loss - 0.8) / theta[z]
  eta = np.sqrt(2 * np.log(6)) / np.abs(grad).max()
  want = theta * np.exp(-eta * grad)
  want /= want.sum()
  np.testing.assert_allclose(np.exp(new.log_theta[0]), want, rtol=1e-5)
  # The round's weighted mean loss joins the baseline after the step.
  np.testing.assert_allclose(float(new.baseline.value()),
                             (0.5 * 0.8 + np.sum(w * losses)) / 1.5, rtol=1e-6)


def test_pfedex_learns_a_different_configuration_per_group():
  """A bandit where clients 0-3 lose least with configuration 0 and clients
  4-7 with configuration 5: the hypernetwork separates them."""
  policy = pfedex(SPACE, optax.adam(0.05))
  state = policy.init(jax.random.PRNGKey(0), 8)
  clients = jnp.arange(8)
  best = jnp.where(clients < 4, 0, 5)

  @jax.jit
  def step(state, key):
    _, z = policy.propose(state, clients, key)
    loss = jnp.where(z == best, 0.2, 1.0)
    return policy.update(state, _feedback(clients, z, loss, jnp.full(8, 10)))

  p0 = policy.probabilities(state, clients)
  assert float(jnp.abs(p0 - p0[0]).max()) > 1e-3  # encodings differ
  for r in range(150):
    state = step(state, jax.random.PRNGKey(r))
  p_best = np.asarray(policy.probabilities(state, clients))[np.arange(8), best]
  assert p_best.min() > 0.8, p_best


# --- FATHOM -----------------------------------------------------------------

A = 2.0  # f(x) = A/2 |x - x*|^2: one local step at lr 1/A lands on x*


def _fathom(lr, counts=(1, 1, 1, 1), **kw):
  """FATHOM with one full-batch local step (compiled for exactly one)."""
  return fathom(lr, 1, 1.0, 1, 1, np.array(counts), jnp.zeros(3), **kw)


def _quadratic_run(lr0, rounds):
  """Clients take FATHOM's local steps on f_i = A/2 |x - b_i|^2; the server
  averages. Returns the learning rate after each round."""
  rng = np.random.default_rng(0)
  b = rng.normal(size=(4, 3))
  policy = _fathom(lr0)
  state = policy.init(None, 4)
  clients = jnp.arange(4)
  x = np.full(3, 5.0)
  lrs = []
  for _ in range(rounds):
    hp, _ = policy.propose(state, clients, None)
    lr, steps = float(hp.lr[0]), int(hp.local_steps[0])
    xi = np.repeat(x[None], 4, 0)
    aligned = np.ones(4)
    for _ in range(steps):
      xi = xi - lr * A * (xi - b)
    delta = (xi - x).mean(0)
    x = x + delta
    state = policy.update(state, _feedback(clients, -np.ones(4, int),
                                           delta=jnp.asarray(delta, jnp.float32),
                                           alignment=aligned))
    lrs.append(hyperparameters(state)['lr'])
  return np.array(lrs)


@pytest.mark.parametrize('lr0', [0.2 / A, 1.7 / A])
def test_fathom_learning_rate_moves_towards_the_closed_form_optimum(lr0):
  """x_{t+1} - x* = (1 - lr A)(x_t - x*): consecutive updates agree below
  lr* = 1/A and alternate above it, so the hypergradient's sign says which
  side lr is on."""
  lrs = _quadratic_run(lr0, rounds=25)  # x has not converged yet
  gap = np.abs(np.log(lrs * A))
  # Each round moves log(lr) by gamma_eta = 0.01 (none in round 1, which has
  # no previous update), always towards 1/A.
  assert gap[-1] == pytest.approx(np.abs(np.log(lr0 * A)) - 0.24, abs=1e-3)
  assert lrs[0] == pytest.approx(lr0)
  moves = np.sign(np.diff(lrs))
  assert np.all(moves == (1 if lr0 < 1 / A else -1)), moves


def test_fathom_steps_follow_epochs_and_the_compiled_bounds():
  counts = np.array([40, 100, 7])
  policy = fathom(0.1, 20, 1.0, 5, 32, counts, jnp.zeros(2))
  state = policy.init(None, 3)
  hp, choices = policy.propose(state, jnp.array([0, 1, 2]), None)
  np.testing.assert_array_equal(hp.local_steps, [2, 5, 1])  # ceil(E n / B)
  np.testing.assert_array_equal(hp.batch_size, 20)
  np.testing.assert_array_equal(choices, -1)
  with pytest.raises(ConfigError, match='needs 10 local steps.*`max_local_steps` >= 10'):
    fathom(0.1, 10, 1.0, 5, 32, counts, jnp.zeros(2))
  with pytest.raises(ConfigError, match='batch 64.*`max_batch_size` >= 64'):
    fathom(0.1, 64, 1.0, 5, 32, counts, jnp.zeros(2))
  # Unset E_0: one epoch where it fits, else the most the round holds,
  # at batch 10 five steps on the largest client: E_0 = 0.5.
  for batch, steps in ((40, [1, 3, 1]), (20, [2, 5, 1]), (10, [2, 5, 1])):
    policy = fathom(0.1, batch, None, 5, 64, counts, jnp.zeros(2))
    hp, _ = policy.propose(policy.init(None, 3), jnp.array([0, 1, 2]), None)
    np.testing.assert_array_equal(hp.local_steps, steps)


def test_fathom_compute_penalty_buys_fewer_steps():
  """Local gradients turning against the client's path (alignment < 0)
  shrink the epochs and grow the batch; aligned ones do the opposite."""
  policy = fathom(0.1, 8, 1.0, 50, 64, np.array([100, 100]), jnp.zeros(2))
  fb = lambda a: _feedback([0, 1], [-1, -1], delta=jnp.ones(2),
                           alignment=[a, a])
  start = hyperparameters(policy.init(None, 2))
  for a, sign in ((-0.5, -1), (0.8, 1)):
    got = hyperparameters(policy.update(policy.init(None, 2), fb(a)))
    assert np.sign(got['epochs'] - start['epochs']) == sign
    assert np.sign(got['batch_size'] - start['batch_size']) == -sign
    np.testing.assert_allclose(got['epochs'] / start['epochs'],
                               np.exp(0.01 * a), rtol=1e-5)
    np.testing.assert_allclose(got['batch_size'] / start['batch_size'],
                               np.exp(-0.1 * a), rtol=1e-5)
    assert got['lr'] == pytest.approx(start['lr'])  # round 1: no cosine yet


@pytest.mark.parametrize('sign', [1, -1])
def test_fathom_global_cosine_moves_epochs_and_lr_together(sign):
  """N_t = H_t = -cos(Delta_sm, Delta_t): a second update along the first
  (cos +1) grows E and eta by exp(gamma = 0.01), an opposed one (cos -1)
  shrinks both; with alignment 0 (G_t = 0) the batch stays. A sign lost in
  the epochs' global term fails it."""
  policy = fathom(0.1, 8, 1.0, 50, 64, np.array([100, 100]), jnp.zeros(2))
  fb = lambda d: _feedback([0, 1], [-1, -1], delta=jnp.asarray(d, jnp.float32),
                           alignment=[0.0, 0.0])
  first = policy.update(policy.init(None, 2), fb([1.0, -2.0]))
  second = policy.update(first, fb([sign * 0.5, -sign * 1.0]))
  before, after = hyperparameters(first), hyperparameters(second)
  np.testing.assert_allclose(after['epochs'] / before['epochs'],
                             np.exp(0.01 * sign), rtol=1e-5)
  np.testing.assert_allclose(after['lr'] / before['lr'], np.exp(0.01 * sign),
                             rtol=1e-5)
  assert after['batch_size'] == pytest.approx(before['batch_size'])
