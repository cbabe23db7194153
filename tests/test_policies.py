"""Policy updates on their own: the score-function algebra, the scopes, and
REINFORCE's expected update."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo.errors import ConfigError
from pfhpo.policies import (GumbelConfig, ReinforceConfig, create, gumbel,
                            reinforce, static)
from pfhpo.types import Feedback
from pfhpo.policies.base import penalized
from pfhpo.policies.features import client_features
from pfhpo.policies.fixed import StaticConfig
from pfhpo.policies.logits import logit_basis
from pfhpo.policies.space import hparams_for, make_space

SPACE = make_space([0.01, 0.1, 1.0], [1, 5], [16])  # H = 6


def _feedback(clients, choices, credit=None, acc=0.5):
  k = len(clients)
  return Feedback(jnp.asarray(clients), jnp.asarray(choices),
                  jnp.zeros(k) if credit is None else jnp.asarray(credit),
                  jnp.float32(1.0), jnp.float32(acc), jnp.zeros(k))


def test_space_is_the_cartesian_product_and_rejects_bad_axes():
  assert SPACE.size == 6 and SPACE.max_steps == 5 and SPACE.max_batch == 16
  hp = hparams_for(SPACE, jnp.array([0, 5, 3]))
  np.testing.assert_allclose(hp.lr, [0.01, 1.0, 0.1])
  np.testing.assert_array_equal(hp.local_steps, [1, 5, 5])
  for bad, match in [(([], [1], [1]), 'empty'), (([0.1], [0], [1]), '>= 1'),
                     (([-1.0], [1], [1]), 'positive'),
                     (([0.1, 0.1], [1], [1]), 'repeats')]:
    with pytest.raises(ConfigError, match=match):
      make_space(*bad)


def test_gumbel_update_is_minus_lr_normalised_credit_times_score():
  """alpha_i <- alpha_i - lr * (credit_i / sigma) * (onehot(z_i) -
  softmax(alpha_i)), sigma the std of the round's credits (0.25 here)."""
  policy = gumbel(SPACE, optax.sgd(0.5), scope='client')
  state = policy.init(jax.random.PRNGKey(0), 4)
  state = state._replace(logits=state.logits.at[1].set(
      jnp.linspace(-1, 1, 6)))
  p1 = jax.nn.softmax(state.logits[1])
  new = policy.update(state, _feedback([1, 3], [2, 0], credit=[0.3, -0.2]))
  want1 = state.logits[1] - 0.5 * 1.2 * (jax.nn.one_hot(2, 6) - p1)
  want3 = state.logits[3] + 0.5 * 0.8 * (jax.nn.one_hot(0, 6) - 1 / 6)
  np.testing.assert_allclose(new.logits[1], want1, atol=1e-6)
  np.testing.assert_allclose(new.logits[3], want3, atol=1e-6)
  # Clients 0 and 2 were not in the round: untouched.
  np.testing.assert_array_equal(new.logits[jnp.array([0, 2])],
                                state.logits[jnp.array([0, 2])])
  # Positive credit (raised the loss) makes the choice less likely.
  probs = policy.probabilities(new, jnp.array([1, 3]))
  assert probs[0, 2] < p1[2]
  assert probs[1, 0] > 1 / 6


def test_adam_rows_count_their_own_updates():
  policy = gumbel(SPACE, optax.adam(0.1), scope='client')
  state = policy.init(jax.random.PRNGKey(0), 3)
  for _ in range(3):
    state = policy.update(state, _feedback([0], [1], credit=[1.0]))
  state = policy.update(state, _feedback([2], [1], credit=[1.0]))
  counts = state.opt_state[0].count
  np.testing.assert_array_equal(counts, [3, 0, 1])
  # Row 2's first Adam step equals row 0's first one: -lr * sign.
  first = policy.update(policy.init(None, 3), _feedback([0], [1], [1.0]))
  np.testing.assert_allclose(state.logits[2], first.logits[0], atol=1e-6)


def test_global_scope_shares_one_row():
  policy = gumbel(SPACE, optax.sgd(1.0), scope='global')
  state = policy.init(jax.random.PRNGKey(0), 50)
  assert state.logits.shape == (1, 6)
  new = policy.update(state, _feedback([3, 40], [1, 1], credit=[0.5, 0.5]))
  # equal credits do not spread: each is divided by their largest, 0.5
  np.testing.assert_allclose(new.logits[0],
                             -2.0 * (jax.nn.one_hot(1, 6) - 1 / 6), atol=1e-6)


@pytest.mark.parametrize('rate', [1.0, 3.0, None])
def test_prior_scope_is_a_shared_row_plus_per_client_offsets(rate):
  """alpha_i = a + b_i: a moves by `prior_rate` times the mean of every
  client's score over the round's K clients, b_i by client i's alone,
  each p_i = softmax(a + b_i); the scope and its rate 4 are the default."""
  policy = (gumbel(SPACE, optax.sgd(0.5)) if rate is None else
            gumbel(SPACE, optax.sgd(0.5), scope='prior', prior_rate=rate))
  share = 2 / (rate or 4.0)  # K = 2 clients below
  state = policy.init(jax.random.PRNGKey(0), 4)
  assert state.logits.shape == (5, 6)  # the shared row, then 4 offsets
  a, b1 = jnp.linspace(-1, 1, 6), jnp.linspace(0.5, -0.5, 6)
  state = state._replace(logits=state.logits.at[0].set(a).at[2].set(b1))
  p1, p3 = jax.nn.softmax(a + b1), jax.nn.softmax(a)
  np.testing.assert_allclose(policy.probabilities(state, jnp.array([1, 3])),
                             jnp.stack([p1, p3]), atol=1e-6)
  new = policy.update(state, _feedback([1, 3], [2, 0], credit=[0.3, -0.2]))
  score1 = 1.2 * (jax.nn.one_hot(2, 6) - p1)  # credits / their std, 0.25
  score3 = -0.8 * (jax.nn.one_hot(0, 6) - p3)
  np.testing.assert_allclose(new.logits[0],
                             a - 0.5 * (score1 + score3) / share, atol=1e-6)
  np.testing.assert_allclose(new.logits[2], b1 - 0.5 * score1, atol=1e-6)
  np.testing.assert_allclose(new.logits[4], -0.5 * score3, atol=1e-6)
  # Clients 0 and 2 were not in the round: their offsets are untouched.
  np.testing.assert_array_equal(new.logits[jnp.array([1, 3])],
                                state.logits[jnp.array([1, 3])])


def test_the_axes_basis_is_a_product_of_one_categorical_per_axis():
  """'axes': alpha[z] = (beta_lr[z_lr] + beta_steps[z_steps]) / sqrt(2)
  (the batch and tuned axes hold one value: no rows), so softmax(alpha) is
  the outer product of the axes' softmaxes; 'joint+axes' stacks the joint
  logits on top, each of its 3 parts scaled so that diag(B^T B) = 1."""
  beta_lr, beta_steps = jnp.array([0.3, -1.0, 0.8]), jnp.array([0.5, -0.2])
  row = jnp.concatenate([beta_lr, beta_steps])
  basis = logit_basis(SPACE, 'axes')
  assert basis.shape == (3 + 2, 6)
  s = np.sqrt(2)
  want = jnp.outer(jax.nn.softmax(beta_lr / s), jax.nn.softmax(beta_steps / s))
  np.testing.assert_allclose(jax.nn.softmax(row @ basis), want.ravel(),
                             atol=1e-6)
  joint = jnp.linspace(-1, 1, 6)
  both = logit_basis(SPACE, 'joint+axes')
  np.testing.assert_allclose(jnp.concatenate([joint, row]) @ both,
                             (joint + s * (row @ basis)) / np.sqrt(3),
                             atol=1e-6)
  for name in ('joint', 'axes', 'joint+axes'):
    b = logit_basis(SPACE, name)
    np.testing.assert_allclose(np.diag(b.T @ b), np.ones(6), atol=1e-6)
  np.testing.assert_array_equal(logit_basis(SPACE, 'joint'), np.eye(6))
  with pytest.raises(ConfigError, match='policy_basis'):
    GumbelConfig(policy_basis='pairs')
  with pytest.raises(ConfigError, match='two values'):
    logit_basis(make_space([0.1], [1], [16]), 'axes')


@pytest.mark.parametrize('basis', ['axes', 'joint+axes'])
def test_a_credit_through_the_axes_moves_every_configuration_sharing_a_value(
    basis):
  """The score through B: row <- row - lr * credit * B (onehot(z) - p). A
  good credit (< 0) on lr 0.1 x 5 steps (z = 3) also raises lr 0.1 x 1 step
  and lr 1 x 5 steps above where the joint logits leave them (below
  uniform; under 'axes' alone, above it)."""
  policy = gumbel(SPACE, optax.sgd(0.5), scope='client', basis=basis)
  state = policy.init(None, 2)
  basis_matrix = logit_basis(SPACE, basis)
  p = jax.nn.softmax(state.logits[1] @ basis_matrix)
  new = policy.update(state, _feedback([1], [3], credit=[-0.4]))
  # a lone credit has no spread: divided by its magnitude, a unit
  np.testing.assert_allclose(
      new.logits[1],
      0.5 * 1.0 * basis_matrix @ (jax.nn.one_hot(3, 6) - p), atol=1e-6)
  probs = policy.probabilities(new, jnp.array([1]))[0]
  joint = gumbel(SPACE, optax.sgd(0.5), scope='client')
  joint_probs = joint.probabilities(
      joint.update(joint.init(None, 2), _feedback([1], [3], credit=[-0.4])),
      jnp.array([1]))[0]
  assert joint_probs[2] < 1 / 6 and joint_probs[5] < 1 / 6
  assert probs[2] > joint_probs[2] and probs[5] > joint_probs[5]
  assert probs[0] < joint_probs[0]  # shares no value with z = 3
  if basis == 'axes':
    assert probs[2] > 1 / 6 and probs[5] > 1 / 6


def test_a_prior_row_must_move_and_its_rate_belongs_to_the_prior_scope():
  with pytest.raises(ConfigError, match='`prior_rate` must be > 0'):
    GumbelConfig(prior_rate=0.0)
  # gumbel's default rate with another scope is no error: the scope
  # ignores it; another rate names the scope it needs
  assert GumbelConfig(policy_scope='client').prior_rate == 4.0
  with pytest.raises(ConfigError, match='pass `policy_scope`=prior'):
    ReinforceConfig(prior_rate=2.0)


def test_a_horizon_sample_needs_at_least_one_client_and_the_sampled_credit():
  with pytest.raises(ConfigError, match='`horizon_sample` must be >= 1'):
    GumbelConfig(horizon=2, horizon_credit='sampled', horizon_sample=0)
  with pytest.raises(ConfigError, match='sizes the sample of `horizon_credit`'):
    GumbelConfig(horizon=2, horizon_credit='first_order', horizon_sample=3)
  assert GumbelConfig(horizon=2, horizon_credit='sampled',
                      horizon_sample=3).horizon_sample == 3


def test_reinforce_constant_reward_has_zero_expected_update():
  """E_z[(R - b) grad log p(z)] = 0 for any constant R; and once the
  baseline has caught up (b = R) every update is exactly zero."""
  k = 20000
  policy = reinforce(SPACE, optax.sgd(1.0), scope='global',
                     baseline_decay=None)
  state = policy.init(None, 1)
  state = state._replace(logits=jnp.linspace(-1.0, 1.0, 6)[None])
  clients = jnp.zeros(k, jnp.int32)
  _, choices = policy.propose(state, clients, jax.random.PRNGKey(1))
  new = policy.update(state, _feedback(clients, choices, acc=0.7))
  # Each of the k terms has norm ~1; their mean must vanish like 1/sqrt(k).
  drift = np.abs(np.asarray(new.logits - state.logits)).max() / (0.7 * k)
  assert drift < 0.02
  with_baseline = reinforce(SPACE, optax.sgd(1.0), baseline_decay=0.5)
  state = with_baseline.init(None, 4)._replace(baseline=jnp.float32(0.7))
  new = with_baseline.update(state, _feedback([0, 1, 2], [0, 3, 5], acc=0.7))
  np.testing.assert_array_equal(new.logits, state.logits)


@pytest.mark.parametrize('basis', ['joint', 'axes', 'joint+axes'])
def test_reinforce_with_the_true_reward_finds_the_best_configuration(basis):
  """A delayed shared reward: R = mean quality of the round's choices."""
  quality = jnp.array([0.1, 0.2, 0.9, 0.3, 0.2, 0.1])
  policy = reinforce(SPACE, optax.sgd(2.0), scope='global', basis=basis)
  state = policy.init(None, 1)
  clients = jnp.zeros(10, jnp.int32)
  step = jax.jit(lambda s, key: policy.update(s, _feedback(
      clients, c := policy.propose(s, clients, key)[1],
      acc=jnp.mean(quality[c]))))
  for r in range(300):
    state = step(state, jax.random.PRNGKey(r))
  assert policy.probabilities(state, clients)[0, 2] > 0.8


def test_static_always_proposes_its_index():
  policy = static(SPACE, 4)
  state = policy.init(None, 7)
  hp, choices = policy.propose(state, jnp.arange(7), jax.random.PRNGKey(0))
  np.testing.assert_array_equal(choices, 4)
  np.testing.assert_allclose(hp.lr, 1.0)
  np.testing.assert_array_equal(policy.probabilities(state, jnp.arange(7)),
                                jax.nn.one_hot(jnp.full(7, 4), 6))
  hp, choices = policy.prefer(state, jnp.arange(7), None)
  np.testing.assert_array_equal(choices, 4)
  with pytest.raises(ConfigError, match='static_index'):
    static(SPACE, 6)


def test_client_features_are_size_label_histogram_and_spread_standardised():
  """phi = [log(1 + n), histogram, entropy / log(classes)], each column
  standardised over the clients: a client of one label has the lowest
  entropy, one of every label the highest."""
  y = np.array([0, 0, 0, 0, 0, 1, 2, 3, 1, 1])  # three clients end to end
  owner = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2])
  phi = client_features(y, owner, num_clients=3, num_classes=4)
  raw = np.array([[np.log(5), 1, 0, 0, 0, 0],
                  [np.log(5), .25, .25, .25, .25, 1],
                  [np.log(3), 0, 1, 0, 0, 0]])
  std = raw.std(0)
  np.testing.assert_allclose(
      phi, (raw - raw.mean(0)) / np.where(std > 0, std, 1), atol=1e-6)
  assert phi.shape == (3, 6) and phi.dtype == np.float32


def test_static_groups_fixes_each_groups_configuration():
  """`static_groups`: client i uses its group's configuration, every round,
  and prefers it; one configuration per group is required."""
  group = np.array([0, 2, 1, 1, 0, 2, 2])  # i32[C]
  policy = create('static', SPACE, StaticConfig(static_groups=(5, 0, 3)),
                  groups=('clean', 'noisy', 'few'), client_group=group)
  state = policy.init(None, 7)
  clients = jnp.array([6, 1, 2, 0])
  expected = np.array([5, 0, 3])[group[clients]]
  for key in range(2):
    hp, choices = policy.propose(state, clients, jax.random.PRNGKey(key))
    np.testing.assert_array_equal(choices, expected)
    np.testing.assert_allclose(hp.lr, np.asarray(SPACE.lr)[expected])
  np.testing.assert_array_equal(policy.prefer(state, clients, None)[1],
                                expected)
  np.testing.assert_array_equal(policy.probabilities(state, clients),
                                jax.nn.one_hot(expected, 6))
  with pytest.raises(ConfigError, match='one per group'):
    create('static', SPACE, StaticConfig(static_groups=(5, 0)),
           groups=('clean', 'noisy', 'few'), client_group=group)
  with pytest.raises(ConfigError, match='static_groups'):
    create('static', SPACE, StaticConfig(static_groups=(5, 0, 6)),
           groups=('clean', 'noisy', 'few'), client_group=group)
  with pytest.raises(ConfigError, match='give one'):
    StaticConfig(static_index=1, static_groups=(5, 0, 3))


@pytest.mark.parametrize('name', ['reinforce', 'gumbel', 'fedex', 'pfedex'])
def test_a_round_where_every_client_failed_penalises_each_choice_boundedly(
    name):
  """Every client failed (the server rejected the aggregate): each client's
  configuration becomes less likely, by a bounded step: one bad round bans
  nothing (gumbel once divided the equal penalties by their zero spread)."""
  params = {'w': jnp.ones((3, 2))}
  policy = create(name, SPACE, train_counts=np.array([10, 20, 30, 40]),
                  params_like=params)
  state = policy.init(jax.random.PRNGKey(0), 4)
  if name == 'reinforce':  # rewards so far; with none, a 0 teaches nothing
    state = state._replace(baseline=jnp.float32(0.6))
  clients, choices = jnp.arange(4), jnp.array([0, 4, 1, 2])
  fb = Feedback(clients, choices, jnp.array([0.3, -0.2, jnp.nan, 0.1]),
                jnp.float32(40.0), jnp.float32(0.1), jnp.full(4, 2.0),
                jnp.array([2.0, jnp.inf, 3.0, 2.5]), jnp.array([5, 6, 7, 8]),
                params, jnp.ones(4), jnp.ones(4, bool))
  picked = lambda s: np.asarray(policy.probabilities(s, clients))[
      np.arange(4), choices]
  before, after = picked(state), picked(policy.update(state, fb))
  assert np.all(np.isfinite(after))
  assert np.all(after > 0.2 * before), (before, after)  # nothing banned
  if name == 'pfedex':  # one shared hypernetwork: the picks fall together
    assert np.sum(np.log(after)) < np.sum(np.log(before)) - 1e-3
  else:
    assert np.all(after < before - 1e-4), (before, after)


def test_prefer_breaks_ties_by_the_shared_preference_not_index_0():
  """Clients 0 and 1 learned to avoid every configuration but 3; clients 2
  and 3 were never in a round (uniform rows). They fine-tune with 3, the
  configuration the clients prefer together, not with configuration 0 (the
  smallest lr and steps); a policy that learned nothing gives the expected
  configuration, off the grid."""
  policy = gumbel(SPACE, optax.sgd(0.5))
  fresh = policy.init(None, 4)
  everyone = jnp.arange(4)
  hp, choices = policy.prefer(fresh, everyone, None)
  np.testing.assert_array_equal(choices, -1)
  np.testing.assert_allclose(hp.lr, np.mean(SPACE.lr), rtol=1e-6)
  np.testing.assert_array_equal(hp.local_steps,
                                np.round(np.mean(SPACE.local_steps)))
  state = fresh
  for z in (0, 1, 2, 4, 5):  # a cost for every choice but 3
    state = policy.update(state, _feedback([0, 1], [z, z], credit=[1.0, 0.5]))
  hp, choices = policy.prefer(state, everyone, None)
  np.testing.assert_array_equal(choices, [3, 3, 3, 3])
  np.testing.assert_allclose(hp.lr, SPACE.lr[3])


def test_normalised_gumbel_credit_of_a_lone_client_is_one_unit():
  """One client in the round: its credit has no spread to divide by. Once
  it was divided by 1e-12 (a credit of 1e-3 became 1e9 and saturated the
  row); now it moves the row as a unit credit of its sign does."""
  policy = gumbel(SPACE, optax.sgd(0.5), scope='client')
  state = policy.init(None, 4)
  for credit, worse in ((1e-3, True), (-1e-3, False)):
    new = policy.update(state, _feedback([2], [3], credit=[credit]))
    unit = policy.update(state, _feedback([2], [3], credit=[np.sign(credit)]))
    p = np.asarray(policy.probabilities(new, jnp.array([2])))[0]
    np.testing.assert_allclose(
        p, np.asarray(policy.probabilities(unit, jnp.array([2])))[0],
        rtol=1e-5)
    assert (p[3] < 1 / 6) == worse and 0.05 < p[3] < 0.5, p


def test_a_diverged_client_is_penalised_beyond_every_client_that_trained():
  diverged = jnp.array([False, True, False, False])
  values = jnp.array([0.2, jnp.nan, -0.1, 0.5])
  got = np.asarray(penalized(values, diverged))
  np.testing.assert_allclose(got[[0, 2, 3]], [0.2, -0.1, 0.5])
  assert got[1] == pytest.approx(0.5 + 3 * np.std([0.2, -0.1, 0.5]), rel=1e-5)
  # gumbel: the diverged client's configuration becomes less likely even
  # though its dL/dc is 0 (its update was left out).
  policy = gumbel(SPACE, optax.sgd(0.5))
  state = policy.init(None, 4)
  fb = _feedback([0, 1, 2, 3], [0, 4, 1, 2], credit=[0.2, 0.0, -0.1, 0.5])
  new = policy.update(state, fb._replace(failed=diverged))
  assert float(policy.probabilities(new, jnp.array([1]))[0, 4]) < 1 / 6 - 0.05
  # reinforce: the diverged client gets reward 0, the others the accuracy.
  policy = reinforce(SPACE, optax.sgd(1.0), baseline_decay=None)
  new = policy.update(policy.init(None, 4), fb._replace(failed=diverged))
  p = np.asarray(policy.probabilities(new, jnp.arange(4)))
  assert p[0, 0] > 1 / 6 and p[1, 4] == pytest.approx(1 / 6)
