"""Any TFDS image-classification data set, cut into pseudo-writers.

`--dataset=tfds:NAME` reads NAME (`mnist`, `cifar10`, `emnist/letters`, ...)
from a TFDS data directory where it is already prepared (`--data_dir`; unset,
TFDS's own default, `~/tensorflow_datasets`), never downloading: prepare it
on a machine that is online with

    tfds build NAME --data_dir=DIR --file_format=array_record

It is read through `tfds.data_source` (random access to ArrayRecord files,
no TensorFlow needed), its supervised (image, label) pair, every split it
has pooled, and cut into FEMNIST-sized writers with Dirichlet label skew
exactly as Fashion-MNIST is (`partition.pseudo_writers`). Images must be
uint8 of one shape [H, W, C]. Behind the optional extra `pfhpo[tfds]`
(tensorflow-datasets).
"""
from __future__ import annotations

import numpy as np

from pfhpo.data import TFDS
from pfhpo.data.federated import FederatedData, check_clients
from pfhpo.data.partition import pseudo_writers
from pfhpo.errors import ConfigError

# Pooled when the data set's metadata lists no splits (tfds's mock data).
DEFAULT_SPLITS = ('train', 'test')


def read(name: str, data_dir: str | None) -> tuple[np.ndarray, np.ndarray,
                                                    int]:
  """(images u8[N, H, W, C], labels i64[N], num_classes) of every split."""
  try:
    import tensorflow_datasets as tfds
  except ImportError:
    raise ConfigError(
        f'`dataset`={TFDS}{name} needs tensorflow-datasets: install the '
        f"extra, `.venv/bin/pip install -e '.[tfds]'`.") from None
  where = f'`data_dir` {data_dir}' if data_dir else "TFDS's default data dir"
  try:
    builder = tfds.builder(name, data_dir=data_dir)
    keys = builder.info.supervised_keys
    splits = list(builder.info.splits) or list(DEFAULT_SPLITS)
    sources = [tfds.data_source(name, split=s, data_dir=data_dir,
                                download=False) for s in splits]
  except Exception as e:  # tfds raises many kinds for a data set not there
    raise ConfigError(
        f'TFDS data set {name!r} is not prepared in {where} ({type(e).__name__}'
        f'); prepare it on a machine that is online (`tfds build {name} '
        f'--file_format=array_record`, into a TFDS data dir) and pass that '
        f'directory as `data_dir`.') from e
  label = keys[1] if keys else None
  classes = getattr(builder.info.features[label], 'num_classes', None) if (
      label in builder.info.features) else None
  if not keys or classes is None:
    raise ConfigError(f'TFDS data set {name!r} has no (image, class label) '
                      f'supervised keys; use an image-classification set.')
  examples = [source[i] for source in sources for i in range(len(source))]
  images = np.stack([np.asarray(e[keys[0]]) for e in examples])
  labels = np.array([e[label] for e in examples], np.int64)
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ConfigError(f'TFDS data set {name!r} holds {images.dtype} images '
                      f'of shape {images.shape[1:]}; pfhpo reads uint8 '
                      f'[H, W, C] images.')
  return images, labels, classes


def load(name: str, data_dir: str | None = None, seed: int = 0,
         alpha: float = 0.5, val_fraction: float = 0.1,
         test_fraction: float = 0.2,
         max_clients: int | None = None) -> FederatedData:
  """TFDS image set `name` as FEMNIST-sized writers (ids `NAME_0007`).

  x: u8[N, H, W, C] end to end (x_scale 1/255), its own classes.
  """
  images, labels, classes = read(name, data_dir)
  return check_clients(pseudo_writers(
      f'{TFDS}{name}', name.replace('/', '_'), images, labels, classes,
      seed, alpha, val_fraction, test_fraction, max_clients))
