"""The one compiled round, as FedAvg, against fedjax's
`fed_avg.federated_averaging`."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pfhpo import models
from pfhpo.compat import fedjax
from pfhpo.algorithms import fedavg
from pfhpo.federated.local_update import example_order
from pfhpo.models import cross_entropy
from pfhpo.types import ClientBatch, RoundBatch, ValBatch
from fedjax.algorithms import fed_avg

FEATURES = lambda x: x.astype(jnp.float32) / 255.0
COUNTS = np.array([30, 9, 17, 24, 5], np.int32)
N_MAX, ROUNDS, STEPS, BATCH, LR = 30, 4, 3, 8, 0.1


@pytest.mark.parametrize('server', ['sgd', 'adam'])
def test_fedavg_matches_fedjax(server):
  shape, classes = (8, 8, 1), 10
  model = models.create('conv', shape, classes, conv_impl='patches',
                        dropout=False)
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (len(COUNTS), N_MAX, *shape), dtype=np.uint8)
  y = rng.integers(0, classes, (len(COUNTS), N_MAX)).astype(np.int32)

  # Adam divides each coordinate's pseudo-gradient by its own magnitude; with
  # eps=1e-8 a coordinate that is zero up to float32 summation noise (a dead
  # ReLU) moves by up to lr in either direction. eps=1e-3 (FedAdam's tau,
  # Reddi et al.) keeps the comparison about the algorithm, not that noise.
  server_lr, kw = (1.0, {}) if server == 'sgd' else (0.01, {'eps': 1e-3})
  ours = fedavg(model, FEATURES, getattr(optax, server)(server_lr, **kw),
                LR, STEPS, BATCH)
  theirs = fed_avg.federated_averaging(
      grad_fn=lambda p, b, r: jax.grad(lambda q: jnp.mean(cross_entropy(
          model.apply(q, b['x']), b['y'])))(p),
      client_optimizer=fedjax.optimizers.sgd(LR),
      server_optimizer=getattr(fedjax.optimizers, server)(server_lr, **kw),
      client_batch_hparams=fedjax.ShuffleRepeatBatchHParams(
          batch_size=BATCH, num_epochs=None, num_steps=STEPS,
          skip_shuffle=True))

  state, rows = ours.init(jax.random.PRNGKey(0), len(COUNTS))
  initial = state.server.params
  their_state = theirs.init(initial)
  apply = jax.jit(ours.apply)
  val = ValBatch(x[0, :4], y[0, :4], np.full(4, 0.25, np.float32))
  for r in range(ROUNDS):
    key = jax.random.PRNGKey(100 + r)
    clients = rng.permutation(5)[:4]  # a different subset and order each round
    batch = RoundBatch(clients, ClientBatch(x[clients], y[clients],
                                            COUNTS[clients]), val)
    state, rows, metrics = apply(state, rows, batch, key)
    assert bool(metrics.updated)  # the server's divergence test accepts it
    # fedjax walks each client's examples in order; give it ours (the
    # round's key: (propose, train); the train key: one per client).
    fj_clients = []
    client_keys = jax.random.split(jax.random.split(key)[1], 4)
    for k, (i, ck) in enumerate(zip(clients, client_keys)):
      order = np.asarray(example_order(jax.random.split(ck)[0], COUNTS[i],
                                       N_MAX))[:COUNTS[i]]
      data = fedjax.ClientDataset({'x': FEATURES(x[i][order]),
                                   'y': y[i][order]})
      fj_clients.append((str(i).encode(), data, jax.random.PRNGKey(k)))
    their_state, _ = theirs.apply(their_state, fj_clients)

  ours_leaves = jax.tree_util.tree_leaves(state.server.params)
  their_leaves = jax.tree_util.tree_leaves(their_state.params)
  init_leaves = jax.tree_util.tree_leaves(initial)
  assert max(float(jnp.abs(a - b).max())
             for a, b in zip(ours_leaves, init_leaves)) > 1e-2
  for a, b in zip(ours_leaves, their_leaves):
    np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)
