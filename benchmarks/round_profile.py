"""Where a round's time goes: XLA:CPU's own per-operation trace of our round,
summed by operation and split into matmuls and everything else.

XLA:CPU runs a compiled program as a sequence of thunks (one per fused
operation, library matmul or loop); with `--xla_cpu_enable_xprof_traceme`
each thunk is an event in JAX's profiler trace. This script runs our round
(`round_throughput.ours`, the round every experiment runs) under
`jax.profiler.trace`, sums each thunk's time over the traced rounds, and
marks as a matmul every thunk that is a `dot` or a fusion containing one
(read off the compiled HLO). Only events named after an instruction of
the round's HLO count (not the host's own events); loops (`while`) are
left out, their time is their body's thunks'. A collective (`all-reduce`)
includes the time its device waits for the others.

    .venv/bin/python benchmarks/round_profile.py --model=conv --clients=10
    XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        .venv/bin/python benchmarks/round_profile.py --model=mlp --clients=100

Thunk times are thread time: with the client axis over two devices, two
thunks run at once, and the sum is about twice the round's wall time.

Each round is traced on its own, and the script prints, for each thread
that ran thunks, how many, its time inside them and the time from its
first thunk's start to its last one's end. With one device per core (two
host devices on this CPU) each device's thunks run on one thread, and
the difference is that device's time outside its thunks, which no row of
the table shows: it waits there for a dot that Eigen runs on its own
threads (XLA:CPU's Eigen dots, such as the transposed-operand products
of a weight gradient, finish after their event closes, and the next
thunk that reads the product waits), and runs the runtime's own
bookkeeping. So the table's matmul share understates the matmuls by
about what those waits add. (One device spreads independent thunks over
the cores' threads: there the difference means nothing.)
"""
from __future__ import annotations

import os

if __name__ == '__main__':  # before jax starts: each thunk a trace event
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '')
                             + ' --xla_cpu_enable_xprof_traceme=true')

import argparse  # noqa: E402
import collections  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NamedTuple  # noqa: E402

import jax  # noqa: E402

from pfhpo import convolution  # noqa: E402
from round_throughput import chunk_for, ours  # noqa: E402


def thunks(hlo: str) -> tuple[set[str], set[str]]:
  """(every instruction but loops, those that are matmuls: dots or fusions
  whose computation contains one) of optimized HLO text."""
  names, with_dot, calls, name = set(), set(), {}, None
  for line in hlo.splitlines():
    head = re.match(r'^(?:ENTRY )?%(\S+) ', line)
    if head:
      name = head.group(1)
    instr = re.match(r'\s+(?:ROOT )?%(\S+) = .*?\b(\w[\w-]*)\(', line)
    if not instr:
      continue
    if instr.group(2) != 'while':
      names.add(instr.group(1))
    if instr.group(2) in ('dot', 'convolution'):
      with_dot.update((name, instr.group(1)))
    called = re.search(r'calls=%(\S+?)[,\s]', line + ' ')
    if called:
      calls[instr.group(1)] = called.group(1)
  return names, names & ({i for i, c in calls.items() if c in with_dot}
                         | with_dot)


class Thread(NamedTuple):
  """What one thread that ran thunks did in one round."""
  thunks: int
  busy_s: float  # inside its thunks
  span_s: float  # from its first thunk's start to its last one's end


def traced_round(run, r: int, names: set[str]):
  """({thunk name: seconds}, [Thread], most thunks first) of one traced
  call run(r), from the trace events named in `names`."""
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      run(r)
    trace = next(Path(d).rglob('perfetto_trace.json.gz'))
    events = json.load(gzip.open(trace))
  events = events['traceEvents'] if isinstance(events, dict) else events
  seconds = collections.Counter()
  by_thread = collections.defaultdict(list)
  for e in events:
    if e.get('ph') == 'X' and e['name'] in names:
      seconds[e['name']] += e.get('dur', 0) / 1e6
      by_thread[e['tid']].append((e['ts'], e.get('dur', 0)))
  threads = [Thread(len(ev), sum(d for _, d in ev) / 1e6,
                    (max(t + d for t, d in ev) - min(t for t, _ in ev)) / 1e6)
             for ev in by_thread.values()]
  return seconds, sorted(threads, reverse=True)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--model', default='conv')
  p.add_argument('--clients', type=int, default=10)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--rounds', type=int, default=2, help='traced rounds')
  p.add_argument('--top', type=int, default=15)
  p.add_argument('--conv_impl', default=convolution.default_conv_impl())
  p.add_argument('--client_chunk', type=int, default=None,
                 help="0: all at once; default: the model's")
  a = p.parse_args()
  round_ = ours(a.model, a.clients, a.steps, a.batch, a.examples, a.conv_impl,
                chunk_for(a.model, a.client_chunk))
  round_.run()  # warm
  names, matmuls = thunks(round_.hlo())
  traced = [traced_round(round_.run, r, names) for r in range(a.rounds)]
  per_round = collections.Counter()
  for seconds, _ in traced:
    per_round.update({k: v / a.rounds for k, v in seconds.items()})
  total = sum(per_round.values())
  in_matmuls = sum(v for k, v in per_round.items() if k in matmuls)
  print(f'{a.model}, {a.clients} clients, {jax.device_count()} device(s): '
        f'{total:.3f} thunk-seconds a round, matmuls {in_matmuls / total:.0%}'
        f', the rest {1 - in_matmuls / total:.0%}')
  for name, s in sorted(per_round.items(), key=lambda kv: -kv[1])[:a.top]:
    print(f'  {s * 1e3:9.1f} ms {s / total:6.1%}  '
          f'{"matmul" if name in matmuls else "      "}  {name}')
  # Threads by how many thunks they ran, ranked alike in every round.
  busiest = traced[0][1]
  for rank, thread in enumerate(busiest):
    if thread.thunks < 0.01 * sum(t.thunks for t in busiest):
      break
    ranked = [threads[rank] for _, threads in traced if len(threads) > rank]
    busy = sum(t.busy_s for t in ranked) / len(ranked)
    span = sum(t.span_s for t in ranked) / len(ranked)
    print(f'thread {rank}: {thread.thunks} thunks a round, {busy * 1e3:.1f} '
          f'ms in them, {span * 1e3:.1f} ms from its first to its last')


if __name__ == '__main__':
  main()
