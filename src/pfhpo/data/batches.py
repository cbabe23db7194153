"""A round's inputs from a federated data set: its clients' training rows,
the validation examples of the aggregate, and the clients' own validation
splits.

The validation loss of the aggregated model is a weighted sum over a
`ValBatch`: a fixed server-held set (`server_val_batch`, uniform weights),
or the round's clients' own validation splits (`federated_val_batch`:
client i's examples weighted w_i / n_i^val, so the server averages the
clients' validation losses with the aggregation weights w_i = D_i / D).
"""
from __future__ import annotations

import numpy as np
from jax.sharding import Mesh

from pfhpo.data.federated import ClientSplit, FederatedData
from pfhpo.federated.sharding import client_rows
from pfhpo.types import ClientBatch, RoundBatch, ValBatch

VAL_SOURCES = ('server', 'federated')


def client_batch(split: ClientSplit, clients: np.ndarray,
                 mesh: Mesh | None = None) -> ClientBatch:
  """The rows of `clients` (i32[K]) of one split, padded to its width
  (split over `mesh`'s devices, each process gathering its own:
  `sharding.client_rows`)."""
  take_count = lambda c: split.counts[c]
  return ClientBatch(*(client_rows(take, clients, mesh) for take in (
      split.padded_x, split.padded_y, take_count)))


def server_val_batch(split: ClientSplit, size: int, seed: int) -> ValBatch:
  """A fixed server-held set: `size` examples drawn without replacement from
  all clients' validation splits (all of them if there are fewer)."""
  pick = np.random.default_rng(seed).permutation(len(split.y))[:size]
  return ValBatch(split.x[pick], split.y[pick],
                  np.full(len(pick), 1.0 / len(pick), np.float32))


def federated_val_batch(split: ClientSplit, clients: np.ndarray,
                        train_counts: np.ndarray) -> ValBatch:
  """The round's clients' validation splits, client i weighted w_i / n_i."""
  mask = split.padded_mask(clients)  # bool[K, Nv]
  n_val = np.maximum(mask.sum(1, keepdims=True), 1)
  w = train_counts / train_counts.sum()
  weight = np.where(mask, w[:, None] / n_val, 0.0).astype(np.float32)
  weight /= weight.sum()
  x = split.padded_x(clients)
  y = split.padded_y(clients)
  return ValBatch(x.reshape(-1, *x.shape[2:]), y.reshape(-1, *y.shape[2:]),
                  weight.reshape(-1))


def round_batch(data: FederatedData, clients: np.ndarray,
                server_val: ValBatch | None, local_val: bool,
                mesh: Mesh | None = None) -> RoundBatch:
  """The round of `clients` (i32[K]): validated on `server_val`, or on the
  clients' own splits when it is None; with their validation splits as
  `local_val` when a policy learns from them. Over a `mesh`, the clients'
  rows are split over its devices; the validation set, which every device
  evaluates the aggregate on, is whole on every process."""
  val = (server_val if server_val is not None else
         federated_val_batch(data.val, clients, data.train.counts[clients]))
  return RoundBatch(clients.astype(np.int32),
                    client_batch(data.train, clients, mesh), val,
                    client_batch(data.val, clients, mesh) if local_val
                    else None)
