"""Federated data sets as padded per-client arrays (see `federated.py`).

    from pfhpo.data import load
    data = load('fashion_mnist', seed=0, alpha=0.5)

Each loader lives in the module of the same name and imports its heavy
dependencies (fedjax, scikit-learn) only when that data set is asked for.
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any

from pfhpo.data.federated import ClientSplit, FederatedData
from pfhpo.settings import check_choice

DATASETS = ('femnist', 'fashion_mnist', 'digits', 'synthetic')

# The data sets cut into clients by a Dirichlet label skew of concentration
# `alpha` (`partition.dirichlet_partition`); synthetic's `alpha` is another
# thing (FedProx's model heterogeneity) and femnist's clients are writers.
LABEL_SKEWED = ('digits', 'fashion_mnist')

__all__ = ['DATASETS', 'LABEL_SKEWED', 'ClientSplit', 'FederatedData', 'load']


def load(name: str, **kwargs: Any) -> FederatedData:
  """Loads data set `name`, passing it the kwargs its `load` accepts.

  Keyword arguments that are None, or that this loader does not take (e.g.
  `alpha` for femnist), are dropped, so a CLI can pass all of its flags.
  """
  check_choice('dataset', name, DATASETS)
  loader = importlib.import_module(f'pfhpo.data.{name}').load
  accepted = inspect.signature(loader).parameters
  return loader(**{k: v for k, v in kwargs.items()
                   if v is not None and k in accepted})
