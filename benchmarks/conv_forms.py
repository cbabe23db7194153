"""Forms of the FEMNIST CNN's convolutions on this CPU, timed on one round.

Every form computes the same network (`models.FemnistCNN`, on the same
parameter tree) in FedAvg's plainest round (`lean_round.py`: each client's
SGD steps, the clients walked `chunk` at a time, the mean update added);
only how a convolution y = x (*) K is computed, or how the clients are laid
out, differs:

    patches     both layers as patches x matrix (`convolution.patches`: the
                CPU default); a layer's patches are kh*kw = 9x its input
    lax         both layers as XLA's `conv_general_dilated` (step loop
                unrolled, as a run does for `lax` on a CPU)
    lax-first   `conv_impl` per layer: XLA's convolution for the first
                layer (one input channel, patches of 9 columns), patches
                for the second
    shifted     second layer as 9 matmuls of shifted inputs, summed:
                y = sum_{i,j} x[:, i:, j:] K[i, j]; no 9x patch array
    rows        second layer's kw shifts concatenated (patches 3x the
                input) and kh matmuls of row-shifted slices, summed
    vjp         patches, with a custom VJP whose input gradient is one
                matmul of the padded output gradient's patches with the
                flipped kernel, instead of 9 shifted adds
    bf16        second layer's patches and kernel in bfloat16 (avx512_bf16
                dot), accumulated in float32: not the same numbers
    chunk=N     patches, the clients trained N side by side (vmapped), the
                groups walked by a scan (N = 1: one client at a time,
                unbatched; the CPU default for conv since issue 31)

The forms are timed in turn (`common.interleaved`), and each round's
result is compared with the `patches` form's (max |difference| over the
parameters: float rounding, except bf16). The `patches` form's logits are
checked against `models.create('conv')`'s, so the network is the
library's.

    .venv/bin/python benchmarks/conv_forms.py --clients=10 --steps=5
"""
from __future__ import annotations

import argparse
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from common import CLASSES, FEATURES, SHAPE, client_data, interleaved, write_rows
from lean_round import lean_round
from pfhpo import models
from pfhpo.convolution import max_pool_2x2, patches

Conv = Callable[[jax.Array, jax.Array], jax.Array]  # (x, kernel HWIO) -> y


def by_patches(x, k):  # x: f32[B, H, W, Cin], k: f32[kh, kw, Cin, Cout]
  return patches(x, k.shape[:2], (1, 1), 'VALID') @ k.reshape(-1, k.shape[-1])


def by_lax(x, k):
  return jax.lax.conv_general_dilated(x, k, (1, 1), 'VALID',
                                      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))


def by_shifts(x, k):
  kh, kw = k.shape[:2]
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  return sum(x[:, i:i + h, j:j + w] @ k[i, j]
             for i in range(kh) for j in range(kw))


def by_rows(x, k):
  kh, kw, cin, cout = k.shape
  h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  r = jnp.concatenate([x[:, :, j:j + w] for j in range(kw)], -1)  # [B, H, w, kw*Cin]
  return sum(r[:, i:i + h] @ k[i].reshape(kw * cin, cout) for i in range(kh))


@jax.custom_vjp
def by_vjp(x, k):
  return by_patches(x, k)


def _vjp_fwd(x, k):
  p = patches(x, k.shape[:2], (1, 1), 'VALID')  # f32[B, H', W', kh*kw*Cin]
  return p @ k.reshape(-1, k.shape[-1]), (p, k)


def _vjp_bwd(res, dy):  # dy: f32[B, H', W', Cout]
  p, k = res
  kh, kw, cin, _ = k.shape
  dk = jnp.einsum('bhwp,bhwo->po', p, dy).reshape(k.shape)
  flipped = jnp.flip(k, (0, 1)).transpose(0, 1, 3, 2).reshape(-1, cin)
  padded = jnp.pad(dy, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
  return by_patches(padded, flipped.reshape(kh, kw, -1, cin)), dk


by_vjp.defvjp(_vjp_fwd, _vjp_bwd)


def by_bf16(x, k):
  p = patches(x.astype(jnp.bfloat16), k.shape[:2], (1, 1), 'VALID')
  return jnp.matmul(p, k.reshape(-1, k.shape[-1]).astype(jnp.bfloat16),
                    preferred_element_type=jnp.float32)


def cnn(first: Conv, second: Conv) -> models.Model:
  """`models.FemnistCNN` (its parameter tree, layers and dropout rates) with
  the given convolutions."""
  lib = models.create('conv', SHAPE, CLASSES, conv_impl='patches')

  def apply(p, x, train=False, rng=None):  # x: f32[B, 28, 28, 1]
    x = jax.nn.relu(first(x, p['Conv_0']['kernel']) + p['Conv_0']['bias'])
    x = jax.nn.relu(second(x, p['Conv_1']['kernel']) + p['Conv_1']['bias'])
    x = max_pool_2x2(x)  # f32[B, 12, 12, 64]
    keys = jax.random.split(rng, 2) if train else (None, None)
    drop = lambda v, rate, key: (v if key is None else v * jax.random.bernoulli(
        key, 1 - rate, v.shape) / (1 - rate))
    x = drop(x, 0.25, keys[0]).reshape(x.shape[0], -1)
    x = jax.nn.relu(x @ p['Dense_0']['kernel'] + p['Dense_0']['bias'])
    x = drop(x, 0.5, keys[1])
    return x @ p['Dense_1']['kernel'] + p['Dense_1']['bias']

  return lib._replace(apply=apply)


FORMS = {  # name: (first conv, second conv, unrolled steps, client chunk)
    'patches': (by_patches, by_patches, False, 2),
    'lax': (by_lax, by_lax, True, 2),
    'lax-first': (by_lax, by_patches, False, 2),
    'shifted': (by_patches, by_shifts, False, 2),
    'rows': (by_patches, by_rows, False, 2),
    'vjp': (by_patches, by_vjp, False, 2),
    'bf16': (by_patches, by_bf16, False, 2),
    'chunk=1': (by_patches, by_patches, False, 1),
    'chunk=5': (by_patches, by_patches, False, 5),
}


def form_round(name: str, steps: int, batch: int) -> Callable:
  """The jitted `lean_round` of form `name`: round(params, x, y, order,
  keys, weights) -> the next server params."""
  first, second, unroll, chunk = FORMS[name]
  return jax.jit(lean_round(cnn(first, second), FEATURES, 0.05, steps, batch,
                            chunk, None, unroll))


def main():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--forms', default=','.join(FORMS))
  p.add_argument('--clients', type=int, default=10)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--examples', type=int, default=200)
  p.add_argument('--rounds', type=int, default=5,
                 help='timed rounds of each form, in turn (median)')
  p.add_argument('--out', default='benchmarks/results/conv_forms.json')
  a = p.parse_args()
  k, n = a.clients, a.examples
  x, y = client_data(k, n)
  rng = np.random.default_rng(2)
  order = np.stack([rng.permutation(n) for _ in range(k)]).astype(np.int32)
  keys = np.asarray(jax.random.split(jax.random.PRNGKey(1), k))
  args = (x, y, order, keys, np.full(k, 1 / k, np.float32))
  params = models.create('conv', SHAPE, CLASSES).init(jax.random.PRNGKey(0))

  reference = cnn(by_patches, by_patches)
  probe = FEATURES(x[0, :8])
  lib_logits = models.create('conv', SHAPE, CLASSES, 'patches').apply(params, probe)
  assert np.allclose(reference.apply(params, probe), lib_logits, atol=1e-5), (
      'the benchmark network is not the library FemnistCNN')

  rounds, results = {}, {}
  for name in a.forms.split(','):
    step = form_round(name, a.steps, a.batch)
    results[name] = jax.block_until_ready(step(params, *args))
    rounds[name] = lambda _=0, step=step: jax.block_until_ready(
        step(params, *args))
  times = interleaved(rounds, a.rounds)
  ref = results.get('patches')
  rows = []
  print(f'conv, {k} clients x {a.steps} steps x batch {a.batch}, '
        f'{jax.device_count()} device(s)')
  for name, (seconds, _) in times.items():
    diff = None if ref is None else max(
        float(jnp.max(jnp.abs(u - v))) for u, v in
        zip(jax.tree.leaves(results[name]), jax.tree.leaves(ref)))
    rel = seconds / times['patches'][0] if 'patches' in times else None
    print(f'{name:10} {seconds:7.3f} s' + (f'  {rel:5.2f}x patches' if rel else '')
          + (f'  max |diff| {diff:.1e}' if diff is not None else ''))
    rows.append({'form': name, 'clients': k, 'steps': a.steps,
                 'batch': a.batch, 'seconds': seconds, 'of_patches': rel,
                 'max_param_diff': diff, 'devices': jax.device_count()})
  write_rows(rows, a.out)


if __name__ == '__main__':
  main()
