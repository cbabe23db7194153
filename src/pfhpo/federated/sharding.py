"""The client axis over several devices: a one-axis mesh named 'clients'."""
from __future__ import annotations

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


def replicate(tree, mesh: Mesh | None):
  """Places `tree` on every device of `mesh` (unchanged without a mesh).

  The server state must start where the round's outputs land, or the second
  round sees a new input placement and compiles again.
  """
  if mesh is None:
    return tree
  return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
