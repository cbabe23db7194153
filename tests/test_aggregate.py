"""Aggregation: every way of walking the clients gives the same Delta, and
jax.grad with respect to the coefficients is the closed-form credit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pfhpo import models
from pfhpo.federated.aggregate import aggregate_clients, example_weights, weighted_delta
from pfhpo.federated.local_update import make_local_update

FEATURES = lambda x: x.astype(jnp.float32) / 255.0
K = 5


def _setup():
  model = models.create('mlp', (6, 6, 1), 4)
  params = model.init(jax.random.PRNGKey(0))
  rng = np.random.default_rng(1)
  counts = np.array([12, 3, 9, 20, 6], np.int32)
  args = (rng.integers(0, 256, (K, 20, 6, 6, 1), dtype=np.uint8),
          rng.integers(0, 4, (K, 20)).astype(np.int32), counts,
          np.linspace(0.05, 0.3, K).astype(np.float32),
          np.array([1, 4, 2, 3, 4], np.int32),
          np.array([4, 2, 3, 1, 4], np.int32),
          jax.random.split(jax.random.PRNGKey(2), K))
  one = make_local_update(model, FEATURES, 4, 4)
  train = lambda *a: one(params, *a)
  return params, train, args, example_weights(counts)


@pytest.mark.parametrize('chunk', [1, 2, 3])
def test_chunked_aggregation_equals_one_vmap(chunk):
  params, train, args, w = _setup()
  c = jnp.array([1.0, 0.5, 2.0, 1.0, 0.0])
  run = jax.jit(lambda ch: aggregate_clients(train, params, args, w, c, ch),
                static_argnums=0)
  (want, want_aux), (got, got_aux) = run(None), run(chunk)
  client_params, _ = jax.vmap(train)(*args)
  by_hand = jax.tree_util.tree_map(
      lambda s, p: sum(float(w[i] * c[i]) * (p[i] - s) for i in range(K)),
      params, client_params)
  for a, b, h in zip(*map(jax.tree_util.tree_leaves, (want, got, by_hand))):
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, h, atol=1e-6)
  assert float(jnp.abs(jax.tree_util.tree_leaves(want)[0]).max()) > 1e-3
  np.testing.assert_allclose(want_aux, got_aux, atol=1e-6)


def test_a_client_alone_skips_the_steps_it_does_not_take():
  """Groups of one client are not vmapped, so the local update's steps past
  the client's own are a conditional the compiled round skips; in groups
  of two they are computed and selected away."""
  params, train, args, w = _setup()
  c = jnp.ones(K)
  hlo = lambda ch: jax.jit(lambda: aggregate_clients(
      train, params, args, w, c, ch)).lower().compile().as_text()
  assert 'conditional(' in hlo(1)
  assert 'conditional(' not in hlo(2)


@pytest.mark.parametrize('chunk,recompute', [(None, False), (2, False),
                                              (2, True), (1, False), (1, True)])
def test_grad_wrt_coefficients_is_the_closed_form_credit(chunk, recompute):
  """dL/dc_i = w_i <dL/dtheta_g, theta_i - theta>, at c = 1: kept updates
  or groups of clients trained again in the backward pass alike."""
  params, train, args, w = _setup()
  loss = lambda theta: sum(jnp.sum(jnp.sin(3 * a)) for a in
                           jax.tree_util.tree_leaves(theta))

  def val_loss(c):
    delta, _ = aggregate_clients(train, params, args, w, c, chunk,
                                 recompute=recompute)
    return loss(jax.tree_util.tree_map(jnp.add, params, delta))

  ones = jnp.ones(K)
  credit = jax.jit(jax.grad(val_loss))(ones)
  theta_g = jax.tree_util.tree_map(
      jnp.add, params, weighted_delta(params, jax.vmap(train)(*args)[0], w,
                                      ones))
  g = jax.grad(loss)(theta_g)
  client_params, _ = jax.vmap(train)(*args)
  closed = [float(w[i]) * sum(
      float(jnp.vdot(gl, cp[i] - sp)) for gl, cp, sp in zip(
          *map(jax.tree_util.tree_leaves, (g, client_params, params))))
            for i in range(K)]
  np.testing.assert_allclose(credit, closed, rtol=1e-4, atol=1e-7)
  assert np.abs(closed).max() > 1e-3


def test_grad_wrt_coefficients_matches_central_differences():
  params, train, args, w = _setup()

  def val_loss(c):
    delta, _ = aggregate_clients(train, params, args, w, c, 2)
    theta = jax.tree_util.tree_map(jnp.add, params, delta)
    return sum(jnp.sum(jnp.sin(3 * a)) for a in jax.tree_util.tree_leaves(theta))

  f = jax.jit(val_loss)
  ones = jnp.ones(K)
  credit = jax.grad(val_loss)(ones)
  eps = 1e-2
  fd = [(f(ones.at[i].add(eps)) - f(ones.at[i].add(-eps))) / (2 * eps)
        for i in range(K)]
  np.testing.assert_allclose(credit, fd, rtol=2e-2, atol=2e-4)
  assert np.abs(fd).max() > 1e-2


def test_recomputed_clients_keep_device_memory_flat_in_the_clients():
  """The credit's compiled round keeps every client's update ([C, P]:
  temporary memory grows with C) unless the groups are trained again in
  the backward pass (then it does not grow)."""
  import optax
  from pfhpo import models
  from pfhpo.federated import Execution, make_round
  from pfhpo.federated.credit import one_round
  from pfhpo.policies import gumbel, make_space
  from pfhpo.types import ClientBatch, RoundBatch, ValBatch
  model = models.create('mlp', (8, 8, 1), 10)
  space = make_space([0.01, 0.1], [1, 2], [4])

  def temp_bytes(k, recompute):
    x, y = np.zeros((k, 8, 8, 8, 1), np.uint8), np.zeros((k, 8), np.int32)
    batch = RoundBatch(np.arange(k, dtype=np.int32), ClientBatch(
        x, y, np.full(k, 8, np.int32)), ValBatch(x[0], y[0], np.full(
            8, 1 / 8, np.float32)))
    algo = make_round(model, lambda a: a.astype(jnp.float32), optax.sgd(1.0),
                      space, gumbel(space, optax.sgd(0.5)), one_round(),
                      execution=Execution(client_chunk=2,
                                          recompute=recompute))
    state, rows = algo.init(jax.random.PRNGKey(0), k)
    return jax.jit(algo.apply).lower(state, rows, batch, jax.random.PRNGKey(
        0)).compile().memory_analysis().temp_size_in_bytes

  model_bytes = 4 * sum(a.size for a in jax.tree_util.tree_leaves(
      model.init(jax.random.PRNGKey(0))))
  kept = temp_bytes(200, False) - temp_bytes(20, False)
  assert kept > 0.9 * 180 * model_bytes  # 180 more clients' updates
  assert abs(temp_bytes(200, True) - temp_bytes(20, True)) < model_bytes
