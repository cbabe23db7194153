"""Per-client state that outlives a round, held on the host.

Algorithms that keep something per client across rounds (a personal head,
a personal model, a hypernetwork embedding) keep it in a table: a pytree of
numpy arrays whose leading axis is the federation's C clients. The table
stays in host memory, where C can be large; each round only the rows of its
K clients travel to the device and back:

    rows  = take_rows(table, clients, mesh)      [K, ...], to the device
    state, rows, metrics = algorithm.apply(state, rows, batch, key)
    put_rows(table, clients, rows)               back into host memory

An algorithm without per-client state has the empty table `()`.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from pfhpo.federated.sharding import client_rows

ClientTable = Any  # pytree of np.ndarray [C, ...]


def take_rows(table: ClientTable, clients: np.ndarray,
              mesh: Mesh | None = None) -> ClientTable:
  """The rows of `clients` (i32[K]), in that order: [K, ...] each (split
  over `mesh`'s devices by `sharding.client_rows`)."""
  return jax.tree_util.tree_map(
      lambda a: client_rows(a.__getitem__, clients, mesh), table)


def put_rows(table: ClientTable, clients: np.ndarray,
             rows: ClientTable) -> None:
  """Writes `rows` ([K, ...] each) into the rows of `clients`, in place (a
  copy of a table of C rows every round would cost more than the round)."""

  def put(a, r):
    a[clients] = np.asarray(r)

  jax.tree_util.tree_map(put, table, rows)


def repeat_rows(row, num_clients: int) -> ClientTable:
  """A table whose C rows all start as `row` (a pytree of arrays): numpy,
  writable, [C, ...] per leaf."""
  return jax.tree_util.tree_map(
      lambda a: np.repeat(np.asarray(a)[None], num_clients, axis=0), row)
