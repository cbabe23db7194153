"""Fashion-MNIST split into FEMNIST-like pseudo-writers with label skew.

Data: Xiao, Rasul & Vollgraf 2017, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms" (arXiv:1708.07747): 70,000 28x28
grey-scale images of 10 clothing classes, in LeCun's IDX format.

Fashion-MNIST has no natural clients. The 60k train and 10k test images are
pooled and cut into pseudo-writers whose sizes follow LEAF's FEMNIST
(226 +- 89 examples, `partition.client_sizes`) and whose labels are skewed by
a Dirichlet draw (Hsu et al. 2019, `partition.dirichlet_partition`). Each
writer's examples are then split into train / validation / test.

Files are looked up in `data_dir` if given, else in Debian's
`dataset-fashion-mnist` package, else in a cache directory, downloading them
there from Zalando's server on a miss.
"""
from __future__ import annotations

import gzip
import pathlib

import numpy as np

from pfhpo.data.federated import FederatedData, check_clients, download
from pfhpo.data.partition import pseudo_writers
from pfhpo.errors import ConfigError

FILES = ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte',
         't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')
DEBIAN_DIR = pathlib.Path('/usr/share/datasets/fashion-mnist')
DEFAULT_CACHE_DIR = pathlib.Path('~/.cache/pfhpo/fashion_mnist')
URL_TEMPLATE = ('http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'
                '{file}')
NUM_CLASSES = 10

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/).
_IDX_DTYPES = {0x08: '>u1', 0x09: '>i1', 0x0B: '>i2', 0x0C: '>i4',
               0x0D: '>f4', 0x0E: '>f8'}


def read_idx(path: pathlib.Path) -> np.ndarray:
  """Parses an IDX file (gzip-compressed if its name ends in .gz).

  Layout: magic = two zero bytes, a type byte and the number of dimensions,
  then one big-endian u32 per dimension, then the row-major data.
  """
  opener = gzip.open if path.suffix == '.gz' else open
  try:
    with opener(path, 'rb') as f:
      raw = f.read()
  except (OSError, EOFError) as e:
    raise ConfigError(f'cannot read IDX file {path} ({e}); delete it so it is '
                      f'fetched again, or pass another `data_dir`.') from e
  dtype = _IDX_DTYPES.get(raw[2]) if len(raw) >= 4 else None
  if raw[:2] != b'\0\0' or dtype is None:
    raise ConfigError(f'{path} is not an IDX file (bad magic number '
                      f'{raw[:4].hex()}); delete it or pass another '
                      f'`data_dir`.')
  ndim = raw[3]
  dims = tuple(int(d) for d in np.frombuffer(raw, '>u4', ndim, offset=4))
  offset = 4 + 4 * ndim
  count = int(np.prod(dims))
  if len(raw) != offset + count * np.dtype(dtype).itemsize:
    raise ConfigError(f'{path}: IDX header says shape {dims} but the file has '
                      f'{len(raw)} bytes (truncated?); delete it or pass '
                      f'another `data_dir`.')
  data = np.frombuffer(raw, dtype, count, offset=offset).reshape(dims)
  return data.astype(np.dtype(dtype).newbyteorder('='))


def _existing(directory: pathlib.Path, name: str) -> pathlib.Path | None:
  """`directory/name` or `directory/name.gz`, whichever is a file, or None."""
  for path in (directory / name, directory / f'{name}.gz'):
    if path.is_file():
      return path
  return None


def find_files(directory: pathlib.Path) -> list[pathlib.Path] | None:
  """The four IDX files in `directory` (each plain or .gz), or None."""
  found = [_existing(directory, name) for name in FILES]
  return None if None in found else found


def _missing(directory: pathlib.Path, why: str) -> ConfigError:
  return ConfigError(
      f'Fashion-MNIST files {", ".join(FILES)} (each may end in .gz) not found '
      f'in {directory} ({why}); run `apt-get install dataset-fashion-mnist` or '
      f'pass `data_dir` with a directory holding them.')


def locate(data_dir: str | None = None,
           cache_dir: str | None = None) -> list[pathlib.Path]:
  """Paths of the four IDX files: data_dir, else Debian's, else the cache."""
  if data_dir is not None:
    directory = pathlib.Path(data_dir).expanduser()
    files = find_files(directory)
    if files is None:
      raise _missing(directory, 'the `data_dir` given')
    return files
  files = find_files(DEBIAN_DIR)
  if files is not None:
    return files
  cache = pathlib.Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
  for name in FILES:
    if _existing(cache, name) is None:
      target = cache / f'{name}.gz'
      try:
        download(URL_TEMPLATE.format(file=target.name), target)
      except Exception as e:  # requests / OS errors: one attempt, no retry
        raise _missing(cache, f'download of {target.name} failed: '
                       f'{type(e).__name__}') from e
  return find_files(cache)


def load(data_dir: str | None = None, cache_dir: str | None = None,
         seed: int = 0, alpha: float = 0.5, val_fraction: float = 0.1,
         test_fraction: float = 0.2,
         max_clients: int | None = None) -> FederatedData:
  """Fashion-MNIST as ~310 FEMNIST-sized writers.

  x: u8[N, 28, 28, 1] end to end (x_scale 1/255), 10 classes, ids `fmnist_0007`.
  """
  train_x, train_y, test_x, test_y = (read_idx(p)
                                      for p in locate(data_dir, cache_dir))
  images = np.concatenate([train_x, test_x])  # u8[70000, 28, 28]
  labels = np.concatenate([train_y, test_y])  # u8[70000]
  if (images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]
      or labels.max() >= NUM_CLASSES):
    raise ConfigError(f'Fashion-MNIST files hold images {images.shape} and '
                      f'labels {labels.shape} up to {labels.max()}, expected '
                      f'[N, 28, 28] and [N] in [0, 10); check the files.')
  return check_clients(pseudo_writers(
      'fashion_mnist', 'fmnist', images[..., np.newaxis], labels, NUM_CLASSES,
      seed, alpha, val_fraction, test_fraction, max_clients))
