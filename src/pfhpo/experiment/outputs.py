"""A run's directory: claimed and locked for the run's life, its files.

A run writes, in its `out_dir`:

* `config.json`: the configuration (its groups) and what it resolved to
  (device, conv implementation, client count), before the first round;
* `metrics.jsonl`: one `MetricsRow` per evaluated round, flushed at once;
* `choices.jsonl`: every round's clients and the configuration each used;
* `summary.json`: the `Summary`;
* `accuracy.png`, and for a categorical policy `policy.png` (the final
  policy, clients x configurations) and `choices.png` (the share of each
  round's clients using each configuration);
* `checkpoints/`: the run state (`checkpoints.py`), for `resume`.

An `out_dir` that holds another run's files is refused unless resumed, and
a run holds an exclusive lock (`.lock`, released when its process ends,
however it ends) so that a second run into the same directory is refused
instead of interleaving its rows. Every check runs before anything is
written. Without an `out_dir`, a run claims a new `runs/<name>-<time>`.
"""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pfhpo.errors import ConfigError
from pfhpo.experiment.records import MetricsRow, Summary
from pfhpo.settings import require

RUN_FILES = ('config.json', 'metrics.jsonl', 'summary.json', 'choices.jsonl')


def write_atomic(path: Path, text: str) -> None:
  """Writes `text` atomically (temporary file, then rename)."""
  tmp = path.with_suffix(path.suffix + '.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)


def write_json(path: Path, obj) -> None:
  write_atomic(path, json.dumps(obj, indent=2, sort_keys=True))


def check_out_dir(out_dir: str | None, resume: bool) -> None:
  """Refuses an `out_dir` that is a file, that holds another run (unless
  `resume`), or that holds no run to resume; writes nothing."""
  if out_dir is None:
    return
  path = Path(out_dir)
  require(not path.exists() or path.is_dir(),
          f'`out_dir`={out_dir} is a file, not a directory; pass a new '
          f'`out_dir`.')
  existing = [f for f in RUN_FILES if (path / f).exists()]
  if resume:
    require((path / 'config.json').exists(),
            f'`resume`: {out_dir} holds no run to resume; drop `resume` to '
            f'start one there.')
  elif existing:
    raise ConfigError(
        f'`out_dir`={out_dir} already holds a run ({existing[0]}); pass a '
        f'new `out_dir`, `resume` to continue it, or remove the old one.')


def lock(directory: Path, held: str) -> int:
  """Locks `directory` for this process: an exclusive lock on its `.lock`
  (created if missing, nothing else written), held until the returned
  descriptor is closed or the process ends, however it ends. Raises a
  ConfigError saying `held` if another holds it."""
  fd = os.open(directory / '.lock', os.O_RDWR | os.O_CREAT)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    os.close(fd)
    raise ConfigError(held) from None
  return fd


class RunDirectory:
  """The claimed, locked directory of one run, and its log files.

  With `writes=False` (every process of a many-process run but process 0)
  it checks `out_dir` as the writer does and writes nothing; its `path` is
  `out_dir` (None if not given), which such a process reads only to
  resume.
  """

  def __init__(self, out_dir: str | None, name: str, resume: bool,
               writes: bool = True):
    check_out_dir(out_dir, resume)
    self.writes = writes
    self._metrics = self._choices = self._lock = None
    if not writes:
      self.path = Path(out_dir) if out_dir else None
      return
    self.path = Path(out_dir) if out_dir else _new_dir(name)
    try:
      self.path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
      raise ConfigError(f'cannot create `out_dir`={self.path} ({e.strerror}); '
                        f'pass another `out_dir`.') from None
    self._lock = lock(
        self.path, f'another run is writing into `out_dir`={self.path}; '
        f'wait for it to end or pass another `out_dir`.')
    check_out_dir(str(self.path), resume)  # again, now that it is ours

  def start(self, record: dict, rows: tuple[MetricsRow, ...],
            last_round: int) -> None:
    """Writes config.json and opens the logs, cut back to `last_round`
    (what a killed run logged after its last checkpoint is written again)."""
    if not self.writes:
      return
    write_json(self.path / 'config.json', record)
    if last_round:
      lines = (self.path / 'choices.jsonl').read_text().splitlines()
      kept = [l for l in lines if l and json.loads(l)['round'] <= last_round]
      for name, lines in (('choices.jsonl', kept), ('metrics.jsonl', [
          json.dumps(row.to_json()) for row in rows])):
        write_atomic(self.path / name, ''.join(l + '\n' for l in lines))
    self._metrics = open(self.path / 'metrics.jsonl', 'a')
    self._choices = open(self.path / 'choices.jsonl', 'a')

  def log_metrics(self, row: MetricsRow) -> None:
    if not self.writes:
      return
    self._metrics.write(json.dumps(row.to_json()) + '\n')
    self._metrics.flush()

  def log_choices(self, round_: int, clients: np.ndarray, choices, hparams
                  ) -> None:
    """One round's clients, configuration indices and hyper-parameters."""
    if not self.writes:
      return
    self._choices.write(json.dumps({
        'round': round_, 'clients': np.asarray(clients).tolist(),
        'choices': np.asarray(choices).tolist(),
        **{k: np.asarray(v).tolist() for k, v in hparams._asdict().items()},
    }) + '\n')

  def flush(self) -> None:
    if self.writes:
      self._choices.flush()

  def write_summary(self, summary: Summary) -> None:
    if self.writes:
      write_json(self.path / 'summary.json', summary.to_json())

  def close(self) -> None:
    for f in (self._metrics, self._choices):
      if f is not None:
        f.close()
    if self._lock is not None:
      os.close(self._lock)


def _new_dir(name: str) -> Path:
  """runs/<name>-<time>, with -2, -3, ... if another run took it first
  (`name`'s characters other than letters, digits, '.', '_' and '-' as
  '_': `tfds:emnist/letters` names one directory)."""
  name = re.sub(r'[^A-Za-z0-9._-]', '_', name)
  stem = Path('runs') / f'{name}-{time.strftime("%Y%m%d-%H%M%S")}'
  for n in range(1, 1000):
    path = stem if n == 1 else stem.with_name(f'{stem.name}-{n}')
    try:
      path.mkdir(parents=True)
      return path
    except FileExistsError:
      continue
  raise ConfigError(f'{stem}-* all exist; pass an `out_dir`.')


def config_record(cfg, resolved: dict) -> dict:
  """config.json: the groups, and what the run resolved them to."""
  return {**dataclasses.asdict(cfg), 'resolved': resolved}


# What may differ between a run and its resumption: the length, the
# checkpoint period, where the data now live, and the devices and processes.
RESUMABLE = ('rounds', 'resume', 'checkpoint_every', 'stall_rounds', 'data_dir',
             'out_dir', 'resolved.devices', 'resolved.processes')


def check_resumable(out_dir: Path, record: dict) -> None:
  """A resumed (or, in a comparison, reused) run must be the run it
  continues: its config.json `record` equal to the stored one but for
  RESUMABLE settings."""
  stored = json.loads((out_dir / 'config.json').read_text())
  require(isinstance(stored.get('resolved'), dict),
          f'`resume`: {out_dir} was written by an older pfhpo whose run state '
          f'this one cannot read; start a new `out_dir`.')
  changed = changed_setting(stored, record, RESUMABLE)
  if changed:
    name, before, now = changed
    raise ConfigError(
        f'the run in {out_dir} used {name}={before!r}, not {now!r}; pass the '
        f'same settings to continue it, or a new `out_dir`.')


def changed_setting(stored: dict, record: dict, allowed: Sequence[str] = ()
                    ) -> tuple[str, Any, Any] | None:
  """(name, stored value, value now) of the first setting in which config
  records `record` and `stored` differ, but for `allowed`; None if none. A
  setting `stored` lacks (a run of another pfhpo) differs, as None."""
  stored = _flat(stored)
  for name, now in _flat(json.loads(json.dumps(record))).items():
    before = stored.get(name)
    if name not in allowed and before != now:
      return (name if '.' in name else f'`{name}`'), before, now
  return None


def settings_of_record(record: dict) -> dict:
  """The flat settings a config.json `record` holds ({name: value}, what
  `config.override` takes)."""
  return {k: v for k, v in _flat(record).items()
          if not k.startswith('resolved.')}


def _flat(record: dict) -> dict:
  """{setting: value} of a config.json: the groups' settings by name, what
  they resolved to as 'resolved.<name>'."""
  out = {f'resolved.{k}': v for k, v in record.get('resolved', {}).items()}
  for group, settings in record.items():
    if group != 'resolved':
      for name, value in settings.items():
        out.update(value if name == 'options' else {name: value})
  return out
