"""Synthetic federated partitions of a centralised data set.

* `client_sizes`: FEMNIST-like client sizes. LEAF's FEMNIST (Caldas et al.
  2018, "LEAF: A Benchmark for Federated Settings", arXiv:1812.01097) has
  226.83 +- 88.94 examples per writer; sizes are drawn from that normal
  distribution, clipped below at `min_size`.
* `dirichlet_partition`: label skew as in Hsu, Qi & Brown 2019, "Measuring the
  Effects of Non-Identical Data Distribution for Federated Visual
  Classification" (arXiv:1909.06335). Each client draws class proportions
  q ~ Dir(alpha, ..., alpha) and takes that many examples of each class from
  what is left. Hsu et al. write the concentration as alpha * p for a prior p
  over classes; with balanced classes their alpha is our alpha * num_classes
  (our alpha is the per-class concentration, as in most later work).
* `split_clients`: per-client train / validation / test split.
* `pseudo_writers`: the three, for a data set without natural clients
  (Fashion-MNIST, TFDS image sets).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from pfhpo.data.federated import FederatedData, join_clients, split_examples
from pfhpo.errors import ConfigError


def client_sizes(total: int, mean: float = 226.0, std: float = 89.0,
                 min_size: int = 20, *,
                 rng: np.random.Generator) -> np.ndarray:  # i32[C]
  """Client sizes ~ round(N(mean, std)) clipped at `min_size`, summing to total.

  Sizes are drawn until the next one would overshoot `total`; the last client
  absorbs the remainder. A `total` smaller than the first draw is one client.
  """
  if total < 1:
    raise ValueError(f'total must be >= 1, got {total}')
  n_draws = total // max(1, min_size) + 1  # enough: every draw is >= min_size
  draws = np.maximum(np.rint(rng.normal(mean, std, n_draws)), min_size)
  draws = draws.astype(np.int64)  # i64[n_draws]
  num = int(np.searchsorted(np.cumsum(draws), total, side='right'))
  if num == 0:
    return np.array([total], dtype=np.int32)
  sizes = draws[:num].copy()
  sizes[-1] += total - sizes.sum()
  return sizes.astype(np.int32)


def dirichlet_partition(labels: np.ndarray, sizes: np.ndarray, alpha: float,
                        rng: np.random.Generator) -> list[np.ndarray]:
  """Splits example indices into clients of `sizes` with Dirichlet label skew.

  Args:
    labels: i32[N] class of every example.
    sizes: i32[C] examples per client; must sum to N.
    alpha: Dirichlet concentration per class (small = few classes per client).
    rng: the only source of randomness.

  Returns:
    C index arrays (client k has `sizes[k]` indices into `labels`); every index
    appears in exactly one client. A client whose drawn classes run out takes
    the deficit from the classes that still have examples, in proportion to
    its own q over them.
  """
  if not alpha > 0:
    raise ConfigError(f'Dirichlet alpha must be > 0, got {alpha}; use e.g. '
                      f'`alpha`=0.5 (small = more label skew).')
  labels = np.asarray(labels)
  sizes = np.asarray(sizes)
  if sizes.sum() != labels.size:
    raise ValueError(f'client sizes sum to {sizes.sum()}, expected '
                     f'{labels.size} (one per example)')
  classes = np.unique(labels)
  pools = [rng.permutation(np.flatnonzero(labels == c)) for c in classes]
  left = np.array([len(p) for p in pools])  # i64[K] examples not yet taken
  parts = []
  for n in sizes:
    q = rng.dirichlet(np.full(len(classes), alpha))  # f64[K]
    take = np.minimum(rng.multinomial(n, q), left)
    while (deficit := n - take.sum()) > 0:
      open_ = left - take > 0
      w = np.where(open_, q, 0.0) + open_ * 1e-12  # 1e-12: q may be all ~0
      extra = rng.multinomial(deficit, w / w.sum())
      take += np.minimum(extra, left - take)
    start = [len(p) - l for p, l in zip(pools, left)]
    parts.append(np.concatenate(
        [p[s:s + t] for p, s, t in zip(pools, start, take)]).astype(np.int64))
    left -= take
  return parts


def split_clients(name: str, client_ids: Sequence[str], x: np.ndarray,
                  y: np.ndarray, client_index: Sequence[np.ndarray],
                  fractions: tuple[float, float], rng: np.random.Generator,
                  num_classes: int, x_scale: float) -> FederatedData:
  """Splits each client's examples into train / val / test, end to end.

  Args:
    x: u8/f32[N, *feature_shape] pooled features.
    y: i32[N] pooled labels.
    client_index: C index arrays into x and y.
    fractions: (val_fraction, test_fraction) of every client's examples.
    rng: consumed client by client, so the first K clients split the same way
      whatever clients follow them.
  """
  val_fraction, test_fraction = fractions
  if not (val_fraction >= 0 and test_fraction >= 0
          and val_fraction + test_fraction < 1):
    raise ConfigError(
        f'{name}: need val_fraction, test_fraction >= 0 with a sum below 1, '
        f'got {val_fraction} and {test_fraction}; lower them.')
  parts = ([], [], [])  # train, val, test index arrays per client
  for index in client_index:
    for part, sel in zip(parts, split_examples(len(index), fractions, rng)):
      part.append(index[sel])
  train, val, test = (
      join_clients([x[i] for i in part], [y[i] for i in part], x.shape[1:],
                  x.dtype) for part in parts)
  return FederatedData(name, tuple(client_ids), train, val, test, num_classes,
                       x_scale)


def pseudo_writers(name: str, prefix: str, images: np.ndarray,
                   labels: np.ndarray, num_classes: int, seed: int = 0,
                   alpha: float = 0.5, val_fraction: float = 0.1,
                   test_fraction: float = 0.2, max_clients: int | None = None,
                   mean: float = 226.0, std: float = 89.0) -> FederatedData:
  """Cuts pooled images into FEMNIST-sized writers with Dirichlet(alpha)
  label skew, then each into train / val / test.

  Args:
    images: u8[N, H, W, C] pooled images (x_scale 1/255).
    labels: i[N] their classes in [0, num_classes).
    prefix: of the writers' ids, `{prefix}_0007`.
    max_clients: keep only the first K writers (the same data as the full
      run's first K).
    mean, std: writer size distribution (FEMNIST's by default).
  """
  rng = np.random.default_rng(seed)
  x = images.astype(np.uint8)  # u8[N, H, W, C]
  y = labels.astype(np.int32)  # i32[N]
  sizes = client_sizes(len(y), mean, std, rng=rng)  # i32[C]
  clients = dirichlet_partition(y, sizes, alpha, rng)[:max_clients]
  ids = [f'{prefix}_{i:04d}' for i in range(len(clients))]
  return split_clients(name, ids, x, y, clients,
                       (val_fraction, test_fraction), rng, num_classes,
                       1.0 / 255.0)
