"""What a CPU's matrix units allow a round: its measured matmul peak, and the
round's own matmuls timed alone (the floor under its time).

`matmul_peak` is the machine's dense float32 rate on large square products.
`matmul_floor` is sharper: it reads every `dot_general` of one client's SGD
step (forward and backward, as `jax.grad` writes them for the model) off
the step's jaxpr, then times exactly those products, with the operand
shapes and dimension numbers they have in the round, vmapped over a group
of `chunk` clients, looped `ceil(K / (devices * chunk)) * steps` times and
sharded over every device: the round's matmul work, in the round's layout,
and nothing else. No form of the round that keeps these matmuls (and their
FLOPs) runs faster on this machine, so `fedjax seconds / floor seconds`
caps the speedup any implementation of the same computation could show.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
        .venv/bin/python benchmarks/matmul_floor.py --models=mlp,conv
"""
from __future__ import annotations

import argparse
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from common import CLASSES, SHAPE
from pfhpo import models
from pfhpo.models import cross_entropy


def best_seconds(fn, repeats: int) -> float:
  """The fastest of `repeats` calls of fn (after one that compiles), seconds."""
  jax.block_until_ready(fn())
  best = math.inf
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(fn())
    best = min(best, time.perf_counter() - t)
  return best


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
  """This machine's dense float32 matmul rate, FLOP/s: the best of
  `repeats` timed n x n products (measured in the same run as the rounds)."""
  a = jnp.ones((n, n), jnp.float32)
  dot = jax.jit(jnp.dot)
  return 2 * n**3 / best_seconds(lambda: dot(a, a), repeats)


class Matmul(NamedTuple):
  """One `dot_general` of a client step: operand shapes and dimensions."""
  lhs: tuple[int, ...]
  rhs: tuple[int, ...]
  dimension_numbers: tuple

  @property
  def flops(self) -> int:
    """2 x every lhs element x the rhs's free (neither contracted nor
    batch) extent."""
    (_, contracted), (_, batch) = self.dimension_numbers
    free = math.prod(d for i, d in enumerate(self.rhs)
                     if i not in (*contracted, *batch))
    return 2 * math.prod(self.lhs) * free


def _matmuls(jaxpr, times: int = 1) -> list[Matmul]:
  """Every dot_general of a jaxpr, nested ones included (a scan's body
  counted `length` times)."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found += [Matmul(eqn.invars[0].aval.shape, eqn.invars[1].aval.shape,
                       eqn.params['dimension_numbers'])] * times
    inner = times * eqn.params.get('length', 1)
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        sub = getattr(sub, 'jaxpr', sub)
        if hasattr(sub, 'eqns'):
          found += _matmuls(sub, inner)
  return found


def step_matmuls(name: str, batch: int) -> list[Matmul]:
  """The matmuls of one client's SGD step (loss and gradient, dropout on)
  for model `name` on `batch` FEMNIST-shaped examples, convolutions in
  their `patches` form: the step's multiply-adds, whichever form computes
  them."""
  model = models.create(name, SHAPE, CLASSES, conv_impl='patches')
  params = model.init(jax.random.PRNGKey(0))

  def loss(p, x, y):
    logits = model.apply(p, x, train=True, rng=jax.random.PRNGKey(0))
    return cross_entropy(logits, y).mean()

  x = jnp.zeros((batch, *SHAPE), jnp.float32)
  y = jnp.zeros(batch, jnp.int32)
  return _matmuls(jax.make_jaxpr(jax.grad(loss))(params, x, y).jaxpr)


def round_flops(matmuls: list[Matmul], k: int, steps: int) -> int:
  """The FLOPs of a round's local training: a client step's `matmuls`,
  for k clients of `steps` steps each."""
  return sum(m.flops for m in matmuls) * k * steps


def matmul_floor(matmuls: list[Matmul], k: int, steps: int,
                 chunk: int | None, repeats: int = 3) -> float:
  """Seconds of a client step's `matmuls` for a round of k clients,
  `steps` steps each, alone: the fastest of `repeats` runs.

  Each device loops over its share of the client groups; an optimization
  barrier on the loop's carry (the operands and the last products) keeps
  XLA from hoisting the loop-invariant products out of the loop."""
  devices = jax.device_count()
  chunk = chunk or -(-k // devices)
  mesh = jax.make_mesh((devices,), ('clients',))
  spec = PartitionSpec('clients')
  keys = iter(jax.random.split(jax.random.PRNGKey(0), 2 * len(matmuls)))
  operands = [tuple(jax.device_put(
      jax.random.normal(next(keys), (devices, chunk, *shape)),
      NamedSharding(mesh, spec)) for shape in (m.lhs, m.rhs))
      for m in matmuls]
  iterations = -(-k // (devices * chunk)) * steps
  products = [jax.vmap(lambda a, b, dn=m.dimension_numbers:
                       jax.lax.dot_general(a, b, dn)) for m in matmuls]

  def on_device(operands):
    operands = jax.tree_util.tree_map(lambda a: a[0], operands)
    multiply = lambda ops: [f(a, b) for f, (a, b) in zip(products, ops)]

    def body(carry, _):
      ops, _ = jax.lax.optimization_barrier(carry)
      return (ops, multiply(ops)), None

    # Zeros shaped like the products (which are then dead code, dropped).
    last = jax.tree_util.tree_map(jnp.zeros_like, multiply(operands))
    (_, last), _ = jax.lax.scan(body, (operands, last), None,
                                length=iterations)
    return jnp.stack([p.ravel()[0] for p in last])[None]

  run = jax.jit(jax.shard_map(on_device, mesh=mesh, in_specs=(spec,),
                              out_specs=spec))
  return best_seconds(lambda: run(operands), repeats)


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='mlp,conv')
  p.add_argument('--clients', type=int, default=100)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--chunk', type=int, default=2)
  a = p.parse_args()
  peak = matmul_peak()
  print(f'devices={jax.device_count()} matmul peak {peak / 1e9:.0f} GFLOP/s')
  for name in a.models.split(','):
    matmuls = step_matmuls(name, a.batch)
    for m in matmuls:
      print(f'  {name:8} {str(m.lhs):22} x {str(m.rhs):22} '
            f'{m.flops / 1e6:8.2f} MFLOP', flush=True)
    s = matmul_floor(matmuls, a.clients, a.steps, a.chunk)
    flops = round_flops(matmuls, a.clients, a.steps)
    print(f'{name}: {a.clients} clients x {a.steps} steps: matmuls alone '
          f'{s:.4f} s ({flops / s / 1e9:.1f} GFLOP/s)')


if __name__ == '__main__':
  main()
