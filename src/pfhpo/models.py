"""Flax models: `logreg` (multinomial logistic regression, convex), `mlp`,
`conv` (the FEMNIST CNN), `resnet18` (GroupNorm) and `lstm` (LEAF's
character model, for token sequences).

Every model is a `Model(init, apply)` pair of pure functions over a params
pytree, built for a data set's feature shape and class count:

    params = model.init(key)                                # pytree
    logits = model.apply(params, x, train=..., rng=key)     # f32[B, classes]

A sequence model maps token ids i32[B, T] to f32[B, T, classes], one
prediction a position; its targets are i32[B, T] with `PAD` (0) where the
sequence is padded, and `cross_entropy` and `accuracy` average over the
other positions, so that one example is still one sequence everywhere else.

Convolutions come in two implementations with identical parameters and
identical results (`conv_impl`, `convolution.py`).
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pfhpo.convolution import (CONV_IMPLS, Conv, default_conv_impl,
                               max_pool_2x2)
from pfhpo.errors import ConfigError
from pfhpo.settings import check_choice

Params = Any
MODELS = ('logreg', 'mlp', 'conv', 'resnet18', 'lstm')
SEQUENCE_MODELS = ('lstm',)  # token ids in, a prediction a position out
CONV_MODELS = ('conv', 'resnet18')  # the convolutional networks
# Each model's classifier layer: the last dense layer, by flax's auto-name.
HEADS = {'logreg': 'Dense_0', 'mlp': 'Dense_2', 'conv': 'Dense_1',
         'resnet18': 'Dense_0', 'lstm': 'Dense_0'}
PAD = 0  # the padding target of a sequence, which no loss or accuracy counts


class Model(NamedTuple):
  """A model as two pure functions.

  init:  key -> params
  apply: (params, x: f32[B, *feature_shape], train: bool, rng) -> f32[B, classes]
         (a sequence model: x i32[B, T] -> f32[B, T, classes])
  """
  init: Callable[[jax.Array], Params]
  apply: Callable[..., jax.Array]
  name: str
  num_classes: int
  # The top-level parameter name of the classifier layer, the "head" that
  # FedRep keeps per client (None: the model is not split).
  head: str | None = None


class MLP(nn.Module):
  """Two hidden ReLU layers (fedjax's EMNIST dense model); with none,
  multinomial logistic regression on the flattened inputs."""
  num_classes: int
  hidden: Sequence[int] = (200, 200)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = x.reshape(x.shape[0], -1)
    for h in self.hidden:
      x = nn.relu(nn.Dense(h)(x))
    return nn.Dense(self.num_classes)(x)


class FemnistCNN(nn.Module):
  """The FEMNIST CNN of Reddi et al., "Adaptive Federated Optimization" (ICLR
  2021), layer for layer as fedjax's `models.emnist.create_conv_model`:
  conv3x3(32) - relu - conv3x3(64) - relu - maxpool2 - dropout(0.25) -
  dense(128) - relu - dropout(0.5) - dense(classes)."""
  num_classes: int
  conv_impl: str = 'lax'
  dropout: tuple[float, float] = (0.25, 0.5)

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = nn.relu(Conv(32, (3, 3), padding='VALID', impl=self.conv_impl)(x))
    x = nn.relu(Conv(64, (3, 3), padding='VALID', impl=self.conv_impl)(x))
    x = max_pool_2x2(x)
    x = nn.Dropout(self.dropout[0], deterministic=not train)(x)
    x = x.reshape(x.shape[0], -1)
    x = nn.relu(nn.Dense(128)(x))
    x = nn.Dropout(self.dropout[1], deterministic=not train)(x)
    return nn.Dense(self.num_classes)(x)


class BasicBlock(nn.Module):
  """ResNet basic block (He et al., CVPR 2016) with GroupNorm."""
  features: int
  strides: int
  conv_impl: str
  groups: int

  @nn.compact
  def __call__(self, x):
    conv = lambda f, k, s: Conv(f, (k, k), (s, s), padding='SAME',
                                use_bias=False, impl=self.conv_impl)
    y = nn.relu(nn.GroupNorm(self.groups)(conv(self.features, 3, self.strides)(x)))
    y = nn.GroupNorm(self.groups)(conv(self.features, 3, 1)(y))
    if self.strides != 1 or x.shape[-1] != self.features:
      x = nn.GroupNorm(self.groups)(conv(self.features, 1, self.strides)(x))
    return nn.relu(x + y)


class ResNet18(nn.Module):
  """ResNet-18 for small images (3x3 stem, no max-pool), with GroupNorm in
  place of BatchNorm so there are no batch statistics to federate (Hsieh et
  al., "The Non-IID Data Quagmire of Decentralized ML", ICML 2020)."""
  num_classes: int
  conv_impl: str = 'lax'
  width: int = 64
  groups: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False):
    x = Conv(self.width, (3, 3), use_bias=False, impl=self.conv_impl)(x)
    x = nn.relu(nn.GroupNorm(self.groups)(x))
    for stage, blocks in enumerate((2, 2, 2, 2)):
      for b in range(blocks):
        strides = 2 if stage > 0 and b == 0 else 1
        x = BasicBlock(self.width * 2**stage, strides, self.conv_impl,
                       self.groups)(x)
    x = x.mean(axis=(1, 2))
    return nn.Dense(self.num_classes)(x)


class CharLSTM(nn.Module):
  """LEAF's character model for Shakespeare (Caldas et al. 2018, the model of
  McMahan et al. 2017; fedjax's `models.shakespeare`): an embedding of 8,
  two LSTM layers of 256 and a dense layer to the vocabulary, a next-token
  prediction at every position. i32[B, T] -> f32[B, T, classes]. Causal, so
  the padding at a sequence's end changes no earlier position's output."""
  num_classes: int  # the vocabulary, its reserved tokens included
  embed: int = 8
  hidden: int = 256
  layers: int = 2

  @nn.compact
  def __call__(self, x, train: bool = False):
    h = nn.Embed(self.num_classes, self.embed)(x)  # f32[B, T, embed]
    for _ in range(self.layers):
      h = nn.RNN(nn.OptimizedLSTMCell(self.hidden))(h)  # f32[B, T, hidden]
    return nn.Dense(self.num_classes)(h)


def create(name: str, feature_shape: Sequence[int], num_classes: int,
           conv_impl: str | None = None, dropout: bool = True) -> Model:
  """Builds model `name` for inputs f32[B, *feature_shape] (`lstm`: token
  ids i32[B, T], feature_shape (T,)).

  `dropout=False` turns off the CNN's dropout (for exact equivalence tests:
  a dropout mask depends on the batch's padded shape).
  """
  check_choice('model', name, MODELS)
  conv_impl = conv_impl or default_conv_impl()
  check_choice('conv_impl', conv_impl, CONV_IMPLS)
  if name == 'lstm':
    if len(feature_shape) != 1:
      raise ConfigError(
          f'model {name!r} needs token sequences [T], got shape '
          f'{tuple(feature_shape)}; use it with `dataset`=shakespeare.')
    module = CharLSTM(num_classes)
  elif name in ('mlp', 'logreg'):
    module = MLP(num_classes, () if name == 'logreg' else (200, 200))
  else:
    if len(feature_shape) != 3:
      raise ConfigError(
          f'model {name!r} needs image features [H, W, C], got shape '
          f'{tuple(feature_shape)}; use `model`=mlp for this data set.')
    if name == 'conv':
      module = FemnistCNN(num_classes, conv_impl,
                          (0.25, 0.5) if dropout else (0.0, 0.0))
    else:
      module = ResNet18(num_classes, conv_impl)
  sample = jnp.zeros((1, *feature_shape),
                     jnp.int32 if name in SEQUENCE_MODELS else jnp.float32)

  def init(key):
    return module.init(key, sample)['params']

  def apply(params, x, train=False, rng=None):
    rngs = {'dropout': rng} if train and rng is not None else None
    return module.apply({'params': params}, x, train=train, rngs=rngs)

  return Model(init, apply, name, num_classes, HEADS[name])


def cross_entropy(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Per-example softmax cross-entropy: f32[B, K], i32[B] -> f32[B]; for
  sequences, f32[B, T, K], i32[B, T] -> f32[B], the mean over the positions
  whose target is not `PAD`."""
  log_p = jax.nn.log_softmax(logits)
  nll = -jnp.take_along_axis(log_p, y[..., None], axis=-1)[..., 0]
  return nll if y.ndim == 1 else _mean_over_tokens(nll, y)


def accuracy(logits: jax.Array, y: jax.Array) -> jax.Array:
  """Per-example accuracy, f32[B]: whether the argmax is the label, or for
  sequences the fraction of non-`PAD` positions whose argmax is the next
  token (as `cross_entropy`)."""
  correct = (logits.argmax(-1) == y).astype(jnp.float32)
  return correct if y.ndim == 1 else _mean_over_tokens(correct, y)


def _mean_over_tokens(v: jax.Array, y: jax.Array) -> jax.Array:
  """f32[B, T] -> f32[B]: the mean of v over the positions where y is not
  PAD (0 for a sequence of padding only)."""
  real = y != PAD
  return jnp.sum(jnp.where(real, v, 0.0), -1) / jnp.maximum(real.sum(-1), 1)
