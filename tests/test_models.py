"""Model shapes, and the two convolution implementations agreeing."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pfhpo import convolution, models
from pfhpo.errors import ConfigError


@pytest.mark.parametrize('kernel,strides,padding', [
    ((3, 3), (1, 1), 'VALID'), ((3, 3), (2, 2), 'SAME'),
    ((1, 1), (2, 2), 'SAME'), ((5, 3), (1, 2), 'SAME')])
def test_patches_conv_equals_lax_conv_and_its_gradients(kernel, strides, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (3, 11, 9, 4))
  mods = {impl: convolution.Conv(6, kernel, strides, padding, impl=impl)
          for impl in convolution.CONV_IMPLS}
  params = mods['lax'].init(jax.random.PRNGKey(1), x)
  params = jax.tree_util.tree_map(  # non-zero bias so it is checked too
      lambda a: a + 0.1, params)
  ref = nn.Conv(6, kernel, strides, padding).apply(params, x)
  loss = lambda p, impl: jnp.sum(jnp.sin(mods[impl].apply(p, x)))
  for impl in convolution.CONV_IMPLS:
    np.testing.assert_allclose(mods[impl].apply(params, x), ref, atol=1e-5)
  g = {impl: jax.grad(loss)(params, impl) for impl in convolution.CONV_IMPLS}
  for a, b in zip(jax.tree_util.tree_leaves(g['patches']),
                  jax.tree_util.tree_leaves(g['lax'])):
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_max_pool_matches_flax():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 6, 3))
  np.testing.assert_allclose(
      convolution.max_pool_2x2(x),
      nn.max_pool(x, (2, 2), strides=(2, 2), padding='VALID'))


@pytest.mark.parametrize('name,shape,param_count', [
    ('mlp', (28, 28, 1), 784 * 200 + 200 + 200 * 200 + 200 + 200 * 62 + 62),
    # fedjax's EMNIST CNN: 1,206,590 parameters with 62 classes.
    ('conv', (28, 28, 1), 1206590),
    ('resnet18', (8, 8, 3), None),
])
def test_models_build_with_expected_sizes(name, shape, param_count):
  model = models.create(name, shape, 62)
  params = jax.jit(model.init)(jax.random.PRNGKey(0))
  n = sum(a.size for a in jax.tree_util.tree_leaves(params))
  if param_count is not None:
    assert n == param_count
  logits = jax.jit(model.apply, static_argnames='train')(
      params, jnp.zeros((2, *shape)), train=True, rng=jax.random.PRNGKey(1))
  assert logits.shape == (2, 62)
  assert bool(jnp.all(jnp.isfinite(logits)))


def test_resnet18_implementations_agree():
  shape = (8, 8, 3)
  x = jax.random.normal(jax.random.PRNGKey(2), (2, *shape))
  a, b = (models.create('resnet18', shape, 10, conv_impl=i)
          for i in convolution.CONV_IMPLS)
  params = jax.jit(a.init)(jax.random.PRNGKey(0))
  np.testing.assert_allclose(jax.jit(a.apply)(params, x),
                             jax.jit(b.apply)(params, x), atol=1e-4)


def test_unknown_model_and_wrong_shape_are_config_errors():
  with pytest.raises(ConfigError, match='choose one of'):
    models.create('transformer', (28, 28, 1), 10)
  with pytest.raises(ConfigError, match='`model`=mlp'):
    models.create('conv', (60,), 10)
