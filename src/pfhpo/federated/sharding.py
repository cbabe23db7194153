"""The client axis over several devices: a one-axis mesh named 'clients'.

The devices are every process's (`jax.devices()`; one process, or many
joined by `pfhpo.distributed.initialize`). Arrays split on the client axis
are built from the host's tables and data splits by `client_rows`, so that
each process gathers and sends only the rows its own devices hold.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec


def client_mesh(devices=None) -> Mesh | None:
  """A one-axis mesh ('clients') over `devices` (default: all); None for one.

  On a CPU host, `XLA_FLAGS=--xla_force_host_platform_device_count=N` (set
  before jax starts) makes N devices that run their shares of the clients
  in parallel, one per core.
  """
  devices = jax.devices() if devices is None else devices
  return Mesh(np.array(devices), ('clients',)) if len(devices) > 1 else None


def client_rows(take: Callable[[np.ndarray], np.ndarray], clients: np.ndarray,
                mesh: Mesh | None):
  """take(clients): the rows [K, ...] of `clients` (i32[K]) of a host-side
  table or data split, on the device(s).

  Sent now, so that the next round's transfer overlaps the round running
  there. Over a mesh, a global array split on its client axis, for which
  each process calls `take` only for the clients of its own devices.
  """
  if mesh is None:
    return jax.device_put(take(clients))
  first = take(clients[:1])  # [1, ...]: the rows' shape and dtype
  return jax.make_array_from_callback(
      (len(clients), *first.shape[1:]),
      NamedSharding(mesh, PartitionSpec(*mesh.axis_names)),
      lambda index: take(clients[index[0]]))


def replicate(tree, mesh: Mesh | None):
  """Places `tree` on every device of `mesh` (unchanged without a mesh).

  The server state must start where the round's outputs land, or the second
  round sees a new input placement and compiles again.
  """
  if mesh is None:
    return tree
  return jax.device_put(tree, replicated(mesh))


def replicated(mesh: Mesh) -> NamedSharding:
  """A whole copy on every device of `mesh`: where the round's outputs go,
  so that every process can read them."""
  return NamedSharding(mesh, PartitionSpec())
