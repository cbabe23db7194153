"""The run state and its checkpoints, written atomically with orbax.

`RunState` is everything the rest of a run depends on, one record: the
algorithm's state on the device (server, policy), the per-client rows on the
host, the device-side counters, and the host-side history (metrics rows,
per-round choice counts, timing). A checkpoint holds it as arrays (orbax's
`StandardSave`) beside JSON (`JsonSave`), and the per-client table as one
`.npy` file per leaf in `table-<round>/` beside orbax's step: orbax copies
what it saves about twice over in memory, which a table of C personal
models (16 GB for Ditto on FEMNIST) cannot afford, where `np.save` streams
it and `restore` reads it back into the run's own table in place.
`restore` gives it all back in one call. The client sampler and the round keys derive from (seed, round), so
they need no saving. orbax writes each checkpoint into a temporary directory
and renames it when complete, so a process killed mid-save leaves the
previous checkpoint intact; the newest two are kept. A step's table is
written (to a temporary directory, then renamed) before its orbax step, so
every complete step has its table. A checkpoint that
cannot be read or does not fit the run is a `ConfigError`, never a silent
fresh start; a step's stored values are all read before orbax restores it
(`_check_values`), so that one cut short is that error and nothing else.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import tensorstore as ts

from pfhpo.errors import ConfigError
from pfhpo.experiment.records import MetricsRow
from pfhpo.types import RoundMetrics, RoundState

DIRNAME = 'checkpoints'

# orbax logs every save at INFO through absl; a run's progress bar is enough.
logging.getLogger('absl').setLevel(logging.WARNING)


class Totals(NamedTuple):
  """Counters kept on the device (i32[] each)."""
  local_steps: jax.Array
  dropped_clients: jax.Array
  rejected_aggregates: jax.Array  # refused by the server's divergence test
  stalled_rounds: jax.Array  # the latest rounds in a row without an update

  @staticmethod
  def zeros() -> 'Totals':
    return Totals(*(jnp.zeros((), jnp.int32) for _ in Totals._fields))

  def add(self, m: RoundMetrics) -> 'Totals':
    """The counters after round `m`."""
    return Totals(self.local_steps + m.local_steps_total,
                  self.dropped_clients + m.dropped_clients,
                  self.rejected_aggregates + m.rejected,
                  jnp.where(m.updated, 0, self.stalled_rounds + 1))


class RunState(NamedTuple):
  round: int  # rounds done
  algorithm: RoundState
  client_table: Any  # per-client rows, host-resident (`client_rows.py`)
  totals: Totals
  rows: tuple[MetricsRow, ...]  # metrics.jsonl so far
  choice_counts: tuple[tuple[int, ...], ...]  # per round, clients per config
  first_round_seconds: float | None  # including compilation
  seconds: float  # wall time so far

  def arrays(self) -> dict:
    """What orbax saves. ('client_table' stays in it, empty, so that
    checkpoints written before the table moved beside it still restore.)"""
    return {'algorithm': self.algorithm, 'client_table': (),
            'totals': self.totals}


def host(tree):
  """`tree`'s arrays as numpy on this host (a replicated array of a
  many-process run reads as this process's copy)."""
  return jax.tree_util.tree_map(np.asarray, tree)


class RunCheckpoints:
  """The checkpoints of the run in `out_dir` (under `out_dir/checkpoints`)."""

  def __init__(self, out_dir: str | Path | None, keep: int = 2,
               writes: bool = True):
    """`writes=False`: a process of a many-process run other than process
    0, which only restores (from `out_dir` when resuming: None otherwise)
    and saves nothing. Each process runs orbax as a process of its own
    (the state it saves is replicated: process 0's copy is all of it)."""
    self.writes = writes
    self._manager = None
    if out_dir is None:
      return
    self.directory = (Path(out_dir) / DIRNAME).absolute()
    if writes:
      self.directory.mkdir(parents=True, exist_ok=True)
    me = jax.process_index()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=False, enable_async_checkpointing=False,
            multiprocessing_options=ocp.options.MultiprocessingOptions(
                primary_host=me, active_processes={me})))

  def save(self, state: RunState) -> None:
    if not self.writes:
      return
    meta = {'round': state.round, 'rows': [r.to_json() for r in state.rows],
            'choice_counts': state.choice_counts,
            'first_round_seconds': state.first_round_seconds,
            'seconds': state.seconds}
    self._write_table(state.round, state.client_table)
    self._manager.save(state.round, args=ocp.args.Composite(
        state=ocp.args.StandardSave(host(state.arrays())),
        meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()
    kept = {self._table(r) for r in self._manager.all_steps()}
    for path in self.directory.glob('table-*'):
      if path not in kept:  # the tables of steps orbax dropped, or torn
        shutil.rmtree(path)

  def _table(self, round_: int) -> Path:
    return self.directory / f'table-{round_}'

  def _write_table(self, round_: int, table) -> None:
    """Leaf i of `table` to table-<round>/i.npy, atomically."""
    final, partial = self._table(round_), self.directory / f'partial-{round_}'
    for path in (final, partial):
      shutil.rmtree(path, ignore_errors=True)
    partial.mkdir(parents=True)
    for i, leaf in enumerate(jax.tree_util.tree_leaves(table)):
      np.save(partial / f'{i}.npy', np.asarray(leaf), allow_pickle=False)
    partial.rename(final)

  def _read_table(self, round_: int, like):
    """table-<round> read into `like`'s own arrays (numpy, in place)."""
    leaves = jax.tree_util.tree_leaves(like)
    for i, leaf in enumerate(leaves):
      path = self._table(round_) / f'{i}.npy'
      try:
        stored = np.load(path, mmap_mode='r', allow_pickle=False)
      except (OSError, ValueError) as e:
        raise ConfigError(
            f'`resume`: the per-client table {path} cannot be read '
            f'({type(e).__name__}); delete {self.directory / str(round_)} to '
            'resume from an earlier checkpoint, or start a new `out_dir`.'
        ) from None
      if stored.shape != leaf.shape or stored.dtype != leaf.dtype:
        raise ConfigError(
            f'`resume`: the per-client table {path} holds {stored.dtype}'
            f'{list(stored.shape)}, not this run\'s {leaf.dtype}'
            f'{list(leaf.shape)}; start a new `out_dir`.')
      leaf[...] = stored
    return like

  def _check_values(self, round_: int) -> None:
    """Reads every value of step `round_`'s arrays (orbax's OCDBT store),
    waiting for each read, and raises the first failure. A file cut short
    (a crash mid-write) fails here rather than in orbax's restore, which
    stops at its first failed read and closes its event loop while the
    others still run: each then prints a traceback when it ends."""
    path = self.directory / str(round_) / 'state'
    if not (path / 'manifest.ocdbt').exists():
      return  # another layout: orbax's restore reads it
    try:
      store = ts.KvStore.open({'driver': 'ocdbt', 'base': {
          'driver': 'file', 'path': f'{path}/'}}).result()
      reads = {key: store.read(key) for key in store.list().result()}
    except Exception as e:  # the store's own files cannot be read
      raise self._unreadable(round_, _first_line(e)) from None
    errors = {key: read.exception()  # waits for the read
              for key, read in reads.items()}
    for key, error in errors.items():
      if error is not None:
        raise self._unreadable(round_,
                               f'{key.decode()}: {_first_line(error)}')

  def _unreadable(self, round_: int, reason: str) -> ConfigError:
    return ConfigError(
        f'`resume`: the checkpoint {self.directory / str(round_)} cannot be '
        f'read or does not fit this run ({reason}); delete that directory '
        f'to resume from an earlier checkpoint, or start a new `out_dir`.')

  def restore(self, like: RunState) -> RunState:
    """The newest checkpoint, its arrays shaped and placed like `like`'s."""
    round_ = self._manager.latest_step()
    if round_ is None:
      raise ConfigError(
          f'`resume`: {self.directory} holds no checkpoint; run without '
          f'`resume` into a new `out_dir`.')
    self._check_values(round_)
    try:
      got = self._manager.restore(round_, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(host(like.arrays())),
          meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax/tensorstore raise many kinds; all fatal
      raise self._unreadable(round_, _first_line(e)) from None
    arrays = jax.tree_util.tree_map(  # device arrays where `like` had them
        # (an uncommitted one stays free to join any computation)
        lambda a, b: jax.device_put(a, b.sharding if b.committed else None)
        if isinstance(b, jax.Array) else np.asarray(a),
        got.state, like.arrays())
    meta = got.meta
    return RunState(
        meta['round'], arrays['algorithm'],
        self._read_table(round_, like.client_table),
        Totals(*arrays['totals']),
        tuple(MetricsRow.from_json(r) for r in meta['rows']),
        tuple(map(tuple, meta['choice_counts'])),
        meta['first_round_seconds'], meta['seconds'])

  def close(self) -> None:
    if self._manager is not None:
      self._manager.close()


def saved_rounds(out_dir: str | Path) -> list[int]:
  """The rounds of run directory `out_dir`'s finished checkpoints, as
  orbax reads them: a checkpoint cut short while it was written (orbax's
  temporary directory, also named after its round) is none."""
  return ocp.path.step.checkpoint_steps(Path(out_dir) / DIRNAME)


def _first_line(error: Exception) -> str:
  """`error`'s message, its first line cut to 200 characters (its type's
  name if it has none)."""
  return str(error).splitlines()[0][:200] if str(error) else (
      type(error).__name__)
