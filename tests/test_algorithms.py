"""The personalisation algorithms (`pfhpo.algorithms`) on the one round.

Each test asserts the algorithm's defining equation on a small problem:
FedMeta's meta-gradient against finite differences and its first-order
variant against the exact Hessian term, FedRep's body-only aggregation and
persistent heads, Ditto's two limits of lambda; and, end to end, that on
strongly label-skewed clients each personal model beats the FedAvg model.
"""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo import algorithms
from pfhpo.algorithms.fedmeta import support_query
from pfhpo.experiment import run
from pfhpo.experiment.config import Config, override
from pfhpo.federated import make_round, put_rows, take_rows
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.models import Model
from pfhpo.policies import static
from pfhpo.policies.space import make_space
from pfhpo.types import ClientBatch, RoundBatch, ValBatch

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
  help), and a validation set of the first client's task."""
  rng = np.random.default_rng(seed)
  w = rng.normal(size=(C, D))
  x = rng.normal(size=(C, N, D)).astype(np.float32)
  y = (np.einsum('cnd,cd->cn', x, w) > 0).astype(np.int32)
  val = ValBatch(x[0], y[0], np.full(N, 1 / N, np.float32))
  return RoundBatch(np.arange(C), ClientBatch(x, y, np.full(C, N, np.int32)),
                    val)


def sub_batch(batch, clients):
  take = lambda a: a[clients]
  return batch._replace(clients=clients, train=jax.tree_util.tree_map(
      take, batch.train))


def client_of(name, model, space, **options):
  return algorithms.create(algorithms.AlgorithmConfig(name, **options), model,
                           lambda x: x, space.max_steps, space.max_batch)


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
    space = make_space([0.5], [2], [4])
    client = client_of('fedmeta', model, space, meta_learner=learner)
    batch = problem()
    x, y = jnp.asarray(batch.train.x[0], jnp.float64), jnp.asarray(batch.train.y[0])
    count = jnp.int32(N)
    theta = client.server.init(jax.random.PRNGKey(0), jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64), model.init(jax.random.PRNGKey(1))))
    if learner == 'metasgd':  # rates other than 1, so that alpha matters
      theta['log_alpha'] = jax.tree_util.tree_map(
          lambda a: jnp.full_like(a, -0.3), theta['log_alpha'])
    config = (jnp.float64(0.5), jnp.int32(2), jnp.int32(4))
    key = jax.random.PRNGKey(3)
    sent, _, _, _ = client.local(theta, (), x, y, count, *config, key)
    g = jax.tree_util.tree_map(jnp.subtract, theta, sent)

    split_key, adapt_key = jax.random.split(key)
    xs, ys, ns, xq, yq, nq = support_query(split_key, x, y, count, 0.5)
    loss = make_masked_loss(model, lambda v: v)
    unflat = jax.flatten_util.ravel_pytree(theta)[1]

    @jax.jit
    def query_loss(vector):
      t = unflat(vector)
      phi = client.personalize(t, (), xs, ys, ns, *config, adapt_key)
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
    space = make_space([a], [1], [n // 2])
    batch = problem()
    x, y = (jnp.asarray(batch.train.x[1, :n], jnp.float64),
            jnp.asarray(batch.train.y[1, :n]))
    theta = jax.tree_util.tree_map(lambda v: v.astype(jnp.float64),
                                   model.init(jax.random.PRNGKey(2)))
    config = (jnp.float64(a), jnp.int32(1), jnp.int32(n // 2))
    key = jax.random.PRNGKey(5)
    g = {}
    for order in ('maml', 'fomaml'):
      client = client_of('fedmeta', model, space, meta_learner=order)
      sent, _, _, _ = client.local(theta, (), x, y, jnp.int32(n), *config,
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
      client = algorithms.create(
          algorithms.AlgorithmConfig('per_fedavg', meta_learner=order,
                                     meta_lr=b),
          model, lambda v: v, 1, n)
      sent, _, _, _ = client.local(theta, (), x, y, jnp.int32(n),
                                   jnp.float64(a), jnp.int32(1), jnp.int32(n),
                                   jax.random.PRNGKey(0))
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
    space = make_space([0.3], [3], [8])
    client = client_of('pfedhn', model, space, embed_dim=3, embed_lr=0.5)
    params = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64),
                                    model.init(jax.random.PRNGKey(0)))
    server = jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float64),
        client.server.init(jax.random.PRNGKey(1), params))
    v = jnp.array([0.3, -0.2, 0.5])
    batch = problem()
    x, y = jnp.asarray(batch.train.x[3], jnp.float64), jnp.asarray(batch.train.y[3])
    config = (jnp.float64(0.3), jnp.int32(3), jnp.int32(8))
    key = jax.random.PRNGKey(2)
    sent, v_new, _, trained = client.local(server, v, x, y, jnp.int32(N),
                                           *config, key)

    phi_flat, unravel_phi = jax.flatten_util.ravel_pytree(server)
    theta = lambda p, e: flat(client.personalize(unravel_phi(p), e))
    t0 = theta(phi_flat, v)
    local = make_local_update(model, lambda a: a, 3, 8)
    want_trained, _ = local(jax.flatten_util.ravel_pytree(params)[1](t0), x, y, jnp.int32(N),
                            *config, key)
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
  the clients' body updates; each client's head comes back into its row,
  and the rows of clients not in a round stay as they were."""
  model = two_layer_model()
  space = make_space([0.3], [4], [8])
  client = client_of('fedrep', model, space, body_steps=3)
  algorithm = make_round(model, lambda x: x, optax.sgd(1.0), space,
                         static(space), client=client)
  state, table = algorithm.init(jax.random.PRNGKey(0), C)
  assert table['w'].shape == (C, H, 2)
  step = jax.jit(algorithm.apply)
  batch = problem()
  start = jax.tree_util.tree_map(np.copy, table)
  for r, clients in enumerate((np.array([0, 1, 2]), np.array([1, 3, 4]))):
    rows = take_rows(table, clients)
    before = state.server.params
    state, back, _ = step(state, rows, sub_batch(batch, clients),
                          jax.random.PRNGKey(r))
    # The round's clients, one by one, from the same per-client keys.
    keys = jax.random.split(jax.random.split(jax.random.PRNGKey(r))[1], 3)
    bodies, heads = [], []
    for i, c in enumerate(clients):
      sent, head, _, own = client.local(
          before, jax.tree_util.tree_map(lambda a: a[i], rows),
          jnp.asarray(batch.train.x[c]), jnp.asarray(batch.train.y[c]), jnp.int32(N), jnp.float32(0.3),
          jnp.int32(4), jnp.int32(8), keys[i])
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


# Ditto -----------------------------------------------------------------------

def ditto_rounds(lam, server_lr, rounds=3):
  model = two_layer_model()
  space = make_space([0.3], [4], [8])
  client = client_of('ditto', model, space, ditto_lambda=lam)
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


@pytest.mark.parametrize('name', ['ditto', 'fedrep', 'fedmeta',
                                  'per_fedavg', 'pfedhn'])
def test_personal_models_beat_fedavg_on_label_skewed_clients(
    tmp_path, name, fedavg_on_skewed_clients):
  """Each algorithm's mean personal accuracy is above the FedAvg model's
  mean accuracy over the clients (about 0.84 against 0.94-0.98)."""
  extra = ({'server_opt': 'adam', 'server_lr': 0.01}
           if name in ('fedmeta', 'pfedhn') else {})
  personal = skewed_run(tmp_path / name, name, **extra).personal_acc
  fedavg = fedavg_on_skewed_clients.client_acc_mean
  assert personal > fedavg + 0.05, (name, personal, fedavg)
