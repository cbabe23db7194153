"""Run checkpoints: the whole run state, written atomically with orbax.

A checkpoint at round r holds everything the rest of the run depends on:

* `state`: the server (parameters, optimizer state) and the policy state
  (logits and their optimizer state, FedEx's theta, FATHOM's averages, ...),
  saved as arrays by orbax's `StandardSave`;
* `meta` (JSON): the round r, the client sampler's generator state, the
  counters, every metrics row written so far and the per-round choice
  counts (for the plots). The configuration is the run's `config.json`,
  which `--resume` checks against its flags.

The random key of round r is `fold_in(key(seed), r)`, so it needs no
saving. orbax writes each checkpoint into a temporary directory and renames
it when complete, so a process killed mid-save leaves the previous
checkpoint intact; the newest two are kept. A checkpoint that cannot be read
or does not fit the run is a `ConfigError`, never a silent fresh start.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

from pfhpo.errors import ConfigError

DIRNAME = 'checkpoints'

# orbax logs every save at INFO through absl; a run's progress bar is enough.
logging.getLogger('absl').setLevel(logging.WARNING)


class RunCheckpoints:
  """The checkpoints of the run in `out_dir` (under `out_dir/checkpoints`)."""

  def __init__(self, out_dir: str | Path, keep: int = 2):
    self.directory = (Path(out_dir) / DIRNAME).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=False))

  def latest(self) -> int | None:
    """The newest complete checkpoint's round, None if there is none."""
    return self._manager.latest_step()

  def save(self, round_: int, state: Any, meta: dict) -> None:
    """Writes round `round_` (a pytree `state` and a JSON-able `meta`)."""
    self._manager.save(round_, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._manager.wait_until_finished()

  def restore(self, target: Any) -> tuple[int, Any, dict]:
    """(round, state shaped like `target`, meta) of the newest checkpoint."""
    round_ = self.latest()
    if round_ is None:
      raise ConfigError(
          f'--resume: {self.directory} holds no checkpoint; run without '
          f'--resume into a new --out_dir.')
    try:
      got = self._manager.restore(round_, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    except Exception as e:  # orbax/tensorstore raise many kinds; all fatal
      reason = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
      raise ConfigError(
          f'--resume: the checkpoint {self.directory / str(round_)} cannot be '
          f'read or does not fit this run ({reason}); delete that directory to '
          f'resume from an earlier checkpoint, or start a new --out_dir.'
      ) from None
    return round_, got.state, got.meta

  def close(self) -> None:
    self._manager.close()
