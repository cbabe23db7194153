"""How quickly the data loaders fail when their files are missing.

The tests assert what makes a failure quick, deterministically: no request
when `data_dir` is given, and one request with connect and read timeouts
(no retry) on a cache miss (`tests/test_data.py`). This times the same
failures on this machine, which the tests once bounded by the clock (2 s
for FEMNIST's missing files, 10 s for a failed download):

  femnist_missing: `femnist.load(data_dir=<empty>)`;
  femnist_download: `femnist.load(cache_dir=<empty>)` against `--url`;
  fashion_download: `fashion_mnist.load(cache_dir=<empty>)` against `--url`,
          Debian's copy hidden.

`--url` is a refused port by default (an answer at once); a non-routable
address (e.g. http://10.255.255.1/{file}) shows the connect timeout.

    .venv/bin/python benchmarks/error_latency.py
    .venv/bin/python benchmarks/error_latency.py --repeats=3 \
        --url='http://10.255.255.1/{file}' --out=/tmp/latency.json

Prints a table and writes JSON rows (`case`, `median_s`, `max_s`,
`old_bound_s`, `within_old_bound`, `url`).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import tempfile
import time

from common import write_rows
from pfhpo.data import fashion_mnist, femnist
from pfhpo.errors import ConfigError

REFUSED = 'http://127.0.0.1:9/{file}'  # discard port: refused at once


def failure_seconds(load) -> float:
  """Seconds until `load(directory)` raises its ConfigError, in a fresh
  empty directory."""
  with tempfile.TemporaryDirectory() as tmp:
    start = time.perf_counter()
    try:
      load(pathlib.Path(tmp) / 'files')
    except ConfigError:
      return time.perf_counter() - start
  raise AssertionError('the load did not fail')


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--url', default=REFUSED,
                 help='where downloads go ({file}: the file name)')
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out', default='benchmarks/results/error_latency.json')
  a = p.parse_args()
  femnist.URL_TEMPLATE = fashion_mnist.URL_TEMPLATE = a.url
  fashion_mnist.DEBIAN_DIR = pathlib.Path('/nonexistent/fashion-mnist')
  cases = {
      'femnist_missing': (2.0, lambda d: femnist.load(data_dir=str(d))),
      'femnist_download': (10.0, lambda d: femnist.load(
          cache_dir=str(d), only_digits=True)),
      'fashion_download': (10.0, lambda d: fashion_mnist.load(
          cache_dir=str(d))),
  }
  print(f'url={a.url} repeats={a.repeats}')
  print(f'{"case":18} {"median s":>9} {"max s":>8} {"old bound":>10}')
  rows = []
  for case, (bound, load) in cases.items():
    times = [failure_seconds(load) for _ in range(a.repeats)]
    rows.append({'case': case, 'median_s': round(statistics.median(times), 4),
                 'max_s': round(max(times), 4), 'old_bound_s': bound,
                 'within_old_bound': max(times) < bound, 'url': a.url,
                 'repeats': a.repeats})
    print(f'{case:18} {statistics.median(times):9.3f} {max(times):8.3f} '
          f'{bound:9.0f}s', flush=True)
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
