"""One representation for every federated data set: clients end to end.

A split (train, validation or test) of C clients holds every client's real
examples one client after another, never padded:

    x:       u8/f32[N, *feature_shape]   features (uint8 where the source is 8-bit)
    y:       i32[N]                      labels (i32[N, T] for sequences)
    offsets: i64[C + 1]                  client i's are [offsets[i], offsets[i + 1])

so a federation costs its examples' bytes on the host, however unequal its
clients. A round pads only its own K clients, to the split's `width` (the
largest client's count when the data were loaded, fixed for the run so that
the round's shapes, and its compilation, never change): `padded_x`,
`padded_y`, `padded_mask`, [K, width, ...] with the real examples first.
Features are converted to float32 on the device by `FederatedData.features`
(`x * x_scale`), so uint8 data cross the host-device boundary at a quarter
of the size. A data set of token sequences (`x_scale` None: Shakespeare)
holds token ids x: u8[N, T] and the next tokens y: i32[N, T], padded with
`models.PAD`; its features are the ids as int32.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import sqlite3
import zlib
from typing import Iterator, Sequence

import numpy as np

from pfhpo.compat import fedjax
from pfhpo.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ClientSplit:
  """One split of every client, its examples end to end."""
  x: np.ndarray  # u8/f32[N, *feature_shape]
  y: np.ndarray  # i32[N] (i32[N, T]: a sequence's next tokens)
  offsets: np.ndarray  # i64[C + 1]
  width: int  # the padded rows' length: at least every client's count

  @functools.cached_property
  def counts(self) -> np.ndarray:  # i32[C]
    return np.diff(self.offsets).astype(np.int32)

  @functools.cached_property
  def client_of(self) -> np.ndarray:  # i32[N]: whose example each is
    return np.repeat(np.arange(self.num_clients, dtype=np.int32), self.counts)

  @property
  def num_clients(self) -> int:
    return len(self.offsets) - 1

  def client(self, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Client i's examples: (x[n_i, ...], y[n_i])."""
    lo, hi = self.offsets[i], self.offsets[i + 1]
    return self.x[lo:hi], self.y[lo:hi]

  def padded_mask(self, clients: np.ndarray) -> np.ndarray:
    """bool[K, width]: True for the real examples of `clients` (i32[K])."""
    return np.arange(self.width) < self.counts[clients][:, None]

  def padded_x(self, clients: np.ndarray) -> np.ndarray:
    """The features of `clients`, zero-padded: [K, width, *feature_shape]."""
    return self._padded(self.x, clients)

  def padded_y(self, clients: np.ndarray) -> np.ndarray:
    """The labels of `clients`, zero-padded: i32[K, width] (i32[K, width,
    T] for sequences)."""
    return self._padded(self.y, clients)

  def _padded(self, a: np.ndarray, clients: np.ndarray) -> np.ndarray:
    clients = np.asarray(clients)
    mask = self.padded_mask(clients)  # bool[K, width]
    out = np.zeros((len(clients), self.width, *a.shape[1:]), a.dtype)
    where = self.offsets[clients][:, None] + np.arange(self.width)
    out[mask] = a[where[mask]]
    return out


@dataclasses.dataclass(frozen=True)
class FederatedData:
  """A federated data set: per-client train / validation / test splits."""
  name: str
  client_ids: tuple[str, ...]
  train: ClientSplit
  val: ClientSplit
  test: ClientSplit
  num_classes: int
  x_scale: float | None  # float features = x * x_scale (None: token ids)
  # Kinds of clients (`groups.py`), and each client's index into them:
  # i32[C] (None: one group, every client in it).
  groups: tuple[str, ...] = ('all',)
  client_group: np.ndarray | None = None

  @property
  def num_clients(self) -> int:
    return len(self.client_ids)

  @property
  def group_of(self) -> np.ndarray:  # i32[C]
    return (np.zeros(self.num_clients, np.int32) if self.client_group is None
            else self.client_group)

  @property
  def feature_shape(self) -> tuple[int, ...]:
    return tuple(self.train.x.shape[1:])

  @property
  def sequences(self) -> bool:
    """Whether examples are token sequences (for a sequence model)."""
    return self.x_scale is None

  def features(self, x):
    """uint8/float features -> float32, token ids -> int32 (works on numpy
    and jax arrays)."""
    if self.sequences:
      return x.astype(np.int32)
    return x.astype(np.float32) * np.float32(self.x_scale)


def join_clients(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                 feature_shape: tuple[int, ...], dtype,
                 target_shape: tuple[int, ...] = ()) -> ClientSplit:
  """Puts per-client example lists end to end in one `ClientSplit`.

  Args:
    xs: C arrays, client i's features `[n_i, *feature_shape]`.
    ys: C arrays, client i's labels `[n_i, *target_shape]`.
    feature_shape: shape of one example's features.
    dtype: storage dtype of the features (uint8 or float32).
    target_shape: shape of one example's label (`(T,)` for sequences).
  """
  counts = np.array([len(y) for y in ys], np.int64)
  offsets = np.concatenate([[0], np.cumsum(counts)])
  x = np.empty((offsets[-1], *feature_shape), dtype)
  y = np.empty((offsets[-1], *target_shape), np.int32)
  for i, (xi, yi) in enumerate(zip(xs, ys)):
    x[offsets[i]:offsets[i + 1]] = xi
    y[offsets[i]:offsets[i + 1]] = yi
  return ClientSplit(x, y, offsets, max(1, int(counts.max(initial=0))))


def split_examples(n: int, fractions: tuple[float, float],
                   rng: np.random.Generator) -> tuple[np.ndarray, ...]:
  """Shuffles `range(n)` and cuts it into train / val / test index arrays.

  `fractions` = (val_fraction, test_fraction); train gets the rest, and
  at least one example whenever n >= 1.
  """
  perm = rng.permutation(n)
  n_val = int(round(fractions[0] * n))
  n_test = int(round(fractions[1] * n))
  if n >= 1 and n_val + n_test >= n:
    n_test = max(0, min(n_test, n - 1 - n_val))
    n_val = max(0, min(n_val, n - 1 - n_test))
  return (perm[n_val + n_test:], perm[:n_val], perm[n_val:n_val + n_test])


def check_clients(data: FederatedData) -> FederatedData:
  """Rejects a data set with a client that has no training example."""
  empty = np.flatnonzero(data.train.counts == 0)
  if empty.size:
    raise ConfigError(
        f'{data.name}: client {data.client_ids[empty[0]]!r} has no training '
        f'examples ({empty.size} such clients); drop them from the data or '
        f'lower the validation/test fractions.')
  return data


def files_in(data_dir: str, names: Sequence[str], what: str,
             otherwise: str) -> list[pathlib.Path]:
  """The paths of files `names` in `data_dir`; if one is missing, a
  ConfigError: '{what} needs A and B in `data_dir` D; {otherwise}.'"""
  directory = pathlib.Path(data_dir).expanduser()
  if not all((directory / n).is_file() for n in names):
    raise ConfigError(f'{what} needs {" and ".join(names)} in `data_dir` '
                      f'{directory}; {otherwise}.')
  return [directory / n for n in names]


def download(url: str, path: pathlib.Path,
             timeout: tuple[float, float] = (5.0, 30.0)) -> None:
  """Fetches `url` to `path` in one attempt, never leaving a partial file.

  Streams into `<path>.partial` and renames it on success. `timeout` is
  (connect, per-read) seconds; any failure raises (requests.RequestException
  or OSError) and the caller turns it into a ConfigError.
  """
  import requests  # only needed on a cache miss
  path.parent.mkdir(parents=True, exist_ok=True)
  partial = path.with_name(path.name + '.partial')
  try:
    with requests.get(url, stream=True, timeout=timeout) as response:
      response.raise_for_status()
      with open(partial, 'wb') as f:
        for chunk in response.iter_content(chunk_size=1 << 20):
          f.write(chunk)
    os.replace(partial, path)
  finally:
    partial.unlink(missing_ok=True)


# What a damaged or foreign SQLite file raises while its rows are decoded.
SQLITE_ERRORS = (sqlite3.DatabaseError, zlib.error, ValueError, KeyError,
                 TypeError, AttributeError)


def sqlite_clients(path: pathlib.Path) -> Iterator[tuple[str, dict, int]]:
  """The rows of a fedjax SQLite file (its `SQLiteFederatedDataBuilder`'s
  table `federated_data(client_id BLOB PRIMARY KEY, data BLOB, num_examples
  INTEGER)`, `data` a zlib-compressed msgpack of the client's examples), in
  file order: (client id, {feature: array}, num_examples). Raises one of
  SQLITE_ERRORS on a file that is not one."""
  connection = sqlite3.connect(path.resolve().as_uri() + '?mode=ro', uri=True)
  try:
    rows = connection.execute('SELECT client_id, data, num_examples FROM '
                              'federated_data ORDER BY rowid;')
    for cid, blob, num_examples in rows:
      yield (cid.decode() if isinstance(cid, bytes) else str(cid),
             fedjax.serialization.msgpack_deserialize(zlib.decompress(blob)),
             num_examples)
  finally:
    connection.close()


def write_sqlite(path: str | pathlib.Path,
                 clients: dict[str, dict[str, np.ndarray]]) -> None:
  """Writes `{client_id: {feature: array}}` in fedjax's own format (its
  SQLiteFederatedDataBuilder); used by the tests."""
  with fedjax.SQLiteFederatedDataBuilder(str(path)) as builder:
    builder.add_many((cid.encode(), examples)
                     for cid, examples in clients.items())
