"""Federated EMNIST (FEMNIST): handwritten characters grouped by writer.

Data: Caldas et al. 2018, "LEAF: A Benchmark for Federated Settings"
(arXiv:1812.01097), built on Cohen et al. 2017, "EMNIST: an extension of MNIST
to handwritten letters": 62 classes (digits, upper- and lower-case letters),
3,400 writers. Read from fedjax's SQLite files (`fedjax.datasets.emnist`),
`federated_emnist_{train,test}.sqlite`, which hold the table

    federated_data(client_id BLOB PRIMARY KEY, data BLOB, num_examples INTEGER)

where `data` is a zlib-compressed msgpack (fedjax.serialization) of
{'pixels': f32[n, 28, 28] (background 1.0), 'label': i32[n]}.

Features are `1 - pixels` with a channel axis, as fedjax's
`emnist.preprocess_batch` computes them. They are stored as uint8
`round((1 - pixels) * 255)` with x_scale 1/255 when that reproduces every
pixel of both files to within 1e-6, and as float32 with x_scale 1.0 otherwise.

Clients are those of the train file, in file order. Their train examples are
split into train / validation (a seeded `val_fraction` per client); the test
split is the same client's examples in the test file (empty if absent there).
"""
from __future__ import annotations

import pathlib

import numpy as np

from pfhpo.data.federated import (SQLITE_ERRORS, FederatedData,
                                  check_clients, download, files_in,
                                  join_clients, split_examples,
                                  sqlite_clients)
from pfhpo.errors import ConfigError

DEFAULT_CACHE_DIR = pathlib.Path('~/.cache/pfhpo/femnist')
URL_TEMPLATE = 'https://storage.googleapis.com/gresearch/fedjax/emnist/{file}'
FEATURE_SHAPE = (28, 28, 1)

# One client of one file: id, features f32/u8[n, 28, 28, 1], labels i32[n].
Client = tuple[str, np.ndarray, np.ndarray]


def file_names(only_digits: bool = False) -> tuple[str, str]:
  """(train, test) SQLite file names, as fedjax names them."""
  infix = 'digitsonly_' if only_digits else ''
  return (f'federated_emnist_{infix}train.sqlite',
          f'federated_emnist_{infix}test.sqlite')


def locate(data_dir: str | None, cache_dir: str | None,
           only_digits: bool = False) -> tuple[pathlib.Path, pathlib.Path]:
  """Paths of the (train, test) files: data_dir, else the cache (downloaded).

  The download is one attempt per missing file with short timeouts; any
  failure is a ConfigError.
  """
  names = file_names(only_digits)
  if data_dir is not None:
    train, test = files_in(data_dir, names, 'FEMNIST', "put fedjax's EMNIST "
                           'SQLite files there or drop `data_dir` to '
                           'download them')
    return train, test
  cache = pathlib.Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
  for name in names:
    if not (cache / name).is_file():
      try:
        download(URL_TEMPLATE.format(file=name), cache / name)
      except Exception as e:  # requests / OS errors: one attempt, no retry
        raise ConfigError(
            f'FEMNIST files {names[0]} and {names[1]} are not in the cache '
            f'{cache} and downloading {name} failed ({type(e).__name__}); '
            f'copy them there or pass `data_dir` with a directory holding '
            f'them.') from e
  return cache / names[0], cache / names[1]


def _features(pixels: np.ndarray, dtype) -> np.ndarray | None:
  """f32[n, 28, 28] pixels -> `1 - pixels` as dtype[n, 28, 28, 1].

  None when dtype is uint8 and 8 bits do not hold every value to 1e-6.
  """
  x = (1.0 - pixels.astype(np.float32))[..., np.newaxis]  # f32[n, 28, 28, 1]
  if dtype == np.float32:
    return x
  q = np.rint(x * 255.0)
  if x.size and (q.min() < 0 or q.max() > 255
                 or np.abs(q / 255.0 - x).max() > 1e-6):
    return None
  return q.astype(np.uint8)


def read_clients(path: pathlib.Path, dtype, num_classes: int,
                 wanted: set[str] | None = None,
                 limit: int | None = None) -> list[Client] | None:
  """The clients of one SQLite file, decoded, in file order.

  Args:
    dtype: np.uint8 or np.float32, the storage dtype of the features.
    wanted: decode only these client ids (all if None).
    limit: stop after this many clients.

  Returns:
    The clients, or None if dtype is uint8 and some pixel is not k/255.
  """
  clients = []
  try:
    for cid, examples, num_examples in sqlite_clients(path):
      if limit is not None and len(clients) >= limit:
        break
      if wanted is not None and cid not in wanted:
        continue
      pixels, labels = examples['pixels'], examples['label']
      if (pixels.shape != (num_examples, 28, 28)
          or labels.shape != (num_examples,)
          or (num_examples and not 0 <= labels.min() <= labels.max()
              < num_classes)):
        raise ValueError(f'client {cid!r}: pixels {pixels.shape}, labels '
                         f'{labels.shape} in [0, {num_classes}) expected for '
                         f'{num_examples} examples')
      bad = int(np.size(pixels) - np.isfinite(pixels).sum())
      if bad:
        raise ValueError(f'client {cid!r} has {bad} NaN or infinite pixels')
      x = _features(pixels, dtype)
      if x is None:
        return None
      clients.append((cid, x, labels.astype(np.int32)))
  except SQLITE_ERRORS as e:
    raise ConfigError(
        f'{path} is not a valid fedjax FEMNIST SQLite file ({e}); delete it '
        f'so it is downloaded again, or pass another `data_dir`.') from e
  if not clients and not wanted:
    raise ConfigError(f'{path} holds no clients; pass another `data_dir`.')
  return clients


def read_files(train_path: pathlib.Path, test_path: pathlib.Path, dtype,
               num_classes: int, max_clients: int | None
               ) -> tuple[list[Client], list[Client]] | None:
  """(train clients, their test clients), or None if dtype is uint8 and some
  pixel of either file is not a multiple of 1/255."""
  train = read_clients(train_path, dtype, num_classes, limit=max_clients)
  if train is None:
    return None
  test = read_clients(test_path, dtype, num_classes,
                      wanted={cid for cid, _, _ in train})
  return None if test is None else (train, test)


def load(data_dir: str | None = None, cache_dir: str | None = None,
         seed: int = 0, val_fraction: float = 0.1,
         max_clients: int | None = None,
         only_digits: bool = False) -> FederatedData:
  """FEMNIST: train/val from the train file, test from the test file.

  x: u8[N, 28, 28, 1], clients end to end, with x_scale 1/255 (f32 with
  x_scale 1.0 if the pixels are not multiples of 1/255); 62 classes (10 if
  only_digits).
  max_clients keeps the first K clients of the train file.
  """
  if not 0 <= val_fraction < 1:
    raise ConfigError(f'femnist: val_fraction must be in [0, 1), got '
                      f'{val_fraction}.')
  num_classes = 10 if only_digits else 62
  paths = locate(data_dir, cache_dir, only_digits)
  dtype, x_scale = np.uint8, 1.0 / 255.0
  files = read_files(*paths, dtype, num_classes, max_clients)
  if files is None:
    dtype, x_scale = np.float32, 1.0
    files = read_files(*paths, dtype, num_classes, max_clients)
  train, test = files

  rng = np.random.default_rng(seed)
  ids, train_xy, val_xy = [], [], []
  for cid, x, y in train:
    tr, va, _ = split_examples(len(y), (val_fraction, 0.0), rng)
    ids.append(cid)
    train_xy.append((x[tr], y[tr]))
    val_xy.append((x[va], y[va]))
  by_id = {cid: (x, y) for cid, x, y in test}
  no_test = (np.zeros((0,) + FEATURE_SHAPE, dtype), np.zeros(0, np.int32))
  test_xy = [by_id.get(cid, no_test) for cid in ids]
  splits = (join_clients([x for x, _ in xy], [y for _, y in xy], FEATURE_SHAPE,
                        dtype) for xy in (train_xy, val_xy, test_xy))
  return check_clients(FederatedData(
      'femnist', tuple(ids), *splits,
      num_classes=num_classes, x_scale=x_scale))

