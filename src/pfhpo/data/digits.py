"""scikit-learn's bundled 8x8 digits, split into label-skewed clients.

Data: the test part of "Optical Recognition of Handwritten Digits" (Alpaydin &
Kaynak 1998, UCI Machine Learning Repository), shipped with scikit-learn as
`sklearn.datasets.load_digits`: 1,797 8x8 images with values 0..16, 10
classes. Needs no download, so it is the quick data set for tests and smoke
runs.

The examples are cut into `num_clients` near-equal clients with Dirichlet label
skew (Hsu et al. 2019, `partition.dirichlet_partition`), then each client's
examples into train / validation / test.
"""
from __future__ import annotations

import numpy as np

from pfhpo.data.federated import FederatedData, check_clients
from pfhpo.data.partition import dirichlet_partition, split_clients
from pfhpo.errors import ConfigError

NUM_CLASSES = 10


def equal_sizes(total: int, num_clients: int) -> np.ndarray:  # i32[C]
  """`total` split into `num_clients` sizes that differ by at most one."""
  return np.array([total // num_clients + (i < total % num_clients)
                   for i in range(num_clients)], dtype=np.int32)


def load(seed: int = 0, num_clients: int = 20, alpha: float = 0.5,
         val_fraction: float = 0.1, test_fraction: float = 0.2,
         max_clients: int | None = None) -> FederatedData:
  """Digits as `num_clients` clients; x: u8[N, 8, 8, 1], x_scale 1/16."""
  from sklearn.datasets import load_digits  # slow import, only needed here
  digits = load_digits()
  x = digits.images.astype(np.uint8)[..., np.newaxis]  # u8[1797, 8, 8, 1]
  y = digits.target.astype(np.int32)  # i32[1797]
  if not 1 <= num_clients <= len(y):
    raise ConfigError(f'digits: num_clients must be in [1, {len(y)}], got '
                      f'{num_clients}.')
  rng = np.random.default_rng(seed)
  clients = dirichlet_partition(y, equal_sizes(len(y), num_clients), alpha,
                                rng)[:max_clients]
  ids = [f'digits_{i:04d}' for i in range(len(clients))]
  return check_clients(split_clients('digits', ids, x, y, clients,
                                     (val_fraction, test_fraction), rng,
                                     NUM_CLASSES, 1.0 / 16.0))
