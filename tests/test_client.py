"""The vmapped, masked local update equals a plain per-client Python loop."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo import models
from pfhpo.federated.local_update import example_order, make_local_update
from pfhpo.models import cross_entropy

FEATURES = lambda x: x.astype(jnp.float32) / 255.0

# Clients with different lr / steps / batch sizes; client 2 holds fewer
# examples (3) than its batch (6), so its batches wrap.
COUNTS = np.array([20, 11, 3, 16], np.int32)
LRS = np.array([0.1, 0.03, 0.3, 0.05], np.float32)
STEPS = np.array([5, 1, 3, 4], np.int32)
BATCHES = np.array([4, 8, 6, 1], np.int32)
MAX_STEPS, MAX_BATCH, N_MAX = 5, 8, 20


def _client_data(shape, num_classes, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.integers(0, 256, (len(COUNTS), N_MAX, *shape), dtype=np.uint8)
  y = rng.integers(0, num_classes, (len(COUNTS), N_MAX)).astype(np.int32)
  for i, n in enumerate(COUNTS):  # padding holds garbage the update must ignore
    x[i, n:] = 255
    y[i, n:] = num_classes - 1
  return x, y


def _reference(model, params, x, y, n, lr, steps, b, key, momentum):
  """One client alone: plain Python loop over its own steps and batch size.
  Also returns FATHOM's alignment: min_s cos(g_s, theta_0 - theta_{s+1})."""
  flat = lambda tree: np.concatenate(
      [np.ravel(a) for a in jax.tree_util.tree_leaves(tree)]).astype(np.float64)
  start = flat(params)
  order_key, dropout_key = jax.random.split(key)
  order = np.asarray(example_order(order_key, n, N_MAX))
  opt = optax.sgd(float(lr), momentum=momentum or None)
  state = opt.init(params)

  def loss_fn(p, xb, yb, s):
    logits = model.apply(p, FEATURES(xb), train=True,
                         rng=jax.random.fold_in(dropout_key, s))
    return jnp.mean(cross_entropy(logits, yb))

  loss_and_grad = jax.jit(jax.value_and_grad(loss_fn))  # one compile a batch size
  losses, cosines = [], []
  for s in range(int(steps)):
    idx = np.array([order[(s * b + j) % n] for j in range(int(b))])
    loss, g = loss_and_grad(params, x[idx], y[idx], s)
    updates, state = opt.update(g, state, params)
    params = optax.apply_updates(params, updates)
    losses.append(float(loss))
    g, moved = flat(g), start - flat(params)
    cosines.append(g @ moved / np.linalg.norm(g) / np.linalg.norm(moved))
  return params, np.mean(losses), min(cosines)


@pytest.mark.parametrize('name,shape,conv_impl,momentum', [
    ('mlp', (6, 6, 1), None, 0.0),
    ('mlp', (6, 6, 1), None, 0.9),
    ('conv', (10, 10, 1), 'patches', 0.0),
    ('conv', (10, 10, 1), 'lax', 0.5),
])
def test_vmapped_update_equals_per_client_loop(name, shape, conv_impl, momentum):
  model = models.create(name, shape, 5, conv_impl=conv_impl, dropout=False)
  params = model.init(jax.random.PRNGKey(1))
  x, y = _client_data(shape, 5)
  keys = jax.random.split(jax.random.PRNGKey(2), len(COUNTS))
  update = jax.jit(jax.vmap(
      make_local_update(model, FEATURES, MAX_STEPS, MAX_BATCH, momentum,
                        track_alignment=True),
      in_axes=(None, 0, 0, 0, 0, 0, 0, 0)))
  got, stats = update(params, x, y, COUNTS, LRS, STEPS, BATCHES, keys)
  for i in range(len(COUNTS)):
    want, want_loss, want_cos = _reference(
        model, params, x[i], y[i], COUNTS[i], LRS[i], STEPS[i], BATCHES[i],
        keys[i], momentum)
    got_i = jax.tree_util.tree_map(lambda a: a[i], got)
    # The update must move the parameters, or the comparison proves nothing.
    moved = max(float(jnp.abs(a - b).max()) for a, b in zip(
        jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(params)))
    assert moved > 1e-3
    for a, b in zip(jax.tree_util.tree_leaves(got_i),
                    jax.tree_util.tree_leaves(want)):
      np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(stats.loss[i], want_loss, rtol=1e-5)
    np.testing.assert_allclose(stats.alignment[i], want_cos, atol=1e-5)
  # With momentum or several steps a gradient can turn away from the path.
  assert float(stats.alignment.min()) < 0.999


def test_rolled_and_unrolled_step_loops_agree():
  model = models.create('mlp', (6, 6, 1), 5)
  params = model.init(jax.random.PRNGKey(0))
  x, y = _client_data((6, 6, 1), 5)
  keys = jax.random.split(jax.random.PRNGKey(3), len(COUNTS))
  outs = [
      jax.jit(jax.vmap(make_local_update(model, FEATURES, MAX_STEPS, MAX_BATCH,
                                         unroll=unroll),
                       in_axes=(None, 0, 0, 0, 0, 0, 0, 0)))(
                           params, x, y, COUNTS, LRS, STEPS, BATCHES, keys)
      for unroll in (True, False)
  ]
  for a, b in zip(jax.tree_util.tree_leaves(outs[0]),
                  jax.tree_util.tree_leaves(outs[1])):
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_example_order_is_a_permutation_of_real_examples_first():
  order = np.asarray(example_order(jax.random.PRNGKey(0), 7, 12))
  assert sorted(order[:7]) == list(range(7))
  assert sorted(order[7:]) == list(range(7, 12))
