"""The divergence tests (`pfhpo.federated.divergence`) at their bounds.

A client diverged when its parameters are non-finite, or its mean training
loss or its trained model's loss on its first batch ends above ten times
the larger of its first step's loss and a uniform guess's, log(classes);
the server rejects an aggregate whose validation loss is non-finite or
above ten times log(classes). The losses here sit 1% either side of those
bounds (and at them: "at most" accepts), so a bound of 5x or 100x, the
smaller of the two losses, or a flipped comparison fails.
"""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.federated import make_round
from pfhpo.federated.divergence import make_diverged, make_rejected
from pfhpo.policies import static
from pfhpo.types import LocalStats
from test_round import SPACE, linear_model, problem

PARAMS = {'w': jnp.ones((3, 2)), 'b': jnp.zeros(2)}


def stats(loss, start, end):
  return LocalStats(jnp.float32(loss), jnp.float32(1.0), jnp.float32(start),
                    jnp.float32(end))


def test_a_client_diverges_just_above_ten_times_its_start_loss():
  """Ten classes (a guess's loss log 10 = 2.30) and a first-step loss of
  5.0 above it: the bound is 10 x 5.0 = 50. A mean training loss or an
  end loss of 49.5 or 50 is a client that trained; 50.5 in either is one
  that diverged."""
  diverged = jax.jit(make_diverged(10))
  for loss, end in ((49.5, 49.5), (50.0, 50.0), (1.0, 49.5), (49.5, 1.0)):
    assert not bool(diverged(PARAMS, stats(loss, 5.0, end))), (loss, end)
  for loss, end in ((50.5, 1.0), (1.0, 50.5), (50.5, 50.5)):
    assert bool(diverged(PARAMS, stats(loss, 5.0, end))), (loss, end)


def test_a_client_that_starts_below_a_guess_is_bounded_by_the_guess():
  """Ten classes, a first-step loss of 0.1 below a guess's: the bound is
  10 log 10 = 23.03, not 10 x 0.1 = 1. Losses of 22.8 pass, 23.26 (1%
  above) in either the mean or the end loss fail."""
  bound = 10 * np.log(10)
  diverged = jax.jit(make_diverged(10))
  below, above = 0.99 * bound, 1.01 * bound
  assert not bool(diverged(PARAMS, stats(below, 0.1, below)))
  assert bool(diverged(PARAMS, stats(above, 0.1, 1.0)))
  assert bool(diverged(PARAMS, stats(1.0, 0.1, above)))


def test_a_non_finite_client_diverges():
  """NaN or inf in the mean loss, the end loss or the parameters: each
  alone makes the client diverged, whatever its losses."""
  diverged = jax.jit(make_diverged(10))
  for bad in (np.nan, np.inf):
    assert bool(diverged(PARAMS, stats(bad, 5.0, 1.0)))
    assert bool(diverged(PARAMS, stats(1.0, 5.0, bad)))
    nan_params = {'w': PARAMS['w'].at[1, 0].set(bad), 'b': PARAMS['b']}
    assert bool(diverged(nan_params, stats(1.0, 5.0, 1.0)))
  assert not bool(diverged(PARAMS, stats(1.0, 5.0, 1.0)))


def test_the_server_rejects_an_aggregate_just_above_ten_guesses():
  """The bound is 10 log(classes): 23.03 for ten classes, 6.93 for two.
  A validation loss 1% below it, or at it, is accepted; 1% above, inf or
  NaN is rejected."""
  for classes in (2, 10):
    rejected = jax.jit(make_rejected(classes))
    bound = 10 * np.log(classes)
    for loss in (0.99 * bound, bound, 1.0):
      assert not bool(rejected(jnp.float32(loss))), (classes, loss)
    for loss in (1.01 * bound, np.inf, np.nan):
      assert bool(rejected(jnp.float32(loss))), (classes, loss)


def test_the_round_rejects_an_aggregate_just_above_the_bound():
  """The round's own test (`test_round`'s two-class problem, one static
  configuration): the validation loss is a weighted sum, so scaling the
  validation weights by a scales the aggregate's loss by a without moving
  the aggregate. Scaled to 0.99 and 1.01 of 10 log 2, the first aggregate
  is accepted (the server moves) and the second rejected (it keeps its
  model)."""
  algorithm = make_round(linear_model(), lambda x: x, optax.sgd(1.0), SPACE,
                         static(SPACE, 1))
  state, rows = algorithm.init(jax.random.PRNGKey(0), 8)
  step = jax.jit(algorithm.apply)
  batch = problem()
  _, _, plain = step(state, rows, batch, jax.random.PRNGKey(0))
  bound = 10 * np.log(2)
  scale = bound / float(plain.val_loss)
  assert scale > 2  # the plain aggregate is far inside the bound
  for factor, rejected in ((0.99, False), (1.01, True)):
    scaled = batch._replace(val=batch.val._replace(
        weight=np.float32(factor * scale) * batch.val.weight))
    new, _, metrics = step(state, rows, scaled, jax.random.PRNGKey(0))
    np.testing.assert_allclose(float(metrics.val_loss), factor * bound,
                               rtol=1e-4)
    assert bool(metrics.rejected) == rejected, factor
    assert bool(metrics.updated) == (not rejected), factor
    assert int(metrics.dropped_clients) == 0
    assert np.array_equal(new.server.params['w'],
                          state.server.params['w']) == rejected
