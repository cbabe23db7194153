"""The host allocator setting: a freed large block is reused without
faulting its pages in again (`pfhpo.host_memory`)."""
import platform
import subprocess
import sys

import pytest

PROGRAM = '''
import resource, sys
import numpy as np
from pfhpo.host_memory import keep_freed_memory
if sys.argv[1] == "keep":
  assert keep_freed_memory()
faults = []
for _ in range(3):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  block = np.ones(64 << 20, np.uint8)  # above glibc's largest mmap threshold
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  del block
print(*faults)
'''


def page_faults(setting: str) -> list[int]:
  """Minor page faults of allocating and filling a 64 MiB block, three
  times over, in a fresh process with or without `keep_freed_memory`."""
  out = subprocess.run([sys.executable, '-c', PROGRAM, setting], check=True,
                       capture_output=True, text=True).stdout
  return [int(f) for f in out.split()]


@pytest.mark.skipif(platform.libc_ver()[0] != 'glibc', reason='not glibc')
def test_freed_block_is_reused_without_faults():
  first, *again = page_faults('keep')
  assert first > 100  # the block's pages faulted in once
  assert max(again) < first / 10, (first, again)
  # Without the setting glibc unmaps the block on free, and every
  # allocation faults its pages in afresh.
  first, *again = page_faults('default')
  assert min(again) > first / 2, (first, again)
