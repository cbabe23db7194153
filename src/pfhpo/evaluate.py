"""Global-model evaluation over many clients' examples, compiled once.

The real examples of every client in a split, stored end to end, are cut
into fixed-size chunks, so evaluation costs the number of real examples,
not clients x the largest client. Per-client sums come back with a
segment sum over the example's client index:

    acc_i  = (1 / n_i) sum_{j in client i} [argmax f(x_j) = y_j]
    pooled = sum_i n_i acc_i / sum_i n_i,    client mean = mean_{i: n_i > 0} acc_i
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.data.federated import ClientSplit
from pfhpo.federated.client_rows import take_rows
from pfhpo.models import Model, accuracy, cross_entropy


class GlobalMetrics(NamedTuple):
  """The global model on every client's test split."""
  loss: jax.Array  # f32[] pooled over every example
  acc: jax.Array  # f32[] pooled
  client_acc_mean: jax.Array  # f32[] mean over clients with test examples
  client_acc: jax.Array  # f32[C]


class PersonalMetrics(NamedTuple):
  """Personalised (fine-tuned) accuracy over the clients with test data."""
  mean: float
  p10: float  # bottom decile: the 10th percentile
  pooled: float  # weighted by test examples
  # Of them, the clients never in a round (the policy never saw them), and
  # their mean (NaN if none).
  unseen: int = 0
  unseen_mean: float = float('nan')
  client_acc: np.ndarray | None = None  # f32[C] (NaN: no test examples)


# Clients whose data are on the device at once when every client is walked
# (`by_blocks`): personalisation, and the policies' view of every client.
PERSONAL_BLOCK = 256


class EvalSet(NamedTuple):
  x: np.ndarray  # u8/f32[M, *feature_shape], M a multiple of the chunk size
  y: np.ndarray  # i32[M] (i32[M, T] for sequences)
  client: np.ndarray  # i32[M]; num_clients marks padding


def make_eval_set(split: ClientSplit, chunk: int) -> EvalSet:
  """Flattens a split's real examples, padded to a multiple of `chunk`."""
  x, y, client = split.x, split.y, split.client_of
  pad = -len(y) % chunk
  return EvalSet(
      np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)]),
      np.concatenate([y, np.zeros((pad, *y.shape[1:]), np.int32)]),
      np.concatenate([client, np.full(pad, split.num_clients, np.int32)]))


def make_evaluate(model: Model, features: Callable, num_clients: int,
                  chunk: int) -> Callable:
  """evaluate(params, EvalSet) -> GlobalMetrics."""

  def evaluate(params, data: EvalSet):
    def forward(xy):
      x, y = xy
      logits = model.apply(params, features(x))
      return cross_entropy(logits, y), accuracy(logits, y)

    chunks = lambda a: a.reshape(-1, chunk, *a.shape[1:])
    loss, correct = jax.lax.map(forward, (chunks(data.x), chunks(data.y)))
    seg = lambda v: jax.ops.segment_sum(
        v.reshape(-1).astype(jnp.float32), data.client,
        num_segments=num_clients + 1)[:num_clients]
    n = seg(jnp.ones_like(loss))  # f32[C]
    client_acc = seg(correct) / jnp.maximum(n, 1)
    has = n > 0
    return GlobalMetrics(
        loss=seg(loss).sum() / n.sum(), acc=seg(correct).sum() / n.sum(),
        client_acc_mean=jnp.sum(jnp.where(has, client_acc, 0)) / has.sum(),
        client_acc=client_acc)

  return evaluate


def make_validate(model: Model, features: Callable) -> Callable:
  """validate(params, ValBatch) -> f32[]: the weighted validation accuracy
  sum_j w_j 1[argmax f(x_j) = y_j], as the round weighs its loss."""

  def validate(params, val):
    return jnp.sum(val.weight * accuracy(model.apply(params, features(val.x)),
                                         val.y))

  return validate


def make_val_loss(model: Model, features: Callable) -> Callable:
  """val_loss(params, ValBatch) -> f32[]: the weighted validation
  cross-entropy sum_j w_j l(f(x_j), y_j), the round's validation loss."""

  def val_loss(params, val):
    return jnp.sum(val.weight * cross_entropy(
        model.apply(params, features(val.x)), val.y))

  return val_loss


def make_personalized_evaluate(model: Model, features: Callable,
                               personalize: Callable, chunk: int,
                               block: int = PERSONAL_BLOCK) -> Callable:
  """Personalised accuracy: each client's personal model, given the
  configuration its policy prefers, measured on its own test split. For
  FedAvg the personal model is the global model fine-tuned on the client's
  train split (the "refine" evaluation of Khodak et al., NeurIPS 2021);
  `personalize` is the algorithm's (`ClientAlgorithm.personalize`).

  evaluate(params, table (per-client rows [C, ...], host), train:
           ClientSplit, hparams (per client), keys, test: ClientSplit)
    -> f32[C] accuracy (NaN for a client without test examples).

  The clients are walked `block` at a time from the host (`by_blocks`);
  within a block `chunk` clients fine-tune side by side.
  """

  def one_client(params, row, x, y, count, hp, key, tx, ty, tmask):
    personal = personalize(params, row, x, y, count, hp, key)
    correct = accuracy(model.apply(personal, features(tx)), ty)
    n = jnp.sum(tmask)
    return jnp.where(n > 0, jnp.sum(correct * tmask) / jnp.maximum(n, 1),
                     jnp.nan)

  @jax.jit
  def one_block(params, *clients):
    return jax.lax.map(lambda a: one_client(params, *a), clients,
                       batch_size=chunk)

  def evaluate(params, table, train: ClientSplit, hparams, keys,
               test: ClientSplit) -> np.ndarray:
    hparams = jax.tree_util.tree_map(np.asarray, hparams)
    keys = np.asarray(keys)
    return by_blocks(train.num_clients, block, lambda idx: one_block(
        params, take_rows(table, idx), train.padded_x(idx),
        train.padded_y(idx), train.counts[idx],
        jax.tree_util.tree_map(lambda a: a[idx], hparams), keys[idx],
        test.padded_x(idx), test.padded_y(idx), test.padded_mask(idx)))

  return evaluate


def by_blocks(num_clients: int, block: int,
              fn: Callable[[np.ndarray], jax.Array]) -> np.ndarray:
  """fn over every client, `block` at a time: [C, ...].

  fn(idx) takes i32[block] client indices (the last block padded with
  repeats of the last client, so that every call has one shape and fn
  compiles once) and returns a value per client; only a block's data need
  be on the device at once, whatever C.
  """
  size = min(block, num_clients)
  out = []
  for start in range(0, num_clients, size):
    idx = np.minimum(np.arange(start, start + size), num_clients - 1)
    out.append(np.asarray(fn(idx))[:min(size, num_clients - start)])
  return np.concatenate(out)


def summarize_personal(acc: np.ndarray, test_counts: np.ndarray,
                       seen: np.ndarray | None = None) -> PersonalMetrics:
  """acc: f32[C] (NaN: no test examples), test_counts: i32[C], seen: bool[C]
  the clients that were in a round (None: all)."""
  acc = np.asarray(acc)
  has_test = ~np.isnan(acc)
  unseen = has_test & (False if seen is None else ~np.asarray(seen))
  n = np.asarray(test_counts)[has_test]
  mine = acc[has_test]
  return PersonalMetrics(
      float(mine.mean()), float(np.percentile(mine, 10)),
      float(np.sum(n * mine) / np.sum(n)), int(unseen.sum()),
      float(acc[unseen].mean()) if unseen.any() else float('nan'), acc)


def group_means(values: np.ndarray, weights: np.ndarray, group: np.ndarray,
                num_groups: int) -> np.ndarray:
  """Per group g, sum_{i in g} n_i v_i / sum_{i in g} n_i over its clients
  with weight n_i > 0 and a value (NaN for a group with none). values,
  weights: [C]; group: i32[C] in [0, num_groups). f64[num_groups]."""
  values, weights = np.asarray(values, np.float64), np.asarray(weights)
  ok = (weights > 0) & ~np.isnan(values)
  w = np.where(ok, weights, 0)
  total = np.bincount(group, w, num_groups)
  summed = np.bincount(group, np.where(ok, w * values, 0), num_groups)
  return np.where(total > 0, summed / np.where(total > 0, total, 1), np.nan)
