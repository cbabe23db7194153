"""Many processes, one run: JAX's multi-controller runtime.

Every process runs the same program on its own devices (SPMD). `initialize`
joins them through `jax.distributed.initialize` (a coordinator at
`coordinator_address`, which process 0 serves; on CPU the collectives run
over gloo), after which `jax.devices()` lists every process's devices and
the round's client axis spans them all (`federated.sharding.client_mesh`).
Each process gathers and sends to its devices only the rows of the clients
those devices train (`federated.sharding.client_rows`); the round's outputs
come back replicated, so every process holds the same state, and process 0
alone writes the run's files and checkpoints (`is_writer`).

The settings come from the command line (`--coordinator_address`,
`--num_processes`, `--process_id`) or, where a flag is not given, from
JAX's environment variables `JAX_COORDINATOR_ADDRESS`, `JAX_NUM_PROCESSES`
and `JAX_PROCESS_ID`; under SLURM (`SLURM_NTASKS` > 1) JAX finds the
coordinator and the process id itself.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import jax

from pfhpo.errors import ConfigError
from pfhpo.settings import require

ENVIRONMENT = {'coordinator_address': 'JAX_COORDINATOR_ADDRESS',
               'num_processes': 'JAX_NUM_PROCESSES',
               'process_id': 'JAX_PROCESS_ID'}


class Processes(NamedTuple):
  """Which processes make up the run; all None: this process alone."""
  coordinator_address: str | None = None  # host:port of process 0
  num_processes: int | None = None
  process_id: int | None = None  # this process's rank, 0 .. num_processes-1


def from_environment(given: Processes) -> Processes:
  """`given`, its unset fields read from JAX's environment variables (and
  the process count from SLURM's, under `srun`)."""
  values = given._asdict()
  for name, variable in ENVIRONMENT.items():
    if values[name] is None and os.environ.get(variable):
      values[name] = os.environ[variable]
  if values['num_processes'] is None and os.environ.get('SLURM_NTASKS'):
    values['num_processes'] = os.environ['SLURM_NTASKS']
  for name in ('num_processes', 'process_id'):
    if values[name] is not None:
      try:
        values[name] = int(values[name])
      except ValueError:
        raise ConfigError(f'`{name}` must be an integer, got '
                          f'{values[name]!r}') from None
  return Processes(**values)


def initialize(given: Processes) -> Processes:
  """Joins the run's processes (nothing to do for one); the settings used.

  A process count above one needs the coordinator's address and this
  process's id, from the flags, JAX's environment variables or SLURM.
  """
  p = from_environment(given)
  n = p.num_processes
  if n is None or n == 1:
    require(p.process_id in (None, 0), f'`process_id`={p.process_id} needs '
            f'`num_processes` above it; pass `num_processes`.')
    return p
  require(n > 1, f'`num_processes` must be >= 1, got {n}')
  slurm = bool(os.environ.get('SLURM_NTASKS'))
  require(p.coordinator_address or slurm,
          f'`num_processes`={n} needs `coordinator_address` (host:port of '
          f'process 0), or JAX_COORDINATOR_ADDRESS in the environment.')
  require(p.process_id is not None or slurm,
          f'`num_processes`={n} needs `process_id` (0 to {n - 1}), or '
          f'JAX_PROCESS_ID in the environment.')
  require(p.process_id is None or 0 <= p.process_id < n,
          f'`process_id` must be in 0..{n - 1}, got {p.process_id}')
  try:
    jax.distributed.initialize(p.coordinator_address, n, p.process_id)
  except (RuntimeError, ValueError) as e:  # unreachable coordinator, ...
    reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    raise ConfigError(
        f'cannot join the run\'s {n} processes at `coordinator_address`='
        f'{p.coordinator_address} ({reason}); check the address and that '
        f'every process was started.') from None
  return p._replace(process_id=jax.process_index())


def is_writer() -> bool:
  """Whether this process writes the run's files: process 0 alone."""
  return jax.process_index() == 0
