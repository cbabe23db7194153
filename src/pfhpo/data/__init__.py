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

DATASETS = ('femnist', 'fashion_mnist', 'digits', 'synthetic', 'shakespeare')

# The data sets cut into clients by a Dirichlet label skew of concentration
# `alpha` (`partition.dirichlet_partition`); synthetic's `alpha` is another
# thing (FedProx's model heterogeneity) and femnist's clients are writers.
LABEL_SKEWED = ('digits', 'fashion_mnist')
# Any TFDS image-classification set already prepared locally: `tfds:mnist`.
TFDS = 'tfds:'
# The data sets of token sequences, for a sequence model (`models.SEQUENCE_MODELS`).
SEQUENCES = ('shakespeare',)

__all__ = ['DATASETS', 'LABEL_SKEWED', 'SEQUENCES', 'TFDS', 'check_dataset',
           'label_skewed', 'ClientSplit', 'FederatedData', 'load']


def check_dataset(name: str) -> None:
  """A ConfigError unless `name` is one of DATASETS or `tfds:NAME`."""
  if not (name.startswith(TFDS) and len(name) > len(TFDS)):
    check_choice('dataset', name, DATASETS + (f'{TFDS}NAME',))


def label_skewed(name: str) -> bool:
  """Whether `name`'s clients are cut by label skew (`alpha` applies)."""
  return name in LABEL_SKEWED or name.startswith(TFDS)


def load(name: str, **kwargs: Any) -> FederatedData:
  """Loads data set `name`, passing it the kwargs its `load` accepts.

  Keyword arguments that are None, or that this loader does not take (e.g.
  `alpha` for femnist), are dropped, so a CLI can pass all of its flags.
  `tfds:NAME` is TFDS image set NAME (`tfds_images.py`).
  """
  check_dataset(name)
  if name.startswith(TFDS):
    module, kwargs = 'tfds_images', {**kwargs, 'name': name[len(TFDS):]}
  else:
    module = name
  loader = importlib.import_module(f'pfhpo.data.{module}').load
  accepted = inspect.signature(loader).parameters
  return loader(**{k: v for k, v in kwargs.items()
                   if v is not None and k in accepted})
