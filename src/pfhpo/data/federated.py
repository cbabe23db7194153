"""One representation for every federated data set: padded client arrays.

A split (train, validation or test) of C clients is three dense arrays with a
leading client axis, padded to the largest client:

    x:    u8/f32[C, N_max, *feature_shape]   features (uint8 where the source is 8-bit)
    y:    i32[C, N_max]                      labels
    mask: bool[C, N_max]                     True for real examples

Real examples come first in every row, so client i's examples are
`x[i, :counts[i]]`. Features are converted to float32 on the device by
`FederatedData.features` (`x * x_scale`), so uint8 data cross the host-device
boundary at a quarter of the size.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from typing import Sequence

import numpy as np

from pfhpo.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ClientSplit:
  """One split of every client, padded to the largest client."""
  x: np.ndarray  # u8/f32[C, N_max, *feature_shape]
  y: np.ndarray  # i32[C, N_max]
  mask: np.ndarray  # bool[C, N_max]

  @functools.cached_property
  def counts(self) -> np.ndarray:  # i32[C]
    return self.mask.sum(axis=1).astype(np.int32)

  @property
  def num_clients(self) -> int:
    return self.x.shape[0]


@dataclasses.dataclass(frozen=True)
class FederatedData:
  """A federated data set: per-client train / validation / test splits."""
  name: str
  client_ids: tuple[str, ...]
  train: ClientSplit
  val: ClientSplit
  test: ClientSplit
  num_classes: int
  x_scale: float  # float features = x * x_scale
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
    return tuple(self.train.x.shape[2:])

  def features(self, x):
    """uint8/float features -> float32 (works on numpy and jax arrays)."""
    return x.astype(np.float32) * np.float32(self.x_scale)


def pad_clients(xs: Sequence[np.ndarray], ys: Sequence[np.ndarray],
                feature_shape: tuple[int, ...], dtype) -> ClientSplit:
  """Packs per-client example lists into one padded `ClientSplit`.

  Args:
    xs: C arrays, client i's features `[n_i, *feature_shape]`.
    ys: C arrays, client i's labels `[n_i]`.
    feature_shape: shape of one example's features.
    dtype: storage dtype of the features (uint8 or float32).
  """
  n_max = max(1, max((len(y) for y in ys), default=1))
  c = len(ys)
  x = np.zeros((c, n_max) + tuple(feature_shape), dtype=dtype)
  y = np.zeros((c, n_max), dtype=np.int32)
  mask = np.zeros((c, n_max), dtype=bool)
  for i, (xi, yi) in enumerate(zip(xs, ys)):
    n = len(yi)
    x[i, :n] = xi
    y[i, :n] = yi
    mask[i, :n] = True
  return ClientSplit(x, y, mask)


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
