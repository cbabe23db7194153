"""Synthetic(alpha, beta): the FedProx paper's heterogeneous logistic data.

Li, Sahu, Zaheer, Sanjabi, Talwalkar & Smith 2020, "Federated Optimization in
Heterogeneous Networks" (MLSys 2020), Sec. 5.1, and its generator
`data/synthetic_*/generate_synthetic.py` (github.com/litian96/FedProx).
With d = 60 features and 10 classes, client k draws

    u_k ~ N(0, alpha),  W_k ~ N(u_k, 1) [10, 60],  b_k ~ N(u_k, 1) [10]
    B_k ~ N(0, beta),   v_k[j] ~ N(B_k, 1)
    x ~ N(v_k, Sigma),  Sigma diagonal with Sigma_jj = j^(-1.2)
    y = argmax(W_k x + b_k)

alpha controls how much the local models differ, beta how much the local
inputs differ. As in the FedProx code, alpha and beta are used as standard
deviations (the paper says variance; the same for the default 1.0).

Client sizes follow the FedProx code, `int(lognormal(4, 2)) + 50`, but are
capped at `MAX_SIZE` = 1,000 (the uncapped tail reaches tens of thousands and
a round pads its clients to the largest).
"""
from __future__ import annotations

import numpy as np

from pfhpo.data.federated import FederatedData, check_clients
from pfhpo.data.partition import split_clients
from pfhpo.errors import ConfigError

DIM = 60
NUM_CLASSES = 10
MAX_SIZE = 1000


def sizes(num_clients: int, rng: np.random.Generator) -> np.ndarray:  # i32[C]
  """FedProx's lognormal client sizes, capped at MAX_SIZE."""
  raw = rng.lognormal(4.0, 2.0, num_clients).astype(np.int64) + 50
  return np.minimum(raw, MAX_SIZE).astype(np.int32)


def client_examples(n: int, alpha: float, beta: float,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """One client's n examples: x f32[n, 60], y i32[n]."""
  u = rng.normal(0.0, alpha)
  w = rng.normal(u, 1.0, (NUM_CLASSES, DIM))  # f64[10, 60]
  b = rng.normal(u, 1.0, NUM_CLASSES)  # f64[10]
  v = rng.normal(rng.normal(0.0, beta), 1.0, DIM)  # f64[60]
  sigma_sqrt = np.arange(1, DIM + 1) ** -0.6  # sqrt(j^-1.2), f64[60]
  x = v + sigma_sqrt * rng.standard_normal((n, DIM))  # f64[n, 60]
  y = np.argmax(x @ w.T + b, axis=1)  # i64[n]
  return x.astype(np.float32), y.astype(np.int32)


def load(seed: int = 0, num_clients: int = 30, alpha: float = 1.0,
         beta: float = 1.0, val_fraction: float = 0.1,
         test_fraction: float = 0.2,
         max_clients: int | None = None) -> FederatedData:
  """Synthetic(alpha, beta); x: f32[N, 60], x_scale 1.0, 10 classes."""
  if num_clients < 1 or alpha < 0 or beta < 0:
    raise ConfigError(f'synthetic: need num_clients >= 1 and alpha, beta >= 0, '
                      f'got {num_clients}, {alpha}, {beta}.')
  rng = np.random.default_rng(seed)
  per_client = [client_examples(n, alpha, beta, rng)
                for n in sizes(num_clients, rng)][:max_clients]
  x = np.concatenate([xk for xk, _ in per_client])  # f32[N, 60]
  y = np.concatenate([yk for _, yk in per_client])  # i32[N]
  ends = np.cumsum([len(yk) for _, yk in per_client])
  clients = [np.arange(end - len(yk), end)
             for end, (_, yk) in zip(ends, per_client)]
  ids = [f'synthetic_{i:04d}' for i in range(len(clients))]
  return check_clients(split_clients(
      'synthetic', ids, x, y, clients,
      (val_fraction, test_fraction), rng, NUM_CLASSES, 1.0))
