"""The personalisation algorithms (`pfhpo.algorithms`) on the one round.

Each test asserts the algorithm's defining equation on a small problem:
FedMeta's meta-gradient against finite differences and its first-order
variant against the exact Hessian term, FedRep's body-only aggregation and
persistent heads, Ditto's two limits of lambda, a credit over two rounds
through Reptile's and FedRep's rounds against finite differences of the
two rounds replayed; and, end to end, that on strongly label-skewed
clients each personal model beats the FedAvg model.
"""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo import algorithms
from pfhpo import models
from pfhpo.algorithms.fedmeta import support_query
from pfhpo.algorithms.mocha import relationship
from pfhpo.experiment import run
from pfhpo.experiment.config import AlgorithmConfig, Config, override
from pfhpo.federated import make_round, put_rows, take_rows
from pfhpo.federated.credit import make_credit
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.models import Model
from pfhpo.policies import fedex, gumbel, random, static
from pfhpo.policies.space import make_space
from pfhpo.types import ClientBatch, ClientHParams, RoundBatch, ValBatch

C, N, D, H = 6, 24, 4, 3  # clients, examples each, inputs, hidden units


def two_layer_model() -> Model:
  """tanh body, linear head over 2 classes; 'head' is the classifier."""

  def init(key):
    k1, k2 = jax.random.split(key)
    return {'body': {'w': 0.5 * jax.random.normal(k1, (D, H))},
            'head': {'w': 0.5 * jax.random.normal(k2, (H, 2)),
                     'b': jnp.zeros(2)}}

  def apply(params, x, train=False, rng=None):
    hidden = jnp.tanh(x @ params['body']['w'])
    return hidden @ params['head']['w'] + params['head']['b']

  return Model(init, apply, 'two_layer', 2, 'head')


def problem(seed=0):
  """C clients, each with its own labelling direction (so personal models
  help), a validation set of the first client's task, and each client's
  own validation split (N more examples of its task)."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(C, D))
  x, x_val = rng.normal(size=(2, C, N, D)).astype(np.float32)
  label = lambda a: (np.einsum('cnd,cd->cn', a, w) > 0).astype(np.int32)
  y, y_val = label(x), label(x_val)
  val = ValBatch(x[0], y[0], np.full(N, 1 / N, np.float32))
  count = np.full(C, N, np.int32)
  return RoundBatch(np.arange(C), ClientBatch(x, y, count), val,
                    ClientBatch(x_val, y_val, count))


def sub_batch(batch, clients):
  take = lambda a: a[clients]
  return batch._replace(clients=clients, train=jax.tree_util.tree_map(
      take, batch.train), local_val=jax.tree_util.tree_map(
          take, batch.local_val))


def client_of(name, model, lrs, steps, batches, algorithm_values=None,
              **options):
  """The algorithm's client and the search space of the values given, with
  the algorithm's own setting on its tuned axis."""
  config = AlgorithmConfig(name, algorithms.entry(name).config(**options),
                           algorithm_values)
  values, tuned_name = config.tuned()
  space = make_space(lrs, steps, batches, None, None, values, tuned_name)
  return algorithms.create(name, config.options, model, lambda x: x,
                           space.max_steps, space.max_batch,
                           tuned_values=values), space


def hp(lr, steps, batch, tuned=0.0, dtype=jnp.float64):
  """One client's configuration, as the round hands it to `local`."""
  return ClientHParams(jnp.asarray(lr, dtype), jnp.int32(steps),
                       jnp.int32(batch), jnp.asarray(tuned, dtype))


def tree_close(a, b, **tol):
  for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
    np.testing.assert_allclose(np.asarray(u), np.asarray(v), **tol)


def flat(tree):
  return jax.flatten_util.ravel_pytree(tree)[0]


# FedMeta ---------------------------------------------------------------------

@pytest.mark.parametrize('learner', ['maml', 'metasgd'])
def test_meta_gradient_matches_finite_differences(learner):
  """g = d/dtheta L_Q(phi(theta)) through two inner SGD steps, against
  central differences of that same function (float64). Meta-SGD's server
  also holds log alpha, the per-parameter inner rates: they get their
  gradient too."""
  with jax.enable_x64(True):
    model = two_layer_model()
    client, _ = client_of('fedmeta', model, [0.5], [2], [4],
                          meta_learner=learner)
    batch = problem()
    x, y = jnp.asarray(batch.train.x[0], jnp.float64), jnp.asarray(batch.train.y[0])
    count = jnp.int32(N)
    theta = client.server.init(jax.random.PRNGKey(0), jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(1))))
    if learner == 'metasgd':  # rates other than 1, so that alpha matters
      theta['log_alpha'] = jax.tree_util.tree_map(
          lambda a: jnp.full_like(a, -0.3), theta['log_alpha'])
    config = hp(0.5, 2, 4, tuned=0.5)  # query_fraction 0.5
    key = jax.random.PRNGKey(3)
    sent, _, _, _ = client.local(theta, (), x, y, count, config, key)
    g = jax.tree_util.tree_map(jnp.subtract, theta, sent)

    split_key, adapt_key = jax.random.split(key)
    xs, ys, ns, xq, yq, nq = support_query(split_key, x, y, count, 0.5)
    loss = make_masked_loss(model, lambda v: v)
    unflat = jax.flatten_util.ravel_pytree(theta)[1]

    @jax.jit
    def query_loss(vector):
      t = unflat(vector)
      phi = client.personalize(t, (), xs, ys, ns, config, adapt_key)
      return loss(phi, xq, yq, nq)

    v, eps = flat(theta), 1e-5
    fd = np.array([(query_loss(v.at[j].add(eps)) - query_loss(v.at[j].add(
        -eps))) / (2 * eps) for j in range(v.size)])
    np.testing.assert_allclose(np.asarray(flat(g)), fd, rtol=1e-5,
                               atol=1e-8)
    assert np.abs(fd).max() > 1e-2  # a gradient, not zeros
    if learner == 'metasgd':
      assert np.abs(np.asarray(flat(g['log_alpha']))).max() > 1e-3


def test_fomaml_is_maml_without_the_second_order_term():
  """One full-batch inner step phi = theta - a grad L_S(theta):
  MAML's g = (I - a H_S(theta)) grad L_Q(phi) and FO-MAML's grad L_Q(phi)."""
  with jax.enable_x64(True):
    model = two_layer_model()
    n, a = 8, 0.5
    batch = problem()
    x, y = (jnp.asarray(batch.train.x[1, :n], jnp.float64),
            jnp.asarray(batch.train.y[1, :n]))
    theta = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64),
                                   model.init(jax.random.PRNGKey(2)))
    config = hp(a, 1, n // 2, tuned=0.5)
    key = jax.random.PRNGKey(5)
    g = {}
    for order in ('maml', 'fomaml'):
      client, _ = client_of('fedmeta', model, [a], [1], [n // 2],
                            meta_learner=order)
      sent, _, _, _ = client.local(theta, (), x, y, jnp.int32(n), config,
                                   key)
      g[order] = flat(jax.tree_util.tree_map(jnp.subtract, theta, sent))

    xs, ys, ns, xq, yq, nq = support_query(jax.random.split(key)[0], x, y,
                                           jnp.int32(n), 0.5)
    loss = make_masked_loss(model, lambda v: v)
    unflat = jax.flatten_util.ravel_pytree(theta)[1]
    support = lambda vec: loss(unflat(vec), xs, ys, ns)
    query = lambda vec: loss(unflat(vec), xq, yq, nq)
    t = flat(theta)
    phi = t - a * jax.grad(support)(t)
    first = jax.grad(query)(phi)
    second = a * jax.hessian(support)(t) @ first
    np.testing.assert_allclose(np.asarray(g['fomaml']), first, rtol=1e-9)
    np.testing.assert_allclose(np.asarray(g['maml']), first - second,
                               rtol=1e-8, atol=1e-12)
    assert np.abs(second).max() > 1e-3  # the term is there to drop


def test_per_fedavg_step_is_the_papers_update():
  """One Per-FedAvg step with every batch the client's whole data (so
  D = D' = D''): FO w - b grad f(w - a grad f(w)), HF the same gradient
  times (I - a H f(w)), with H the exact Hessian (float64)."""
  with jax.enable_x64(True):
    model = two_layer_model()
    n, a, b = 8, 0.4, 0.3
    batch = problem()
    x, y = (jnp.asarray(batch.train.x[2, :n], jnp.float64),
            jnp.asarray(batch.train.y[2, :n]))
    theta = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64),
                                   model.init(jax.random.PRNGKey(4)))
    loss = make_masked_loss(model, lambda v: v)
    unflat = jax.flatten_util.ravel_pytree(theta)[1]
    f = lambda vec: loss(unflat(vec), x, y, jnp.int32(n))
    t = flat(theta)
    g = jax.grad(f)(t - a * jax.grad(f)(t))
    want = {'fomaml': t - b * g,
            'maml': t - b * (g - a * jax.hessian(f)(t) @ g)}
    for order, expected in want.items():
      client, _ = client_of('per_fedavg', model, [a], [1], [n],
                            meta_learner=order)
      sent, _, _, _ = client.local(theta, (), x, y, jnp.int32(n),
                                   hp(a, 1, n, tuned=b), jax.random.PRNGKey(0))
      np.testing.assert_allclose(np.asarray(flat(sent)), expected,
                                 rtol=1e-9, err_msg=order)
    assert np.abs(want['maml'] - want['fomaml']).max() > 1e-4


# pFedHN ----------------------------------------------------------------------

def test_pfedhn_update_is_the_chain_rule_through_the_hypernetwork():
  """phi and v_i move by J^T (theta_i - theta~_i), J the Jacobian of
  theta_i = h(v_i; phi) computed directly (float64), and the personal
  model is h(v_i; phi)."""
  with jax.enable_x64(True):
    model = two_layer_model()
    client, _ = client_of('pfedhn', model, [0.3], [3], [8], embed_dim=3)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                    model.init(jax.random.PRNGKey(0)))
    server = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64),
        client.server.init(jax.random.PRNGKey(1), params))
    v = jnp.array([0.3, -0.2, 0.5])
    batch = problem()
    x, y = jnp.asarray(batch.train.x[3], jnp.float64), jnp.asarray(batch.train.y[3])
    config = hp(0.3, 3, 8, tuned=0.5)  # embed_lr 0.5
    key = jax.random.PRNGKey(2)
    sent, v_new, _, trained = client.local(server, v, x, y, jnp.int32(N),
                                           config, key)

    phi_flat, unravel_phi = jax.flatten_util.ravel_pytree(server)
    theta = lambda p, e: flat(client.personalize(unravel_phi(p), e))
    t0 = theta(phi_flat, v)
    local = make_local_update(model, lambda a: a, 3, 8)
    want_trained, _ = local(jax.flatten_util.ravel_pytree(params)[1](t0), x,
                            y, jnp.int32(N), *config.sgd, key)
    residual = t0 - flat(want_trained)
    j_phi = jax.jacobian(theta, argnums=0)(phi_flat, v)  # [P, |phi|]
    j_v = jax.jacobian(theta, argnums=1)(phi_flat, v)  # [P, 3]
    np.testing.assert_allclose(np.asarray(flat(trained)),
                               np.asarray(flat(want_trained)), rtol=1e-12)
    np.testing.assert_allclose(
        np.asarray(jax.flatten_util.ravel_pytree(sent)[0]),
        phi_flat - j_phi.T @ residual, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(np.asarray(v_new),
                               v - 0.5 * j_v.T @ residual, rtol=1e-9)
    assert np.abs(j_v.T @ residual).max() > 1e-6  # the embedding moves


# FedRep ----------------------------------------------------------------------

def test_fedrep_averages_only_the_body_and_keeps_every_clients_head():
  """The server's head never moves; its body moves by the weighted mean of
  the clients' body updates, each client training its body for the steps
  a policy chose for it; each client's head comes back into its row, and
  the rows of clients not in a round stay as they were."""
  model = two_layer_model()
  client, space = client_of('fedrep', model, [0.3], [4], [8],
                            algorithm_values=(1, 3))
  algorithm = make_round(model, lambda x: x, optax.sgd(1.0), space,
                         random(space), client=client)
  state, table = algorithm.init(jax.random.PRNGKey(0), C)
  assert table['w'].shape == (C, H, 2)
  step = jax.jit(algorithm.apply)
  batch = problem()
  start = jax.tree_util.tree_map(np.copy, table)
  body_steps = []
  for r, clients in enumerate((np.array([0, 1, 2]), np.array([1, 3, 4]))):
    rows = take_rows(table, clients)
    before = state.server.params
    state, back, metrics = step(state, rows, sub_batch(batch, clients),
                                jax.random.PRNGKey(r))
    body_steps.extend(np.asarray(metrics.hparams.tuned).tolist())
    # The round's clients, one by one, from the same per-client keys.
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(r))[1], 3)
    bodies, heads = [], []
    for i, c in enumerate(clients):
      sent, head, _, own = client.local(
          before, jax.tree_util.tree_map(lambda a: a[i], rows),
          jnp.asarray(batch.train.x[c]), jnp.asarray(batch.train.y[c]),
          jnp.int32(N), jax.tree_util.tree_map(lambda a: a[i],
                                               metrics.hparams), keys[i])
      tree_close(sent['head'], before['head'], rtol=0, atol=0)
      tree_close(own['head'], head, rtol=0, atol=0)
      bodies.append(sent['body']['w'] - before['body']['w'])
      heads.append(head)
    tree_close(state.server.params['head'], before['head'], rtol=0, atol=0)
    np.testing.assert_allclose(
        state.server.params['body']['w'],
        before['body']['w'] + np.mean(bodies, axis=0), rtol=1e-5, atol=1e-6)
    tree_close(back, jax.tree_util.tree_map(lambda *h: jnp.stack(h), *heads),
               rtol=1e-5, atol=1e-6)
    put_rows(table, clients, back)
  never = np.array([5])  # in no round: its head is the one it started with
  tree_close(take_rows(table, never), take_rows(start, never), rtol=0, atol=0)
  assert not np.allclose(table['w'][0], start['w'][0])  # trained in round 0
  # Client 0 sat out round 1: its head is still the one round 0 gave it.
  assert not np.allclose(table['w'][0], table['w'][1])
  assert set(body_steps) == {1, 3}  # the policy chose both


# Ditto -----------------------------------------------------------------------

def ditto_rounds(lam, server_lr, rounds=3):
  model = two_layer_model()
  client, space = client_of('ditto', model, [0.3], [4], [8], ditto_lambda=lam)
  algorithm = make_round(model, lambda x: x, optax.sgd(server_lr), space,
                         static(space), client=client)
  state, table = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  batch = problem()
  starts = []
  for r in range(rounds):
    starts.append(state.server.params)
    state, table, _ = step(state, table, batch, jax.random.PRNGKey(r))
  return starts, table


def test_ditto_with_a_huge_lambda_is_the_global_model():
  """lam -> inf pins every personal model to the round's global model."""
  starts, table = ditto_rounds(1e9, 1.0)
  assert np.all(np.asarray(table.started))
  for c in range(C):
    tree_close(jax.tree_util.tree_map(lambda a: a[c], table.model),
               starts[-1], rtol=1e-4, atol=1e-6)


def test_ditto_with_lambda_zero_is_local_training_alone():
  """lam = 0: the personal models do not depend on the global trajectory
  (here, two server learning rates); with lam > 0 they do."""
  slow_starts, slow = ditto_rounds(0.0, 0.3)
  fast_starts, fast = ditto_rounds(0.0, 1.0)
  assert not np.allclose(flat(slow_starts[-1]), flat(fast_starts[-1]))
  tree_close(slow.model, fast.model, rtol=0, atol=0)
  _, slow = ditto_rounds(1.0, 0.3)
  _, fast = ditto_rounds(1.0, 1.0)
  assert not np.allclose(flat(slow.model), flat(fast.model))


def test_fedex_learns_dittos_lambda_from_the_personal_models():
  """Ditto's lambda is an axis of the search space, chosen per client. It
  moves only the personal models, so a policy must learn it from them:
  FedEx, whose signal is each client's validation loss of the model it
  holds after the round (its personal model). On clients with opposed
  tasks, lambda 0 (local training alone) fits each client's own task and
  lambda 1e4 pins the personal model to the global average, so FedEx's
  distribution moves to lambda 0."""
  model = two_layer_model()
  client, space = client_of('ditto', model, [0.3], [4], [8],
                            algorithm_values=(1e4, 0.0))
  assert space.describe(1) == 'lr=0.3 steps=4 batch=8 ditto_lambda=0'
  policy = fedex(space)
  algorithm = make_round(model, lambda x: x, optax.sgd(1.0), space, policy,
                         client=client)
  state, table = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  batch = problem()
  for r in range(20):
    state, table, metrics = step(state, table, batch, jax.random.PRNGKey(r))
  np.testing.assert_array_equal(metrics.hparams.tuned,
                                space.tuned[metrics.choices])
  p = np.asarray(policy.probabilities(state.policy, jnp.arange(1)))[0]
  assert p[1] > 0.9, p


# Personalised FedAvg (Reptile) ----------------------------------------------

def test_reptile_is_fedavg_then_adam_on_the_uniform_mean():
  """Its first `reptile_start` server steps are FedAvg's (weights D_i / D,
  the run's server optimizer); after them the server takes Adam on the
  clients' plain mean update, whatever their sizes."""
  model = two_layer_model()
  client, space = client_of('reptile', model, [0.3], [4], [8],
                            reptile_start=1)
  server_opt = algorithms.server_optimizer(
      'reptile', algorithms.ReptileConfig(reptile_start=1, reptile_lr=0.01),
      optax.sgd(1.0))
  algorithm = make_round(model, lambda x: x, server_opt, space, static(space),
                         client=client)
  state, table = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  batch = problem()
  counts = np.array([8, 24, 12, 24, 16, 10], np.int32)  # unequal sizes
  batch = batch._replace(train=batch.train._replace(count=counts))
  flat_deltas = []
  for r in range(2):
    before = state.server.params
    state, table, _ = step(state, table, batch, jax.random.PRNGKey(r))
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(r))[1], C)
    deltas = np.stack([flat(client.local(
        before, (), jnp.asarray(batch.train.x[c]),
        jnp.asarray(batch.train.y[c]), jnp.int32(counts[c]),
        hp(0.3, 4, 8, dtype=jnp.float32), keys[c])[0]) - flat(before)
                       for c in range(C)])
    moved = flat(state.server.params) - flat(before)
    flat_deltas.append(deltas)
    if r == 0:  # FedAvg: theta + sum_i (D_i / D) Delta_i
      want = counts @ deltas / counts.sum()
    else:  # Reptile: Adam's first step on -mean_i Delta_i
      g = -deltas.mean(0)
      adam = algorithms.reptile_server(optax.sgd(1.0), 0, 0.01)
      want = np.asarray(adam.update(g, adam.init(g))[0])
    np.testing.assert_allclose(moved, want, rtol=2e-5, atol=1e-7)
  assert not np.allclose(counts @ flat_deltas[1] / counts.sum(),
                         flat_deltas[1].mean(0), atol=1e-4)


# MOCHA -----------------------------------------------------------------------

def test_mochas_relationship_update_is_the_constrained_minimiser():
  """For fixed W, A = Omega^{-1} with Omega = C (W W^T)^{1/2} / tr(...)
  minimises tr(W^T Omega^{-1} W) over Omega > 0 with tr(Omega) = C: no
  random feasible Omega does better, and A matches the matrix square root
  computed by eigendecomposition in float64 (up to MOCHA's eigenvalue
  floor, which a full-rank W makes negligible)."""
  rng = np.random.default_rng(0)
  rows = rng.normal(size=(4, 9))
  a = np.asarray(relationship(jnp.asarray(rows, jnp.float32)), np.float64)
  e, u = np.linalg.eigh(rows @ rows.T)
  s = (u * np.sqrt(e)) @ u.T
  np.testing.assert_allclose(a, np.trace(s) / 4 * np.linalg.inv(s),
                             rtol=5e-3, atol=5e-3)
  cost = lambda inv: np.trace(rows.T @ inv @ rows)
  best = cost(a)
  for _ in range(50):
    m = rng.normal(size=(4, 4))
    omega = m @ m.T + 0.1 * np.eye(4)
    omega *= 4 / np.trace(omega)
    assert cost(np.linalg.inv(omega)) >= best * (1 - 1e-3)


def test_mocha_round_moves_each_row_by_its_clients_coupled_update():
  """One round of every client: row t becomes client t's local SGD on its
  loss plus lam/2 tr(W^T A W) with the other rows fixed (whose gradient is
  lam A_tt (w_t - a_t), the anchor's: checked with jax.grad), A is the
  closed form of the new rows, and the global model is the mean row."""
  model = Model(*models.create('logreg', (D,), 2)[:2], 'logreg', 2, 'Dense_0')
  lam = 0.5
  space = make_space([0.3], [4], [8])
  client = algorithms.create(
      'mocha', algorithms.MochaConfig(mocha_lambda=lam), model, lambda x: x,
      space.max_steps, space.max_batch, num_clients=C, clients_per_round=C)
  server_opt = algorithms.server_optimizer('mocha', None, optax.sgd(1.0), C)
  algorithm = make_round(model, lambda x: x, server_opt, space, static(space),
                         client=client)
  state, table = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  batch = problem()
  for r in range(2):  # the second round starts from a coupled A
    before = state.server.params
    state, table, _ = step(state, table, batch, jax.random.PRNGKey(r))
  w, a = before['W'], before['A']
  assert not np.allclose(a, np.eye(C), atol=1e-3)
  unravel = jax.flatten_util.ravel_pytree(model.init(jax.random.PRNGKey(0)))[1]
  local = make_local_update(model, lambda x: x, 4, 8)
  keys = jax.random.split(jax.random.split(jax.random.PRNGKey(1))[1], C)
  coupling = lambda rows: lam / 2 * jnp.trace(rows.T @ a @ rows)
  want = []
  for t in range(C):
    anchor = -(a[t] @ w - a[t, t] * w[t]) / a[t, t]
    np.testing.assert_allclose(jax.grad(coupling)(w)[t],
                               lam * a[t, t] * (w[t] - anchor), rtol=1e-4,
                               atol=1e-6)
    trained, _ = local(unravel(w[t]), jnp.asarray(batch.train.x[t]),
                       jnp.asarray(batch.train.y[t]), jnp.int32(N),
                       jnp.float32(0.3), jnp.int32(4), jnp.int32(8), keys[t],
                       anchor=unravel(anchor), lam=lam * a[t, t])
    want.append(flat(trained))
  want = np.stack(want)
  np.testing.assert_allclose(state.server.params['W'], want, rtol=1e-4,
                             atol=1e-5)
  # A is a matrix function of W in float32: a 1e-5 difference in W (the
  # tolerance above) moves its entries by up to ~5e-4 of their size
  np.testing.assert_allclose(state.server.params['A'],
                             relationship(jnp.asarray(want)), rtol=2e-3,
                             atol=1e-4)
  np.testing.assert_array_equal(state.server.params['seen'], 0)
  tree_close(client.server.model(state.server.params),
             unravel(want.mean(0)), rtol=1e-5, atol=1e-6)


# End to end ------------------------------------------------------------------

def skewed_run(out, algorithm, **extra):
  """Digits cut into 20 clients with Dirichlet(0.1) label skew, 15 rounds of
  10 clients on lr 0.1 x 10 steps: the final metrics row, from a run that
  compiled its round once."""
  summary = run(override(Config(), {
      'dataset': 'digits', 'model': 'mlp', 'alpha': 0.1, 'rounds': 15,
      'clients_per_round': 10, 'policy': 'static', 'static_index': 5,
      'eval_every': 15, 'algorithm': algorithm, 'out_dir': str(out),
      **extra}))
  assert summary.round_compilations == 1, algorithm
  return summary.final


@pytest.fixture(scope='module')
def fedavg_on_skewed_clients(tmp_path_factory):
  return skewed_run(tmp_path_factory.mktemp('fedavg') / 'run', 'fedavg')


@pytest.mark.parametrize('name', ['reptile', 'ditto', 'fedrep', 'fedmeta',
                                  'per_fedavg', 'pfedhn', 'mocha'])
def test_personal_models_beat_fedavg_on_label_skewed_clients(
    tmp_path, name, fedavg_on_skewed_clients):
  """Each algorithm's mean personal accuracy is above the FedAvg model's
  mean accuracy over the clients (about 0.84 against 0.94-0.98); MOCHA's
  convex models against FedAvg's of the same logistic regression."""
  extra = ({'server_opt': 'adam', 'server_lr': 0.01}
           if name in ('fedmeta', 'pfedhn') else
           {'reptile_start': 8} if name == 'reptile' else
           {'model': 'logreg'} if name == 'mocha' else {})
  personal = skewed_run(tmp_path / name, name, **extra).personal_acc
  fedavg = (skewed_run(tmp_path / 'fedavg', 'fedavg', model='logreg')
            if name == 'mocha' else fedavg_on_skewed_clients).client_acc_mean
  assert personal > fedavg + 0.05, (name, personal, fedavg)


# A credit over two rounds through an algorithm's round ------------------------

REPTILE_LR = 0.05  # Reptile's server Adam, from its second server step
COUNTS = np.array([8, 24, 12, 24, 16, 10], np.int32)  # unequal sizes


def two_rounds(name, estimator, t):
  """Two compiled rounds of every client of `problem()` (sizes `COUNTS`,
  feature 0 zero in every training example, as digits' corner pixels are:
  the weights it feeds never move, so every aggregate has zero
  coordinates, where Adam's sqrt(v) has no derivative) under `name`'s client and server, as a run builds them (Reptile: FedAvg
  for one server step, then Adam at REPTILE_LR; FedRep: 1 or 3 body
  steps), gumbel drawing each client's configuration, and a 2-round
  credit (`estimator`, every client of round 1 taken, at c = t 1): (its
  search space, the initial state and table, the batch, each round's
  metrics, the final server parameters, the round's compilations)."""
  model = two_layer_model()
  options = ({'reptile_start': 1, 'reptile_lr': REPTILE_LR}
             if name == 'reptile' else {})
  client, space = client_of(name, model, [0.1, 0.3], [2, 4], [8],
                            (1, 3) if name == 'fedrep' else None, **options)
  server_opt = algorithms.server_optimizer(
      name, algorithms.entry(name).config(**options), optax.sgd(1.0))
  algorithm = make_round(model, lambda x: x, server_opt, space,
                         gumbel(space, optax.sgd(0.5)),
                         make_credit(2, estimator, sample=C, at=t),
                         client=client)
  batch = problem()
  x = batch.train.x.copy()
  x[..., 0] = 0  # a feature no client has: zeros in every aggregate
  batch = batch._replace(train=batch.train._replace(x=x, count=COUNTS))
  state, table = algorithm.init(jax.random.PRNGKey(0), C, batch)
  start, rows, metrics, traces = (state, table), table, [], []

  def apply(*args):
    traces.append(1)  # once per compilation, never per call
    return algorithm.apply(*args)

  step = jax.jit(apply)
  for r in range(2):
    state, rows, m = step(state, rows, batch, jax.random.PRNGKey(r))
    assert int(m.dropped_clients) == 0 and bool(m.updated)
    metrics.append(m)
  return space, start, batch, metrics, state.server.params, len(traces)


def two_round_loss(name, space, start, batch, metrics):
  """c -> (F(c) = L_val(theta_2(c)), theta_2(c) flattened): the server
  model after the two rounds of `metrics`, replayed client by client with
  the configurations and keys they drew, round 0 aggregated with
  coefficients c, round 1 with ones, and its validation loss:

      theta_1(c) = theta_0 + sum_i w_i c_i (theta_0i - theta_0)
      theta_2(c) = theta_1(c) + step(sum_i v_i (theta_1i(c) - theta_1(c)))

  Reptile: w_i = D_i / D and step = SGD at 1 (FedAvg, its first server
  step), then v_i = 1 / C and Adam's first step from zero moments, step(d)
  = REPTILE_LR d / (|d| + 1e-3) per coordinate (bias-corrected m = g,
  v = g^2, g = -d). FedRep: v_i = w_i = D_i / D, SGD at 1; client i trains
  its own head h_i from the server's body (its local steps), then the body
  under that head (its body steps); it sends the body, keeps the head,
  and starts round 1 from it (round 0 from its row of the initial table).
  Compiled twice: vmapped over rows of c [n, C], and its gradient."""
  model = two_layer_model()
  (state, table), train, val = start, batch.train, batch.val
  unflat = jax.flatten_util.ravel_pytree(state.server.params)[1]
  only = lambda part: lambda p: {
      k: jax.tree_util.tree_map(lambda _: k == part, v) for k, v in p.items()}
  sgd, head_sgd, body_sgd = (
      make_local_update(model, lambda x: x, space.max_steps, space.max_batch,
                        trainable=trainable)
      for trainable in (None, only('head'), only('body')))
  shares = COUNTS / COUNTS.sum()  # f32[C] w_i

  def client(theta, head, i, hp, key):
    """(theta_i, client i's head after the round: FedRep's; Reptile: None)."""
    data = (jnp.asarray(train.x)[i], jnp.asarray(train.y)[i],
            jnp.asarray(train.count)[i])
    if name == 'reptile':
      return sgd(theta, *data, *hp.sgd, key)[0], None
    head_key, body_key = jax.random.split(key)
    own = head_sgd({**theta, 'head': head}, *data, *hp.sgd, head_key)[0]
    own = body_sgd(own, *data, hp.lr, jnp.round(hp.tuned).astype(jnp.int32),
                   hp.batch_size, body_key)[0]
    return {**own, 'head': theta['head']}, own['head']

  def loss(c):
    theta = state.server.params
    heads = table  # [C, ...] per leaf: each client's head (FedRep)
    for r, m in enumerate(metrics):
      keys = jax.random.split(jax.random.split(jax.random.PRNGKey(r))[1], C)

      def one(i, theta=theta, heads=heads, m=m, keys=keys):
        row = lambda tree: jax.tree_util.tree_map(lambda a: jnp.asarray(a)[i],
                                                  tree)
        sent, head = client(theta, row(heads), i, row(m.hparams), keys[i])
        return flat(sent), head

      # client by client, in order (a loop, not a vmap)
      sent, heads = jax.lax.map(one, jnp.arange(C))  # f32[C, P], [C, ...]
      w = np.full(C, 1 / C) if name == 'reptile' and r == 1 else shares
      coeffs = c if r == 0 else jnp.ones(C)
      d = jnp.sum((w * coeffs)[:, None] * (sent - flat(theta)), 0)  # f32[P]
      if name == 'reptile' and r == 1:
        d = REPTILE_LR * d / (jnp.abs(d) + 1e-3)
      theta = unflat(flat(theta) + d)
    logits = model.apply(theta, jnp.asarray(val.x))
    return jnp.sum(val.weight * models.cross_entropy(logits, val.y)), flat(
        theta)

  return jax.jit(jax.vmap(loss)), jax.jit(jax.grad(loss, has_aux=True))


@pytest.mark.parametrize('name,estimator,t', [
    ('reptile', 'exact', 0.5), ('reptile', 'sampled', 1.0),
    ('fedrep', 'exact', 0.5), ('fedrep', 'sampled', 1.0)])
def test_a_credit_over_two_rounds_goes_through_each_algorithms_round(
    name, estimator, t):
  """Round 1's credit, dF/dc_i at c = t 1 for round 0's clients (F the
  validation loss after both rounds, `two_round_loss`), equals central
  finite differences and `jax.grad` of F replayed outside the round:
  through Reptile's phase change (FedAvg's example weights and SGD in round
  0, uniform weights and Adam in round 1) and FedRep's heads, each client
  training round 1's head from the one it kept from round 0. 'sampled'
  with every client taken is the exact credit at c = 1 (the sample's rows,
  FedRep's heads, in the window's order). At c = 1 the replay is the run:
  theta_2(1) is the server's model after round 1. One compilation, round
  0's window still open included."""
  space, start, batch, metrics, end, compilations = two_rounds(
      name, estimator, t)
  assert compilations == 1
  np.testing.assert_array_equal(metrics[0].credit, 0.0)
  if name == 'fedrep':  # the policy drew both body steps
    assert set(np.asarray(metrics[1].hparams.tuned).tolist()) == {1, 3}
  losses, grad = two_round_loss(name, space, start, batch, metrics)
  eps, at = 1e-2, jnp.full(C, t)
  step = eps * jnp.eye(C)
  f, theta = losses(jnp.concatenate([jnp.ones((1, C)), at + step,
                                     at - step]))  # f32[1 + 2C], [1 + 2C, P]
  np.testing.assert_allclose(theta[0], flat(end), rtol=1e-5, atol=1e-6)
  fd = (f[1:C + 1] - f[C + 1:]) / (2 * eps)  # f32[C]
  credit = np.asarray(metrics[1].credit)
  np.testing.assert_allclose(credit, fd, rtol=3e-2, atol=2e-5)
  # The same function differentiated: float32 rounding apart (~1e-6).
  want = np.asarray(grad(at)[0])
  np.testing.assert_allclose(credit, want, rtol=1e-4,
                             atol=1e-5 * np.max(np.abs(want)))
