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

from pfhpo.federated import Execution, make_round, put_rows, take_rows
from pfhpo.federated.credit import one_round
from pfhpo.federated.local_update import make_local_update
from pfhpo.models import Model, cross_entropy
from pfhpo.policies import (Policy, fedex, gumbel, pfedex, random, reinforce,
                            static)
from pfhpo.policies.space import hparams_for, make_space
from pfhpo.types import ClientBatch, RoundBatch, ValBatch

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


def problem(seed=0, nv=32):
  """Training data and the clients' own validation splits (labels flipped
  like their training data), and a clean server validation set."""
  rng = np.random.default_rng(seed)
  w_true = rng.normal(size=D)

  def client_split(n):
    x = rng.normal(size=(C, n, D)).astype(np.float32)
    y = (x @ w_true > 0).astype(np.int32)
    y[FLIPPED] = 1 - y[FLIPPED]
    return x, y

  x, y = client_split(N)
  xv, yv = client_split(nv)
  xs = rng.normal(size=(500, D)).astype(np.float32)
  val = ValBatch(xs, (xs @ w_true > 0).astype(np.int32),
                 np.full(500, 1 / 500, np.float32))
  return RoundBatch(np.arange(C), ClientBatch(x, y, np.full(C, N, np.int32)),
                    val, ClientBatch(xv, yv, np.full(C, nv, np.int32)))


def run_policy(policy, rounds=40, chunk=None):
  """Runs `rounds` rounds with every client; (probabilities f32[C, H] of the
  final policy, the per-round RoundMetrics)."""
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         policy, execution=Execution(client_chunk=chunk))
  step = jax.jit(algorithm.apply)
  batch = problem()
  state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
  history = []
  for r in range(rounds):
    state, rows, metrics = step(state, rows, batch, jax.random.PRNGKey(r))
    history.append(metrics)
  return np.asarray(policy.probabilities(state.policy, batch.clients)), history


@pytest.mark.parametrize('chunk', [None, 2])
def test_gumbel_finds_each_groups_best_configuration(chunk):
  probs, history = run_policy(gumbel(SPACE, optax.sgd(0.5)), chunk=chunk)
  p_best = probs[np.arange(C), BEST]
  assert p_best.min() > 0.8, p_best
  assert float(history[-1].val_acc) > 0.9
  assert not any(bool(m.rejected) for m in history)  # an ordinary run


def test_the_feature_policy_gives_unseen_clients_their_groups_configuration():
  """Scope 'features' with phi_i = +-1 (flipped or clean): trained on six
  clients, the two never in a round (3: flipped, 7: clean) read g_w(phi)
  alone and prefer their group's best configuration; per-client rows
  ('client') leave them uniform."""
  phi = np.where(FLIPPED, 1.0, -1.0)[:, None].astype(np.float32)  # f32[C, 1]
  trained, unseen = np.array([0, 1, 2, 4, 5, 6]), np.array([3, 7])
  batch = problem()
  part = lambda b: ClientBatch(b.x[trained], b.y[trained], b.count[trained])
  batch = RoundBatch(trained, part(batch.train), batch.val,
                     part(batch.local_val))
  for scope, low, high in (('features', 0.8, 1.0), ('client', 0.3, 0.34)):
    policy = gumbel(SPACE, optax.sgd(0.5), scope, features=phi)
    algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                           policy)
    step = jax.jit(algorithm.apply)
    state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
    for r in range(20):
      state, rows, _ = step(state, rows, batch, jax.random.PRNGKey(r))
    p = np.asarray(policy.probabilities(state.policy, jnp.asarray(unseen)))
    p_best = p[np.arange(2), BEST[unseen]]
    assert np.all((low < p_best) & (p_best < high)), (scope, p_best)


def test_the_feature_policy_observes_each_clients_loss_before_it_trains():
  """'pre_loss': before proposing, the round records log L_train_i(theta)
  of the server model it starts from, each client's own training data."""
  phi = np.zeros((C, 1), np.float32)
  policy = gumbel(SPACE, optax.sgd(0.5), 'features', features=phi)
  assert 'pre_loss' in policy.needs
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         policy)
  step = jax.jit(algorithm.apply)
  batch = problem()
  state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
  assert np.isnan(np.asarray(state.policy.seen_loss)).all()
  state, rows, _ = step(state, rows, batch, jax.random.PRNGKey(0))
  params = state.server.params  # what round 2 starts from
  state, rows, _ = step(state, rows, batch, jax.random.PRNGKey(1))
  x, y = batch.train.x, batch.train.y
  logits = x @ np.asarray(params['w']) + np.asarray(params['b'])  # [C, N, 2]
  want = np.log(np.asarray(cross_entropy(
      logits.reshape(C * N, 2), y.reshape(-1))).reshape(C, N).mean(1))
  np.testing.assert_allclose(state.policy.seen_loss, want, rtol=1e-5)


def test_baselines_do_not_separate_the_groups():
  """Random stays uniform and static on its one configuration. REINFORCE
  takes Williams' (1992) step on A log p(z_i) with one reward for the
  round: under SGD at lr, client i's row of logits moves by

      alpha_i' - alpha_i = lr (R - b) (onehot(z_i) - softmax(alpha_i))

  R the aggregate's validation accuracy, b the baseline before the round
  (then b' = 0.9 b + 0.1 R). The factor lr (R - b) is the round's, not the
  client's: two clients that drew the same configuration from the same
  row move alike, one flipped and one clean, so it cannot separate the
  groups."""
  probs, _ = run_policy(random(SPACE))
  np.testing.assert_allclose(probs, 1 / 3)
  probs, _ = run_policy(static(SPACE, 1))
  np.testing.assert_array_equal(probs[:, 1], 1.0)
  lr = 0.5
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         reinforce(SPACE, optax.sgd(lr), baseline_decay=0.9))
  step = jax.jit(algorithm.apply)
  batch = problem()
  state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
  onehot = np.eye(SPACE.size)
  for r in range(4):  # from round 1 on, b != 0 and the rows differ
    before = state.policy
    p = np.asarray(jax.nn.softmax(before.logits))  # f32[C, H]
    state, rows, m = step(state, rows, batch, jax.random.PRNGKey(r))
    assert int(m.dropped_clients) == 0 and not bool(m.rejected)
    reward, b = float(m.val_acc), float(before.baseline)
    z = np.asarray(m.choices)  # i32[C]
    moved = np.asarray(state.policy.logits - before.logits)  # f32[C, H]
    np.testing.assert_allclose(moved, lr * (reward - b) * (onehot[z] - p),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state.policy.baseline, 0.9 * b + 0.1 * reward,
                               rtol=1e-6)
    assert abs(reward - b) > 0.05  # a move the closed form can see
    if r == 0:  # every row uniform before: the same draw, the same row
      pairs = [(i, j) for i in np.flatnonzero(FLIPPED)
               for j in np.flatnonzero(~FLIPPED) if z[i] == z[j]]
      assert pairs
      for i, j in pairs:
        np.testing.assert_array_equal(state.policy.logits[i],
                                      state.policy.logits[j])


def test_fedex_concentrates_on_the_best_shared_configuration():
  """FedEx's objective is each client's validation loss after local training
  on its own data; on this problem one configuration is best for every
  client. The ground truth comes from running each configuration alone."""
  local_val = lambda i: static(SPACE, i)._replace(needs=frozenset({'local_val'}))
  mean_loss = [np.mean([float(m.local_val_loss) for m in run_policy(
      local_val(i), rounds=20)[1]]) for i in range(SPACE.size)]
  best = int(np.argmin(mean_loss))
  assert mean_loss[best] < min(np.delete(mean_loss, best)) - 0.05, mean_loss
  probs, history = run_policy(fedex(SPACE), rounds=20)
  np.testing.assert_allclose(probs, probs[:1].repeat(C, 0))  # one shared theta
  assert probs[0, best] > 0.95, probs[0]
  # Personalised FedEx learns the same per client, from its hypernetwork.
  probs, _ = run_policy(pfedex(SPACE, optax.adam(0.05)), rounds=40)
  assert probs[:, best].min() > 0.8, probs[:, best]


FLAT = lambda t: jnp.concatenate([t['w'].ravel(), t['b'].ravel()])


def _round_from_theta(policy, credit=None, key=jax.random.PRNGKey(3)):
  """One round of every client of `problem()` from a nonzero model theta;
  (theta, batch, new state, metrics, each client's theta_i trained again
  outside the round, the weights w_i, theta_g flattened)."""
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         policy, credit)
  batch = problem()
  state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
  # A nonzero starting model, so that a lost theta term shows.
  theta = {'w': jnp.full((D, 2), 0.1).at[:, 1].set(-0.2), 'b': jnp.ones(2)}
  state = state._replace(server=state.server._replace(params=theta))
  new, _, metrics = jax.jit(algorithm.apply)(state, rows, batch, key)
  one = make_local_update(linear_model(), lambda x: x, SPACE.max_steps,
                          SPACE.max_batch)
  keys = jax.random.split(jax.random.split(key)[1], C)
  hp = metrics.hparams
  trained = [one(theta, jnp.asarray(batch.train.x[i]),
                 jnp.asarray(batch.train.y[i]), batch.train.count[i],
                 *(v[i] for v in hp.sgd), keys[i])[0]
             for i in range(C)]
  w = batch.train.count / batch.train.count.sum()
  theta_g = FLAT(theta) + sum(w[i] * (FLAT(trained[i]) - FLAT(theta))
                              for i in range(C))
  return theta, batch, new, metrics, trained, w, theta_g


def _val_loss(val: ValBatch):
  """The weighted validation loss of the linear model's flat parameters."""
  def loss(v):
    params = {'w': v[:D * 2].reshape(D, 2), 'b': v[D * 2:]}
    logits = linear_model().apply(params, jnp.asarray(val.x))
    return jnp.sum(val.weight * cross_entropy(logits, val.y))
  return loss


@pytest.mark.parametrize('t', [1.0, 0.5])
def test_the_rounds_one_round_credit_is_its_closed_form(t):
  """dL/dc_i from the compiled round, at c = t 1, equals w_i <dL/dtheta(c),
  theta_i - theta> with theta(c) = theta + t sum_i w_i (theta_i - theta),
  and theta_i trained again outside the round: a sign or a term lost fails
  it (w_i <dL/dtheta(c), theta_i>, the update's theta left in, differs:
  nonzero theta here). Whatever t, the server moves to, and reports the
  loss of, the aggregate at c = 1."""
  theta, batch, new, metrics, trained, w, theta_g = _round_from_theta(
      gumbel(SPACE, optax.sgd(0.5)), one_round(t))
  val_loss = _val_loss(batch.val)
  flat = FLAT
  np.testing.assert_allclose(flat(new.server.params), theta_g, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(metrics.val_loss, val_loss(theta_g), rtol=1e-5)
  g = jax.grad(val_loss)(flat(theta) + t * (theta_g - flat(theta)))
  closed = np.array([w[i] * jnp.dot(g, flat(trained[i]) - flat(theta))
                     for i in range(C)])
  np.testing.assert_allclose(metrics.credit, closed, rtol=2e-4, atol=1e-6)
  other = np.array([w[i] * jnp.dot(g, flat(trained[i]))
                    for i in range(C)])  # theta left in
  assert np.max(np.abs(closed - other)) > 100 * 2e-4 * np.max(np.abs(closed))


def _fixed_choices(choices):
  """A policy that gives client i configuration choices[i], every round."""
  choices = jnp.asarray(choices, jnp.int32)

  def propose(state, clients, key):
    return hparams_for(DIVERGE, choices[clients]), choices[clients]

  return Policy(lambda key, n: (), propose, lambda state, fb: state, propose,
                None, lambda state, clients: {})


DIVERGE = make_space([0.03, 1e38], [5], [16])  # lr 1e38 overflows float32


def _one_round(policy, features=lambda x: x, server_opt=optax.sgd(1.0),
               opt_state=lambda s: s):
  """(server before, server after, metrics) of one round of every client
  from the linear model's initial state (its optimizer state mapped by
  `opt_state`)."""
  algorithm = make_round(linear_model(), features, server_opt, DIVERGE, policy)
  state, rows = algorithm.init(jax.random.PRNGKey(0), C)
  state = state._replace(server=state.server._replace(
      opt_state=opt_state(state.server.opt_state)))
  new, _, metrics = jax.jit(algorithm.apply)(state, rows, problem(),
                                              jax.random.PRNGKey(0))
  return state.server, new.server, metrics


def test_diverged_clients_are_left_out_and_the_rest_renormalised():
  bad = np.arange(C) % 3 == 0  # clients 0, 3, 6 use lr 1e38
  server, new, metrics = _one_round(_fixed_choices(bad.astype(int)))
  assert int(metrics.dropped_clients) == 3
  # FedAvg over the kept clients alone, written out from solo updates with
  # the keys the round gives each position.
  batch, params = problem().train, server.params
  one = make_local_update(linear_model(), lambda x: x, 5, 16)
  keys = jax.random.split(jax.random.split(jax.random.PRNGKey(0))[1], C)
  w = batch.count / batch.count.sum()
  want = jax.tree_util.tree_map(jnp.zeros_like, params)
  for i in np.flatnonzero(~bad):
    theta_i, _ = one(params, jnp.asarray(batch.x[i]), jnp.asarray(batch.y[i]),
                     batch.count[i],
                     jnp.float32(0.03), jnp.int32(5), jnp.int32(16), keys[i])
    want = jax.tree_util.tree_map(
        lambda a, t, p: a + w[i] / w[~bad].sum() * (t - p), want, theta_i,
        params)
  for got, d, p in zip(*map(jax.tree_util.tree_leaves, (new.params, want,
                                                        params))):
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, p + d, atol=1e-5)


def test_a_round_where_every_client_diverges_keeps_the_server_state():
  # Features x1e3: the first step at lr 1e38 overflows for every client;
  # momentum and a nonzero optimizer state would move the server on its own.
  server, new, metrics = _one_round(
      _fixed_choices(np.ones(C, int)), lambda x: 1e3 * x,
      optax.sgd(1.0, momentum=0.9),
      lambda s: jax.tree_util.tree_map(lambda a: a + 0.1, s))
  assert int(metrics.dropped_clients) == C
  assert not bool(metrics.updated) and not bool(metrics.rejected)
  for a, b in zip(jax.tree_util.tree_leaves(new),
                  jax.tree_util.tree_leaves(server)):
    np.testing.assert_array_equal(a, b)


def test_an_exploded_aggregate_is_rejected_and_every_client_penalised():
  """No client diverges, but the aggregate's validation loss (validation
  features x1e4: confident logits, wrong on the examples it misclassifies)
  is far above ten times a guess's (10 log 2): the server keeps its model
  and optimizer state, and the policy hears that every client failed."""
  policy = _fixed_choices(np.zeros(C, int))._replace(
      init=lambda key, n: jnp.zeros(n, bool),
      update=lambda state, fb: fb.failed)
  algorithm = make_round(linear_model(), lambda x: x,
                         optax.sgd(1.0, momentum=0.9), DIVERGE, policy)
  state, rows = algorithm.init(jax.random.PRNGKey(0), C)
  state = state._replace(server=state.server._replace(
      opt_state=jax.tree_util.tree_map(lambda a: a + 0.1,
                                       state.server.opt_state)))
  step = jax.jit(algorithm.apply)
  batch = problem()
  loud = batch._replace(val=batch.val._replace(x=1e4 * batch.val.x))
  new, _, metrics = step(state, rows, loud, jax.random.PRNGKey(0))
  assert int(metrics.dropped_clients) == 0
  assert float(metrics.val_loss) > 10 * np.log(2)
  assert bool(metrics.rejected) and not bool(metrics.updated)
  for a, b in zip(jax.tree_util.tree_leaves(new.server),
                  jax.tree_util.tree_leaves(state.server)):
    np.testing.assert_array_equal(a, b)
  assert np.all(np.asarray(new.policy))
  # The same round on the ordinary validation set is accepted.
  new, _, metrics = step(state, rows, batch, jax.random.PRNGKey(0))
  assert not bool(metrics.rejected) and bool(metrics.updated)
  assert not np.any(np.asarray(new.policy))
  assert not np.array_equal(new.server.params['w'], state.server.params['w'])


def test_per_client_rows_go_to_the_round_and_back_into_the_host_table():
  """An algorithm's per-client state: the round's rows leave the host table,
  pass through `apply`, and are written back in place; other rows stay."""
  table = {'head': np.arange(C * 3, dtype=np.float32).reshape(C, 3)}
  clients = np.array([6, 1, 4])
  rows = take_rows(table, clients)
  np.testing.assert_array_equal(rows['head'], table['head'][clients])
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         static(SPACE, 1))
  state, empty = algorithm.init(jax.random.PRNGKey(0), C)
  assert empty == ()  # the policy round keeps no per-client state
  batch = problem()
  batch = batch._replace(clients=clients, train=jax.tree_util.tree_map(
      lambda a: a[clients], batch.train))
  _, back, _ = jax.jit(algorithm.apply)(state, rows, batch,
                                        jax.random.PRNGKey(0))
  before = table['head'].copy()
  put_rows(table, clients, jax.tree_util.tree_map(lambda r: r + 100.0, back))
  np.testing.assert_array_equal(table['head'][clients], before[clients] + 100)
  others = np.setdiff1d(np.arange(C), clients)
  np.testing.assert_array_equal(table['head'][others], before[others])
