"""The credit over K rounds (`pfhpo.federated.horizon`) on the round's
constructed problem (`test_round.py`): the compiled round's credit against
finite differences of the K-round validation loss, computed again outside
the round with a plain loop over clients and rounds; the first-order
estimator against its closed form; the sampled one against the exact
(unbiased over its samples, equal with every client sampled); a rejected
round inside the window."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo.federated import make_round
from pfhpo.federated.client import sgd_client
from pfhpo.federated.cohort import make_cohort
from pfhpo.federated.divergence import make_diverged
from pfhpo.federated.credit import ESTIMATORS, make_credit
from pfhpo.federated.estimators import (SampledInput, first_order,
                                        sample_inputs)
from pfhpo.federated.horizon import (ClientUpdates, RoundRecord,
                                     horizon_credit, step_at)
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.federated.server import (init_server, server_optimizer,
                                    with_server_hparams)
from pfhpo.policies import gumbel
from pfhpo.policies.space import server_space
from pfhpo.types import ClientBatch, ClientHParams, Feedback
from test_round import C, SPACE, linear_model, problem, _val_loss

K = 3
FLAT = lambda p: jnp.concatenate([p['w'].ravel(), p['b']])
UNFLAT = lambda v: {'w': v[:-2].reshape(-1, 2), 'b': v[-2:]}


def _rounds(policy, credit, server_opt, rounds=K, batch=None):
  """`rounds` compiled rounds of `policy` and `credit` from the initial
  state on `batch` (unset: `problem()`), round r keyed PRNGKey(r): the
  initial state, the batch, and each
  round's metrics; with a credit over K = `rounds` rounds, the last
  round's credit is the first round's clients'."""
  algorithm = make_round(linear_model(), lambda x: x, server_opt, SPACE,
                         policy, credit)
  batch = problem() if batch is None else batch
  state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
  start = state
  step = jax.jit(algorithm.apply)
  metrics = []
  for r in range(rounds):
    state, rows, m = step(state, rows, batch, jax.random.PRNGKey(r))
    assert int(m.dropped_clients) == 0 and bool(m.updated)
    metrics.append(m)
  return start, batch, metrics, state


def _k_round_loss(start, batch, metrics, server_opt, axis=None):
  """F(c): the validation loss after the rounds of `metrics`, replayed
  client by client with the configurations they drew, round 0 aggregated
  with coefficients c, the others with ones (server SGD through optax, at the server configuration
  each round drew from `axis` where there is one)."""
  one = make_local_update(linear_model(), lambda x: x, SPACE.max_steps,
                          SPACE.max_batch)
  train = batch.train
  w = train.count / train.count.sum()
  val_loss = _val_loss(batch.val)

  def loss(c):
    theta, opt_state = start.server.params, start.server.opt_state
    for r, m in enumerate(metrics):
      keys = jax.random.split(jax.random.split(jax.random.PRNGKey(r))[1], C)
      # client by client, in order (a loop, not a vmap)
      trained = jax.lax.map(lambda i: FLAT(one(
          theta, jnp.asarray(train.x)[i], jnp.asarray(train.y)[i],
          jnp.asarray(train.count)[i], *(v[i] for v in m.hparams.sgd),
          keys[i])[0]), jnp.arange(C))  # f32[C, P]
      coeffs = c if r == 0 else jnp.ones(C)
      delta = jnp.sum((w * coeffs)[:, None] * (trained - FLAT(theta)), 0)
      if axis is not None:
        opt_state = with_server_hparams(opt_state, axis, m.server_choice)
      updates, opt_state = server_opt.update(UNFLAT(-delta), opt_state, theta)
      theta = optax.apply_updates(theta, updates)
    return val_loss(FLAT(theta))

  # Compiled once: the same loop of per-client calls, not dispatched op by
  # op, each round's traced once.
  return jax.jit(loss), jax.jit(one)


SERVERS = {'sgd': optax.sgd(1.0), 'momentum': optax.sgd(0.5, momentum=0.9),
           'drawn': server_optimizer('sgd', 1.0, injected=True)}
AXIS = server_space((0.5, 1.0), (0.0, 0.5), 'sgd')


@pytest.mark.parametrize('server,t', [('sgd', 0.5), ('momentum', 1.0),
                                      ('drawn', 0.5)])
def test_the_exact_credit_is_finite_differences_of_the_k_round_loss(
    server, t):
  """dF/dc_i of round 0, from the compiled round 2 (the window of 3 rounds
  closing), equals central finite differences of F, the validation loss
  after 3 rounds with round 0's coefficients perturbed, replayed outside
  the round ('drawn': each round's server
  step at the configuration the policy drew for it); and it is not the
  one-round credit (which K = 1 gives)."""
  server_opt = SERVERS[server]
  axis = AXIS if server == 'drawn' else None
  start, batch, metrics, _ = _rounds(
      gumbel(SPACE, optax.sgd(0.5), server=axis),
      make_credit(K, 'exact', at=t), server_opt)
  for m in metrics[:-1]:  # no window has closed yet
    np.testing.assert_array_equal(m.credit, 0.0)
  if axis is not None:  # the rounds stepped at different configurations
    assert len({int(m.server_choice) for m in metrics}) > 1
  loss, _ = _k_round_loss(start, batch, metrics, server_opt, axis)
  eps = 1e-2
  at = jnp.full(C, t)
  fd = np.array([(loss(at.at[i].add(eps)) - loss(at.at[i].add(-eps)))
                 / (2 * eps) for i in range(C)])
  credit = np.asarray(metrics[-1].credit)
  np.testing.assert_allclose(credit, fd, rtol=3e-2, atol=2e-5)
  np.testing.assert_allclose(credit, jax.jit(jax.grad(loss))(at), rtol=1e-3,
                             atol=1e-6)
  one_round = _rounds(gumbel(SPACE, optax.sgd(0.5)),
                      make_credit(1, at=t), server_opt, rounds=1)[2][0].credit
  assert np.max(np.abs(credit - one_round)) > 0.1 * np.max(np.abs(credit))


@pytest.mark.parametrize('server', ['sgd', 'momentum'])
def test_the_first_order_credit_is_its_closed_form(server):
  """With local training's Jacobian taken as the identity, the credit of
  round 0's client i is eta a w_i <g, Delta_0i>, Delta_0i its round-0
  update, g the validation gradient at the last model moved back by
  (1 - t) eta a sum_i w_i Delta_0i, a = 1 + beta + beta^2 the momentum's
  carry over the 3 rounds (beta = 0: a = 1)."""
  server_opt = SERVERS[server]
  eta, beta = (1.0, 0.0) if server == 'sgd' else (0.5, 0.9)
  t = 0.5
  start, batch, metrics, end = _rounds(
      gumbel(SPACE, optax.sgd(0.5)), make_credit(K, 'first_order', at=t),
      server_opt)
  _, one = _k_round_loss(start, batch, metrics, server_opt)
  train, theta = batch.train, start.server.params
  keys = jax.random.split(jax.random.split(jax.random.PRNGKey(0))[1], C)
  hp = metrics[0].hparams
  updates = [FLAT(one(theta, jnp.asarray(train.x[i]), jnp.asarray(train.y[i]),
                      train.count[i], *(v[i] for v in hp.sgd), keys[i])[0])
             - FLAT(theta) for i in range(C)]
  w = train.count / train.count.sum()
  carry = eta * (1 + beta + beta**2)
  at = FLAT(end.server.params) - (1 - t) * carry * sum(
      w[i] * updates[i] for i in range(C))
  g = jax.grad(_val_loss(batch.val))(at)
  closed = np.array([carry * w[i] * jnp.dot(g, updates[i]) for i in range(C)])
  np.testing.assert_allclose(metrics[-1].credit, closed, rtol=1e-3,
                             atol=1e-6)


# Unequal example counts, so that each client's share s_i = D_i / D is its own.
COUNTS = np.array([64, 12, 40, 24, 56, 16, 48, 32], np.int32)


@pytest.fixture(scope='module')
def window():
  """The window of a compiled 4-round exact credit after three rounds on
  clients of unequal sizes (`COUNTS`), server SGD with momentum: rounds 0,
  1 and 2 as the window holds them, each with what its clients used; and
  `credit(estimator, later, at)`, round 0's credit through the records
  `later` (stacked [W, ...]) as `estimator` takes them, at c = `at` 1,
  with 'sampled' records built by `sampled(record, positions)`."""
  server_opt = SERVERS['momentum']
  batch = problem()
  batch = batch._replace(train=batch.train._replace(count=COUNTS))
  _, batch, _, state = _rounds(
      gumbel(SPACE, optax.sgd(0.5)), make_credit(4, 'exact'), server_opt,
      rounds=3, batch=batch)
  records = [jax.tree_util.tree_map(lambda w: w[i], state.window.rounds)
             for i in range(3)]
  np.testing.assert_allclose(records[0].updates.shares,
                             COUNTS / COUNTS.sum(), rtol=1e-6)
  model = linear_model()
  cohort = make_cohort(
      sgd_client(make_local_update(model, lambda x: x, SPACE.max_steps,
                                   SPACE.max_batch)),
      make_masked_loss(model, lambda x: x), make_diverged(2), True, None,
      None, False)
  val_loss = lambda p: _val_loss(batch.val)(FLAT(p))
  step = step_at(server_opt)

  def credit(estimator, later, at):
    return horizon_credit(
        step, ESTIMATORS[estimator](C).replay(cohort, step), val_loss,
        records[0], later, at)

  return records, jax.jit(credit, static_argnums=(0, 2))


def sampled(record, positions):
  """`record` (an exact one) as the 'sampled' estimator keeps it, its
  clients at `positions` (i32[m]) trained again."""
  inputs = record.inputs
  take = lambda tree: jax.tree_util.tree_map(lambda a: a[positions], tree)
  return record._replace(inputs=SampledInput(
      positions, take(inputs.rows), take(inputs.train), take(inputs.hparams),
      jax.random.split(inputs.key, C)[positions]))


stack = lambda *rs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *rs)


def test_the_sampled_credit_is_unbiased_and_exact_with_every_client(window):
  """The 2-round credit of round 0 through round 1 with m = 1 of round 1's
  clients trained again: averaged over the C clients it could sample, it
  is the exact credit (the credit is linear in round 1's Jacobian, which
  each sample estimates without bias), though no single sample is; with
  every client sampled it is the exact credit. Both at c = 1, where the
  exact credit's replay is the run's (elsewhere it trains from another
  model, the sampled one from the run's). The clients' sizes differ, so a
  sample scaled by another client's share s_j is off."""
  records, credit = window
  later = records[1]
  exact = np.asarray(credit('exact', stack(later), 1.0))
  scale = np.max(np.abs(exact))
  one = lambda positions: np.asarray(credit(
      'sampled', stack(sampled(later, positions)), 1.0))
  np.testing.assert_allclose(one(jnp.arange(C)[::-1]), exact, rtol=1e-4,
                             atol=1e-6 * scale)
  singles = np.stack([one(jnp.array([j])) for j in range(C)])
  np.testing.assert_allclose(singles.mean(0), exact, rtol=1e-4,
                             atol=1e-5 * scale)
  assert np.min(np.max(np.abs(singles - exact), axis=1)) > 1e-2 * scale
  first_order = np.asarray(credit('first_order', stack(
      later._replace(inputs=())), 1.0))
  assert np.max(np.abs(first_order - exact)) > 1e-2 * scale


def test_the_sampled_credit_over_three_rounds_is_unbiased_over_both_samples(
    window):
  """T = 3, m = 2 of round 1's and of round 2's C clients: the credit is
  a product of one factor per later round, each linear in its own
  round's sample, and the samples are independent, so its mean over all
  28 x 28 pairs of samples (the exact expectation) is the exact credit at
  c = 1, though no single pair's credit is. At c = 1/2 the mean over the
  pairs is the credit with every client sampled (the later rounds'
  values are the run's whatever the sample, so each round's Jacobian is
  still estimated without bias), and that is not the exact credit, whose
  later rounds train from the model c = 1/2 gives: the sampled ones keep
  the run's aggregates. Off by one round (T = 2) or with another client's
  share, the means are off."""
  records, credit = window
  pairs = np.array([(a, b) for a in range(C) for b in range(a + 1, C)])
  first, second = np.meshgrid(np.arange(len(pairs)), np.arange(len(pairs)),
                              indexing='ij')
  both = jnp.asarray(pairs[first.ravel()]), jnp.asarray(pairs[second.ravel()])

  def mean_over_samples(at):
    each = jax.jit(jax.vmap(lambda p1, p2: credit(
        'sampled', stack(sampled(records[1], p1), sampled(records[2], p2)),
        at)))(*both)  # [28 * 28, C]
    return np.asarray(each)

  every = lambda at: np.asarray(credit('sampled', stack(
      sampled(records[1], jnp.arange(C)), sampled(records[2], jnp.arange(C))),
      at))
  exact = lambda at: np.asarray(credit('exact', stack(*records[1:]), at))
  each = mean_over_samples(1.0)
  want = exact(1.0)
  scale = np.max(np.abs(want))
  np.testing.assert_allclose(every(1.0), want, rtol=1e-4, atol=1e-6 * scale)
  np.testing.assert_allclose(each.mean(0), want, rtol=1e-4,
                             atol=1e-5 * scale)
  assert np.min(np.max(np.abs(each - want), axis=1)) > 1e-3 * scale
  two_rounds = np.asarray(credit('exact', stack(records[1]), 1.0))
  assert np.max(np.abs(two_rounds - want)) > 1e-2 * scale
  half = mean_over_samples(0.5).mean(0)
  np.testing.assert_allclose(half, every(0.5), rtol=1e-4,
                             atol=1e-5 * np.max(np.abs(half)))
  assert np.max(np.abs(half - exact(0.5))) > 1e-3 * np.max(np.abs(half))


def test_the_compiled_sampled_credit_of_every_client_is_the_exact_one():
  """In the compiled round (a window of 3 rounds), the 'sampled' credit
  with `horizon_sample` above the round's clients trains all of them again
  and reports the exact credit (at c = 1)."""
  credit = lambda estimator: _rounds(
      gumbel(SPACE, optax.sgd(0.5)),
      make_credit(K, estimator, sample=2 * C, at=1.0),
      SERVERS['sgd'])[2][-1].credit
  exact = np.asarray(credit('exact'))
  np.testing.assert_allclose(credit('sampled'), exact, rtol=1e-4,
                             atol=1e-6 * np.max(np.abs(exact)))


def test_a_rejected_round_inside_the_window_passes_no_credit():
  """A later round whose aggregate the server rejected leaves the replayed
  model where it was: the credit is the window's without that round, not
  one through the model the server threw away."""
  rng = np.random.default_rng(0)
  opt = optax.sgd(1.0, momentum=0.5)
  server = init_server(opt, {'w': jnp.asarray(rng.normal(size=3), jnp.float32)})

  def record(scale, updated):
    updates = jnp.asarray(scale * rng.normal(size=(2, 3)), jnp.float32)
    shares = jnp.array([0.4, 0.6])
    return RoundRecord(server, jnp.arange(2), jnp.zeros(2, jnp.int32),
                       jnp.zeros(2, bool), jnp.zeros(2), jnp.asarray(updated),
                       jnp.int32(-1), ClientUpdates({'w': updates}, shares,
                                     {'w': shares @ updates}), ())

  stack = lambda *rs: jax.tree_util.tree_map(lambda *a: jnp.stack(a), *rs)
  first, kept, thrown = record(1.0, True), record(1.0, True), record(1e3, False)
  loss = lambda p: jnp.sum((p['w'] - 1.0)**2)
  step = step_at(opt)
  credit = lambda later: horizon_credit(
      step, first_order().replay(None, step), loss, first, later, 0.5)
  without = credit(stack(kept))
  np.testing.assert_array_equal(credit(stack(kept, thrown)), without)
  taken = credit(stack(kept, thrown._replace(updated=jnp.asarray(True))))
  assert np.max(np.abs(taken - without)) > 1.0


@pytest.mark.parametrize('scope', ['client', 'global', 'prior', 'features'])
def test_each_scope_moves_the_rows_of_the_round_whose_window_closed(scope):
  """With a window of 2 rounds, round 0 leaves the policy untouched and
  round 1 moves it by round 0's clients' credits: the rows of every scope
  after round 1 are those of one `update` with round 0's choices and the
  round's reported credit."""
  features = np.eye(C, 3, dtype=np.float32)
  policy = gumbel(SPACE, optax.sgd(0.5), scope=scope, features=features)
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         policy, make_credit(2, 'first_order'))
  batch = problem()
  state, rows = algorithm.init(jax.random.PRNGKey(0), C, batch)
  step = jax.jit(algorithm.apply)
  first, rows, m0 = step(state, rows, batch, jax.random.PRNGKey(0))
  leaves = lambda s: jax.tree_util.tree_leaves(s.policy.logits)
  for a, b in zip(leaves(first), leaves(state)):
    np.testing.assert_array_equal(a, b)
  second, rows, m1 = step(first, rows, batch, jax.random.PRNGKey(1))
  assert np.max(np.abs(m1.credit)) > 0
  fb = Feedback(batch.clients, m0.choices, m1.credit, m1.val_loss, m1.val_acc,
                jnp.zeros(C), failed=jnp.zeros(C, bool))
  want = policy.update(first.policy._replace(
      seen_loss=second.policy.seen_loss), fb)
  for a, b in zip(jax.tree_util.tree_leaves(second.policy),
                  jax.tree_util.tree_leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_sample_inputs_draws_m_distinct_clients_uniformly_with_their_inputs():
  """`sample_inputs` over n = 4000 keys, m = 3 of k = 8 clients: each
  draw's m positions are distinct; each client is drawn in a fraction
  m/k of the draws, and each pair of clients in m(m-1)/(k(k-1)) (what
  uniform sampling without replacement gives); and every field it
  returns (rows, train data, hyper-parameters, keys) is the input at the
  returned positions. The counts are Binomial(n, p): each is asserted
  within 6 standard deviations (sd <= sqrt(n/4) / n ~ 0.008 of a
  fraction; a false alarm has probability below 1e-7 over the 8 + 28
  counts, and the keys are fixed), where a sampler of the first m
  clients (fractions 1 and 0), one that never reaches the last client,
  or one of a random contiguous run of m (adjacent pairs at m/k = 0.375
  against 0.107) is off by far more. The inputs encode their client's
  index in every leaf, so a field gathered at other positions shows."""
  k, m, n = C, 3, 4000
  ids = jnp.arange(k)
  code = lambda field, shape, dtype: (
      100 * field + ids.reshape(k, *([1] * len(shape)))
      + jnp.zeros((k, *shape))).astype(dtype)
  rows = {'head': code(1, (2, 3), jnp.float32), 'n': code(2, (), jnp.int32)}
  train = ClientBatch(code(3, (4, 2), jnp.float32), code(4, (4,), jnp.int32),
                      code(5, (), jnp.int32))
  hparams = ClientHParams(code(6, (), jnp.float32), code(7, (), jnp.int32),
                          code(8, (), jnp.int32), code(9, (), jnp.float32))
  keys = code(10, (2,), jnp.uint32)
  draws = jax.jit(jax.vmap(
      lambda key: sample_inputs(key, m, rows, train, hparams, keys)))(
          jax.random.split(jax.random.PRNGKey(42), n))
  positions = np.asarray(draws.positions)  # [n, m]
  assert positions.shape == (n, m)
  assert np.all((0 <= positions) & (positions < k))
  assert all(len(set(p)) == m for p in positions.tolist())
  fields = {'rows': (rows, draws.rows), 'train': (train, draws.train),
            'hparams': (hparams, draws.hparams), 'keys': (keys, draws.keys)}
  for name, (full, taken) in fields.items():
    for a, b in zip(jax.tree_util.tree_leaves(full),
                    jax.tree_util.tree_leaves(taken)):
      np.testing.assert_array_equal(b, np.asarray(a)[positions], err_msg=name)
  drawn = np.zeros((n, k), bool)
  np.put_along_axis(drawn, positions, True, axis=1)
  within = lambda got, p: np.testing.assert_array_less(
      np.abs(got - p), 6 * np.sqrt(p * (1 - p) / n))
  within(drawn.mean(0), m / k)
  pairs = (drawn.T.astype(np.float32) @ drawn) / n  # [k, k]
  within(pairs[np.triu_indices(k, 1)], m * (m - 1) / (k * (k - 1)))
