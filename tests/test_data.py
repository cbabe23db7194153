"""Tests of the data loaders: exact contents, coverage, determinism, errors."""
from __future__ import annotations

import gzip
import pathlib
import sqlite3
import struct

import hypothesis
import hypothesis.strategies as st
import numpy as np
import pytest

import pfhpo.data
from pfhpo.data import digits, fashion_mnist, femnist, synthetic
from pfhpo.data.federated import ClientSplit, FederatedData, write_sqlite
from pfhpo.data.groups import GROUPS, with_groups
from pfhpo.data.partition import (client_sizes, dirichlet_partition,
                                  pseudo_writers)
from pfhpo.errors import ConfigError

UNREACHABLE = 'http://127.0.0.1:9/{file}'  # discard port: refused at once


def rows(split: ClientSplit, i: int) -> tuple[np.ndarray, np.ndarray]:
  """Client i's real examples: x[n, ...], y[n]."""
  return split.client(i)


def assert_padded_rows(split: ClientSplit) -> None:
  """Padded rows (in a shuffled client order) hold each client's examples
  first, then zeros, to the split's width; the split itself holds no
  padding."""
  order = np.random.default_rng(0).permutation(split.num_clients)
  mask = split.padded_mask(order)
  n = split.counts[order]
  assert split.width == max(1, split.counts.max()) == mask.shape[1]
  np.testing.assert_array_equal(mask, np.arange(split.width) < n[:, None])
  x, y = split.padded_x(order), split.padded_y(order)
  for row, i in enumerate(order):
    xi, yi = split.client(i)
    np.testing.assert_array_equal(x[row, :n[row]], xi)
    np.testing.assert_array_equal(y[row, :n[row]], yi)
  assert not x[~mask].any() and not y[~mask].any()
  assert len(split.y) == split.counts.sum() == split.offsets[-1]


def assert_same(a: FederatedData, b: FederatedData) -> None:
  assert a.client_ids == b.client_ids
  for s in ('train', 'val', 'test'):
    for f in ('x', 'y', 'offsets'):
      np.testing.assert_array_equal(getattr(getattr(a, s), f),
                                    getattr(getattr(b, s), f))


# ---------------------------------------------------------------- FEMNIST


def femnist_clients(rng: np.random.Generator, ids: list[str],
                    lossless: bool = True) -> dict[str, dict]:
  """Small clients in fedjax's format: pixels k/255 with background 1.0."""
  clients = {}
  for cid in ids:
    n = int(rng.integers(3, 41))
    k = rng.integers(0, 256, (n, 28, 28))
    k[:, :4] = 255  # background: pixels 1.0, features 0
    pixels = (k / 255.0).astype(np.float32)
    if not lossless:
      pixels[0, 10, 10] = 0.1234567
    clients[cid] = {'pixels': pixels,
                    'label': rng.integers(0, 62, n).astype(np.int32)}
  return clients


@pytest.fixture
def femnist_dir(tmp_path: pathlib.Path):
  rng = np.random.default_rng(1)
  ids = [f'f{i:04d}_{i % 100:02d}' for i in (7, 3, 12, 5, 9)]  # not sorted
  train = femnist_clients(rng, ids)
  test = femnist_clients(rng, [ids[2], ids[0], ids[4], ids[1], 'f9999_99'])
  write_sqlite(tmp_path / 'federated_emnist_train.sqlite', train)
  write_sqlite(tmp_path / 'federated_emnist_test.sqlite', test)
  return tmp_path, ids, train, test


def test_femnist_round_trip(femnist_dir):
  path, ids, train, test = femnist_dir
  data = femnist.load(data_dir=str(path), seed=3, val_fraction=0.25)
  assert data.client_ids == tuple(ids)
  assert data.num_classes == 62 and data.feature_shape == (28, 28, 1)
  assert data.train.x.dtype == np.uint8 and data.x_scale == 1 / 255
  for split in (data.train, data.val, data.test):
    assert_padded_rows(split)
  for i, cid in enumerate(ids):
    want_x = 1.0 - train[cid]['pixels'][..., None]
    want_y = train[cid]['label']
    tx, ty = rows(data.train, i)
    vx, vy = rows(data.val, i)
    n = len(want_y)
    assert len(ty) + len(vy) == n
    assert len(vy) == round(0.25 * n)
    got_x = data.features(np.concatenate([tx, vx]))
    got_y = np.concatenate([ty, vy])
    # The split is a permutation of the client's examples: match each one.
    order = [int(np.flatnonzero(
        (np.abs(want_x - g).max(axis=(1, 2, 3)) < 1e-6) & (want_y == l))[0])
             for g, l in zip(got_x, got_y)]
    assert sorted(order) == list(range(n))
    if cid in test:
      ex, ey = rows(data.test, i)
      np.testing.assert_allclose(data.features(ex),
                                 1.0 - test[cid]['pixels'][..., None],
                                 atol=1e-6)
      np.testing.assert_array_equal(ey, test[cid]['label'])
    else:
      assert data.test.counts[i] == 0
  # Counts match the num_examples column of both files.
  db = sqlite3.connect(path / 'federated_emnist_train.sqlite')
  sizes = dict(db.execute('SELECT client_id, num_examples FROM federated_data'))
  db.close()
  np.testing.assert_array_equal(data.train.counts + data.val.counts,
                                [sizes[c.encode()] for c in ids])
  assert data.test.counts.sum() == sum(
      len(test[c]['label']) for c in ids if c in test)
  # Deterministic for the seed, max_clients keeps a prefix.
  assert_same(data, femnist.load(data_dir=str(path), seed=3,
                                 val_fraction=0.25))
  head = femnist.load(data_dir=str(path), seed=3, val_fraction=0.25,
                      max_clients=2)
  assert head.client_ids == tuple(ids[:2])
  np.testing.assert_array_equal(head.val.counts, data.val.counts[:2])


def test_femnist_float_fallback(tmp_path):
  rng = np.random.default_rng(2)
  train = femnist_clients(rng, ['a', 'b'], lossless=False)
  write_sqlite(tmp_path / 'federated_emnist_train.sqlite', train)
  write_sqlite(tmp_path / 'federated_emnist_test.sqlite',
                       femnist_clients(rng, ['b']))
  data = femnist.load(data_dir=str(tmp_path), val_fraction=0.0)
  assert data.train.x.dtype == np.float32 and data.x_scale == 1.0
  odd = np.float32(1.0) - np.float32(0.1234567)
  assert (rows(data.train, 0)[0][:, 10, 10, 0] == odd).sum() == 1
  assert data.test.counts[0] == 0 and data.test.counts[1] >= 3
  np.testing.assert_array_equal(
      np.sort(rows(data.train, 1)[1]), np.sort(train['b']['label']))


def requests_spy(monkeypatch) -> list[dict]:
  """Records the keyword arguments of every `requests.get` the loaders make
  (each still goes to the network: here a refused port)."""
  import requests
  calls, real = [], requests.get

  def get(url, **kwargs):
    calls.append({'url': url, **kwargs})
    return real(url, **kwargs)

  monkeypatch.setattr(requests, 'get', get)
  return calls


def assert_one_bounded_attempt(calls: list[dict], name: str) -> None:
  """The failure was one request for `name`, with connect and read
  timeouts: a quick failure, whatever the network does. (How quick on this
  machine: benchmarks/error_latency.py.)"""
  assert [c['url'] for c in calls] == [UNREACHABLE.format(file=name)]
  connect, read = calls[0]['timeout']
  assert 0 < connect <= 10 and 0 < read <= 60


def test_femnist_missing_files(tmp_path, monkeypatch):
  """With `data_dir`, missing files are an error naming both files and the
  directory, and nothing is downloaded (no request at all)."""
  monkeypatch.setattr(femnist, 'URL_TEMPLATE', UNREACHABLE)
  calls = requests_spy(monkeypatch)
  with pytest.raises(ConfigError) as e:
    femnist.load(data_dir=str(tmp_path))
  assert calls == []
  msg = str(e.value)
  assert 'federated_emnist_train.sqlite' in msg
  assert 'federated_emnist_test.sqlite' in msg and str(tmp_path) in msg


def test_femnist_download_failure_is_quick(tmp_path, monkeypatch):
  """A failed download is one attempt with timeouts (no retry), an error
  naming the file, the cache and `data_dir`, and leaves no partial file."""
  monkeypatch.setattr(femnist, 'URL_TEMPLATE', UNREACHABLE)
  calls = requests_spy(monkeypatch)
  with pytest.raises(ConfigError) as e:
    femnist.load(cache_dir=str(tmp_path / 'cache'), only_digits=True)
  assert_one_bounded_attempt(calls, 'federated_emnist_digitsonly_train.sqlite')
  msg = str(e.value)
  assert 'federated_emnist_digitsonly_train.sqlite' in msg
  assert str(tmp_path / 'cache') in msg and '`data_dir`' in msg
  assert not list((tmp_path / 'cache').glob('*'))  # no partial file left


@pytest.mark.parametrize('corrupt', ['random', 'truncated', 'no_table'])
def test_femnist_corrupt_file(femnist_dir, corrupt):
  path = femnist_dir[0] / 'federated_emnist_train.sqlite'
  if corrupt == 'random':
    path.write_bytes(np.random.default_rng(0).bytes(5000))
  elif corrupt == 'truncated':
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
  else:
    path.unlink()
    sqlite3.connect(path).execute('CREATE TABLE other (a INTEGER)').close()
  with pytest.raises(ConfigError, match='federated_emnist_train.sqlite'):
    femnist.load(data_dir=str(femnist_dir[0]))


def test_client_without_training_examples(tmp_path):
  clients = femnist_clients(np.random.default_rng(0), ['a', 'b'])
  clients['b'] = {'pixels': np.zeros((0, 28, 28), np.float32),
                  'label': np.zeros(0, np.int32)}
  write_sqlite(tmp_path / 'federated_emnist_train.sqlite', clients)
  write_sqlite(tmp_path / 'federated_emnist_test.sqlite', clients)
  with pytest.raises(ConfigError, match="'b' has no training examples"):
    femnist.load(data_dir=str(tmp_path))


# ---------------------------------------------------------- partitioning


def test_client_sizes_match_femnist():
  sizes = client_sizes(1_000_000, rng=np.random.default_rng(0))
  assert sizes.sum() == 1_000_000 and sizes.min() >= 20
  assert abs(sizes.mean() - 226) < 5 and abs(sizes.std() - 89) < 5
  np.testing.assert_array_equal(client_sizes(100, rng=np.random.default_rng(0)),
                                [100])


def test_dirichlet_partition_exact_and_skewed():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(10), [3000] + [1000] * 9)  # imbalanced
  sizes = client_sizes(len(labels), 120, 40, rng=rng)

  def max_class_fraction(alpha):
    parts = dirichlet_partition(labels, sizes, alpha, np.random.default_rng(1))
    assert [len(p) for p in parts] == sizes.tolist()
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)),
                                  np.arange(len(labels)))
    return np.mean([np.bincount(labels[p]).max() / len(p) for p in parts])

  assert max_class_fraction(0.1) > 0.6
  assert max_class_fraction(100.0) < 0.35
  with pytest.raises(ConfigError, match='alpha'):
    dirichlet_partition(labels, sizes, 0.0, rng)


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    counts=st.lists(st.integers(0, 60), min_size=2, max_size=8),
    mean=st.floats(5, 80), alpha=st.floats(0.01, 50.0),
    seed=st.integers(0, 2**16))
def test_partition_covers_every_example_once_for_any_input(counts, mean, alpha,
                                                           seed):
  labels = np.repeat(np.arange(len(counts)), counts)
  hypothesis.assume(labels.size > 0)
  rng = np.random.default_rng(seed)
  sizes = client_sizes(labels.size, mean, mean / 3, min_size=1, rng=rng)
  assert sizes.sum() == labels.size and sizes.min() >= 1
  parts = dirichlet_partition(labels, sizes, alpha, rng)
  assert [len(p) for p in parts] == sizes.tolist()
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)),
                                np.arange(labels.size))


# ------------------------------------------------------------ Fashion-MNIST


def indexed_images(n: int) -> np.ndarray:
  """u8[n, 28, 28] whose first two pixels encode the example index."""
  images = np.zeros((n, 28, 28), np.uint8)
  images[:, 0, 0], images[:, 0, 1] = np.arange(n) % 256, np.arange(n) // 256
  return images


def example_ids(data: FederatedData) -> np.ndarray:
  ids = [split.x[..., 0, 0, 0].astype(int)
         + 256 * split.x[..., 0, 1, 0].astype(int)
         for split in (data.train, data.val, data.test)]
  return np.concatenate(ids)


def partition(images, labels, **kwargs):
  return pseudo_writers('fashion_mnist', 'fmnist', images[..., None], labels,
                        10, **kwargs)


def test_fashion_partition_coverage_and_seed():
  n = 3000
  labels = np.random.default_rng(5).integers(0, 10, n)
  images = indexed_images(n)
  kwargs = dict(alpha=0.5, val_fraction=0.1, test_fraction=0.2, mean=60,
                std=20)
  a = partition(images, labels, seed=0, **kwargs)
  assert a.train.x.shape[1:] == (28, 28, 1) and a.train.x.dtype == np.uint8
  assert a.num_clients > 30 and a.client_ids[7] == 'fmnist_0007'
  ids = example_ids(a)
  np.testing.assert_array_equal(np.sort(ids), np.arange(n))
  all_y = np.concatenate([s.y for s in (a.train, a.val, a.test)])
  np.testing.assert_array_equal(all_y, labels[ids])
  assert_same(a, partition(images, labels, seed=0, **kwargs))
  b = partition(images, labels, seed=1, **kwargs)
  assert not np.array_equal(example_ids(b), ids)
  head = partition(images, labels, seed=0, max_clients=4, **kwargs)
  assert head.client_ids == a.client_ids[:4]
  for s in ('train', 'val', 'test'):
    for i in range(4):
      for got, want in zip(rows(getattr(head, s), i), rows(getattr(a, s), i)):
        np.testing.assert_array_equal(got, want)


def write_idx(path: pathlib.Path, array: np.ndarray) -> None:
  """Writes a uint8 IDX file (gzip if the name ends in .gz)."""
  raw = (struct.pack('>BBBB', 0, 0, 0x08, array.ndim)
         + struct.pack(f'>{array.ndim}I', *array.shape)
         + array.astype(np.uint8).tobytes())
  if path.suffix == '.gz':
    raw = gzip.compress(raw)
  path.write_bytes(raw)


@pytest.mark.parametrize('suffix', ['', '.gz'])
def test_idx_round_trip(tmp_path, suffix):
  array = np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)
  write_idx(tmp_path / f'a{suffix}', array)
  got = fashion_mnist.read_idx(tmp_path / f'a{suffix}')
  assert got.dtype == np.uint8
  np.testing.assert_array_equal(got, array)
  (tmp_path / 'bad').write_bytes(b'\x01\x02\x08\x01' + bytes(8))
  with pytest.raises(ConfigError, match='magic'):
    fashion_mnist.read_idx(tmp_path / 'bad')
  write_idx(tmp_path / f'short{suffix}', array)
  raw = (tmp_path / f'short{suffix}').read_bytes()
  (tmp_path / f'short{suffix}').write_bytes(raw[:-10])  # cut 10 bytes
  with pytest.raises(ConfigError, match='short'):
    fashion_mnist.read_idx(tmp_path / f'short{suffix}')


def write_fashion_files(directory: pathlib.Path, n_train: int, n_test: int):
  images = indexed_images(n_train + n_test)
  labels = np.arange(n_train + n_test) % 10
  directory.mkdir(parents=True, exist_ok=True)
  write_idx(directory / 'train-images-idx3-ubyte.gz', images[:n_train])
  write_idx(directory / 'train-labels-idx1-ubyte', labels[:n_train])
  write_idx(directory / 't10k-images-idx3-ubyte', images[n_train:])
  write_idx(directory / 't10k-labels-idx1-ubyte.gz', labels[n_train:])
  return labels


def test_fashion_data_dir(tmp_path, monkeypatch):
  labels = write_fashion_files(tmp_path / 'fm', 500, 100)
  data = fashion_mnist.load(data_dir=str(tmp_path / 'fm'), seed=0)
  assert data.num_classes == 10 and data.x_scale == 1 / 255
  ids = example_ids(data)
  np.testing.assert_array_equal(np.sort(ids), np.arange(600))
  assert 2 <= data.num_clients <= 4  # 600 examples, ~226 per writer
  # Debian's directory is skipped when absent; a cached copy is used.
  monkeypatch.setattr(fashion_mnist, 'DEBIAN_DIR', tmp_path / 'none')
  monkeypatch.setattr(fashion_mnist, 'URL_TEMPLATE', UNREACHABLE)
  cached = fashion_mnist.load(cache_dir=str(tmp_path / 'fm'), seed=0)
  assert_same(cached, data)
  np.testing.assert_array_equal(
      np.concatenate([s.y for s in (data.train, data.val, data.test)]),
      labels[ids])


def test_fashion_missing_files(tmp_path, monkeypatch):
  """Missing files in `data_dir` are an error naming every file and the
  directory, with no request made; without Debian's copy or a cache, one
  bounded download attempt fails into the same advice."""
  monkeypatch.setattr(fashion_mnist, 'URL_TEMPLATE', UNREACHABLE)
  calls = requests_spy(monkeypatch)
  with pytest.raises(ConfigError) as e:
    fashion_mnist.load(data_dir=str(tmp_path))
  for name in fashion_mnist.FILES:
    assert name in str(e.value)
  assert str(tmp_path) in str(e.value)
  assert calls == []
  monkeypatch.setattr(fashion_mnist, 'DEBIAN_DIR', tmp_path / 'none')
  with pytest.raises(ConfigError, match='apt-get install dataset-fashion'):
    fashion_mnist.load(cache_dir=str(tmp_path / 'cache'))
  assert_one_bounded_attempt(calls, f'{fashion_mnist.FILES[0]}.gz')
  assert not list((tmp_path / 'cache').glob('*'))  # no partial file left


@pytest.mark.skipif(
    fashion_mnist.find_files(fashion_mnist.DEBIAN_DIR) is None,
    reason='Debian package dataset-fashion-mnist not installed')
def test_fashion_real_data():
  data = pfhpo.data.load('fashion_mnist', seed=0, alpha=None)
  total = data.train.counts + data.val.counts + data.test.counts
  assert total.sum() == 70_000
  assert data.num_classes == 10 and data.train.x.shape[1:] == (28, 28, 1)
  assert set(np.unique(data.train.y)) == set(range(10))
  assert 250 < data.num_clients < 370
  assert abs(total.mean() - 226) < 15 and abs(total.std() - 89) < 15


# ------------------------------------------------------ digits, synthetic


def test_digits():
  data = pfhpo.data.load('digits', seed=0, num_clients=20, alpha=0.5)
  assert data.num_clients == 20 and data.num_classes == 10
  assert data.train.x.shape[1:] == (8, 8, 1) and data.train.x.dtype == np.uint8
  f = data.features(data.train.x)
  assert f.min() == 0.0 and f.max() == 1.0
  total = data.train.counts + data.val.counts + data.test.counts
  assert total.sum() == 1797 and total.max() - total.min() <= 1
  # Every digit exactly once: match (image, label) pairs against sklearn's.
  from sklearn.datasets import load_digits
  ref = load_digits()
  key = lambda x, y: [bytes(a.astype(np.uint8).ravel()) + bytes([b])
                      for a, b in zip(x, y)]
  got = sum((key(s.x, s.y)
             for s in (data.train, data.val, data.test)), [])
  assert sorted(got) == sorted(key(ref.images, ref.target))
  for split in (data.train, data.val, data.test):
    assert_padded_rows(split)
  assert_same(data, digits.load(seed=0))
  assert not np.array_equal(digits.load(seed=1).train.y, data.train.y)


def test_synthetic():
  data = pfhpo.data.load('synthetic', seed=0, num_clients=30, beta=None)
  assert data.num_clients == 30 and data.feature_shape == (60,)
  assert data.train.x.dtype == np.float32 and data.x_scale == 1.0
  total = data.train.counts + data.val.counts + data.test.counts
  assert total.min() >= 50 and total.max() <= synthetic.MAX_SIZE
  ys = [s.y for s in (data.train, data.val, data.test)]
  assert all(0 <= y.min() and y.max() < 10 for y in ys)
  # Heterogeneous labels: clients' label distributions differ a lot.
  hist = np.stack([np.bincount(data.train.client(i)[1],
                               minlength=10) / data.train.counts[i]
                   for i in range(30)])
  tv = 0.5 * np.abs(hist[:, None] - hist[None]).sum(-1)  # f64[30, 30]
  assert tv[np.triu_indices(30, 1)].mean() > 0.5
  assert len(set(hist.argmax(1))) >= 4
  assert_same(data, synthetic.load(seed=0))
  assert not np.array_equal(synthetic.load(seed=1).train.x, data.train.x)


# ------------------------------------------------------------- dispatch


def test_unknown_dataset():
  with pytest.raises(ConfigError) as e:
    pfhpo.data.load('nope')
  for name in pfhpo.data.DATASETS:
    assert name in str(e.value)


def test_client_groups_corrupt_only_their_own_training_split():
  """Noisy writers: about `noise_rate` of their training labels, and none of
  their validation or test labels, changed, each to another class; few
  writers: their first `few_examples` training examples; clean writers and
  every validation and test split as they were."""
  data = pfhpo.data.load('digits', seed=0, num_clients=40, alpha=0.5)
  mixed = with_groups(data, noisy_fraction=0.25, noise_rate=0.6,
                      few_fraction=0.5, few_examples=5, seed=0)
  group = mixed.client_group
  assert mixed.groups == GROUPS
  assert np.bincount(group, minlength=3).tolist() == [10, 10, 20]
  noisy, few, clean = (group == GROUPS.index(g) for g in
                       ('noisy', 'few', 'clean'))
  for split in ('val', 'test'):
    assert_same_split(getattr(mixed, split), getattr(data, split))
  everyone = np.arange(data.num_clients)  # padded rows, to compare per client
  mask, y, y0 = (mixed.train.padded_mask(everyone),
                 mixed.train.padded_y(everyone), data.train.padded_y(everyone))
  changed = (y != y0) & mask
  assert not changed[~noisy].any()
  rate = changed[noisy].sum() / mask[noisy].sum()
  assert abs(rate - 0.6) < 0.05  # ~1,000 labels: a 5-point band is 3 sigma
  np.testing.assert_array_equal(mixed.train.counts[few],
                                np.minimum(data.train.counts[few], 5))
  np.testing.assert_array_equal(mixed.train.counts[~few],
                                data.train.counts[~few])
  assert_padded_rows(mixed.train)
  np.testing.assert_array_equal(y[clean], y0[clean])
  np.testing.assert_array_equal(mixed.train.padded_x(everyone)[mask],
                                data.train.padded_x(everyone)[mask])
  assert mixed.train.width == data.train.width  # the round's shapes stay
  # The same seed draws the same groups and flips; another seed others.
  again = with_groups(data, 0.25, 0.6, 0.5, 5, seed=0)
  np.testing.assert_array_equal(again.train.y, mixed.train.y)
  assert not np.array_equal(with_groups(data, 0.25, 0.6, 0.5, 5,
                                        seed=1).client_group, group)
  assert with_groups(data, 0.0, 0.6, 0.0, 5, seed=0) is data
  # Pair noise: each flipped label is the next class.
  pair = with_groups(data, 0.25, 0.6, 0.5, 5, seed=0, noise_kind='pair')
  pair_y = pair.train.padded_y(everyone)
  flipped = (pair_y != y0) & mask
  assert abs(flipped[noisy].sum() / mask[noisy].sum() - 0.6) < 0.05
  np.testing.assert_array_equal(pair_y[flipped], (y0[flipped] + 1) % 10)
  with pytest.raises(ConfigError, match='few_fraction'):
    with_groups(data, 0.6, 0.6, 0.5, 5, seed=0)


def assert_same_split(a: ClientSplit, b: ClientSplit) -> None:
  for field in ('x', 'y', 'offsets'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# ---------------------------------------------------------------- TFDS


def test_tfds_image_set_from_mock_data(tmp_path):
  """`tfds:NAME` through tensorflow-datasets' mock data (no files, no
  download): every mocked example lands in exactly one writer's split, with
  its label, and a seed fixes the federation."""
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=300,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    source = tfds.data_source('mnist', split='train', data_dir=str(tmp_path),
                              download=False)
    pooled = [source[i] for i in range(len(source))] * 2  # train, test
    kwargs = dict(data_dir=str(tmp_path), alpha=0.5, max_clients=None)
    a = pfhpo.data.load('tfds:mnist', seed=0, **kwargs)
    again = pfhpo.data.load('tfds:mnist', seed=0, **kwargs)
    other = pfhpo.data.load('tfds:mnist', seed=1, **kwargs)
  assert a.name == 'tfds:mnist' and a.num_classes == 10
  assert a.client_ids[0] == 'mnist_0000' and a.x_scale == 1 / 255
  assert a.feature_shape == (28, 28, 1) and a.train.x.dtype == np.uint8
  splits = (a.train, a.val, a.test)
  assert sum(len(s.y) for s in splits) == len(pooled) == 600
  # Each example of a split is a pooled example with its label: match the
  # images (random, so distinct) back to the pooled ones.
  index = {np.asarray(e['image']).tobytes(): int(e['label']) for e in pooled}
  for s in splits:
    for x, y in zip(s.x, s.y):
      assert index[x.tobytes()] == y
  assert_same(a, again)
  assert not np.array_equal(other.train.y, a.train.y)


def test_tfds_errors_are_one_line_config_errors(tmp_path):
  pytest.importorskip('tensorflow_datasets')
  with pytest.raises(ConfigError, match='is not prepared in `data_dir`'):
    pfhpo.data.load('tfds:mnist', data_dir=str(tmp_path))
  with pytest.raises(ConfigError, match='tfds:NAME'):
    pfhpo.data.load('tfds:')
