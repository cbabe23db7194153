"""The benchmarks' own arithmetic: the matmul floor must find every product of
a client step, and count its FLOPs right, or the speedup cap it prints is
wrong; the profile must tell the round's matmuls from the rest; the lean
round must do our round's work."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo import models
from pfhpo.algorithms import fedavg
from pfhpo.federated import Execution
from pfhpo.federated.local_update import example_order
from pfhpo.types import ClientBatch, RoundBatch, ValBatch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'benchmarks'))
from common import CLASSES, FEATURES, SHAPE, client_data  # noqa: E402
from conv_forms import (by_bf16, by_lax, by_patches, by_rows,  # noqa: E402
                        by_shifts, by_vjp, cnn)
from lean_round import lean_round  # noqa: E402
from matmul_floor import Matmul, _matmuls, step_matmuls  # noqa: E402
from round_profile import thunks  # noqa: E402


def test_mlp_step_has_every_product_of_forward_and_backward():
  found = step_matmuls('mlp', 16)
  layers = [(784, 200), (200, 200), (200, 62)]
  forward = sum(2 * 16 * i * o for i, o in layers)
  # Backward: every layer's weight gradient, every input gradient but the
  # first layer's (the images are not differentiated).
  assert len(found) == 3 + 3 + 2
  assert sum(m.flops for m in found) == 3 * forward - 2 * 16 * 784 * 200


def test_flops_count_batch_and_contracted_dimensions():
  # A vmapped [2, 16, 784] x [2, 784, 200] product, batch dimension 0.
  m = Matmul((2, 16, 784), (2, 784, 200), (((2,), (1,)), ((0,), (0,))))
  assert m.flops == 2 * 2 * 16 * 784 * 200
  # Contracting two dimensions: patches^T x output gradient of a conv.
  m = Matmul((16, 24, 24, 288), (16, 24, 24, 64),
             (((0, 1, 2), (0, 1, 2)), ((), ())))
  assert m.flops == 2 * 16 * 24 * 24 * 288 * 64


def test_a_scan_body_counts_once_per_iteration():
  def f(x, w):
    return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None,
                        length=7)[0]

  jaxpr = jax.make_jaxpr(f)(jnp.ones((4, 8)), jnp.ones((8, 8))).jaxpr
  found = _matmuls(jaxpr)
  assert len(found) == 7
  assert {m.lhs for m in found} == {(4, 8)}


def test_profile_marks_the_compiled_dots_as_matmuls():
  def f(x, w):
    def step(c, _):
      return jnp.tanh(c @ w) + 1.0, None
    return jax.lax.scan(step, x, None, length=3)[0]

  hlo = jax.jit(f).lower(jnp.ones((16, 64)), jnp.ones((64, 64))).compile(
  ).as_text()
  names, matmuls = thunks(hlo)
  # The product is a matmul, and so is the library fusion XLA:CPU may wrap
  # around it; the fused tanh-and-add is not. The loop is no thunk of its
  # own (its body's thunks carry its time).
  assert any(n.startswith('dot') for n in matmuls) and matmuls <= names
  elementwise = {n for n in names if 'add_fusion' in n}
  assert elementwise and not elementwise & matmuls
  loop = re.search(r'%(\S+) = [^=\n]* while\(', hlo).group(1)
  assert loop not in names


def test_lean_round_computes_our_fedavg_round():
  # The same work on both sides: the rows our round's example orders pick
  # and its dropout keys (the round's key: (propose, train); the train key:
  # one per client, split into (order, dropout)).
  shape, classes, k, n, steps, batch, lr = (8, 8, 1), 5, 4, 7, 3, 5, 0.1
  model = models.create('conv', shape, classes, conv_impl='patches')
  rng = np.random.default_rng(0)
  x = rng.integers(0, 256, (k, n, *shape), dtype=np.uint8)
  y = rng.integers(0, classes, (k, n)).astype(np.int32)
  count = np.full(k, n, np.int32)
  ours = fedavg(model, FEATURES, optax.sgd(1.0), lr, steps, batch,
                execution=Execution(client_chunk=2))
  state, rows = ours.init(jax.random.PRNGKey(0), k)
  key = jax.random.PRNGKey(1)
  val = ValBatch(x[0, :2], y[0, :2], np.full(2, 0.5, np.float32))
  new, _, _ = jax.jit(ours.apply)(state, rows, RoundBatch(
      np.arange(k, dtype=np.int32), ClientBatch(x, y, count), val), key)

  order_keys, dropout_keys = jax.vmap(jax.random.split, out_axes=1)(
      jax.random.split(jax.random.split(key)[1], k))
  orders = jax.vmap(example_order, in_axes=(0, 0, None))(order_keys, count, n)
  lean = jax.jit(lean_round(model, FEATURES, lr, steps, batch, chunk=2))(
      state.server.params, x, y, orders, dropout_keys, count / count.sum())

  moved = jax.tree_util.tree_map(lambda a, b: float(jnp.abs(a - b).max()),
                                 new.server.params, state.server.params)
  assert max(jax.tree_util.tree_leaves(moved)) > 1e-2
  for a, b in zip(jax.tree_util.tree_leaves(lean),
                  jax.tree_util.tree_leaves(new.server.params)):
    np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


def test_every_convolution_form_computes_the_library_cnn():
  """conv_forms.py times forms of one network: every form's convolution
  and its gradients (input and kernel) equal the patches form's (bf16
  within its rounding), and the patches network's logits are the library
  FemnistCNN's. (The forms that differ in the client chunk are
  `aggregate_clients`, which `test_aggregate` checks.)"""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 9, 8, 5)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(3, 3, 5, 4)) * 0.3, jnp.float32)
  value_and_grads = lambda conv: jax.jit(jax.value_and_grad(
      lambda x, k: jnp.sum(jnp.sin(conv(x, k))), (0, 1)))(x, k)
  want, (want_dx, want_dk) = value_and_grads(by_patches)
  for conv in (by_lax, by_shifts, by_rows, by_vjp, by_bf16):
    got, (dx, dk) = value_and_grads(conv)
    tol = 0.05 if conv is by_bf16 else 1e-4
    for a, b in ((got, want), (dx, want_dx), (dk, want_dk)):
      np.testing.assert_allclose(a, b, rtol=tol, atol=tol * float(
          jnp.abs(b).max()), err_msg=conv.__name__)
  lib = models.create('conv', SHAPE, CLASSES, conv_impl='patches')
  params = lib.init(jax.random.PRNGKey(0))
  probe = FEATURES(client_data(1, 8)[0][0])
  np.testing.assert_allclose(cnn(by_patches, by_patches).apply(params, probe),
                             lib.apply(params, probe), atol=1e-5)


# A stand-in for the study's Python that never finishes a comparison: it
# marks that one started and sleeps (exec: `timeout` kills the sleep itself);
# it answers the device line at once and runs anything else for real.
STAND_IN = """#!/usr/bin/env bash
case "$1" in
  experiments/compare.py) touch "$STARTED"; exec sleep 60;;
  -c) echo 'stand-in device'; exit 0;;
esac
exec "$REAL_PY" "$@"
"""


def test_the_device_study_stops_at_its_deadline_and_continues(tmp_path):
  """benchmarks/device_study.sh at toy size on the CPU, each stop made
  certain rather than raced: with a deadline already reached
  (STUDY_SECONDS=0) it stops before the comparison starts; with a
  comparison that cannot finish (a stand-in that sleeps), `timeout` stops
  it at the deadline. Each says which, exits 0 and leaves no results; the
  next call, with time, runs the comparison to the end and draws the
  seed's figure. (How long the toy study's calls take on this machine, and
  whether it beats a short deadline: benchmarks/study_deadline.py.)"""
  root = Path(__file__).resolve().parents[1]
  toy = ['--dataset=digits', '--max_clients=4', '--clients_per_round=4',
         '--rounds=2', '--eval_every=1', '--seeds=0', '--static_grid=0',
         '--policies=gumbel']
  out = tmp_path / 'study'
  stand_in, started = tmp_path / 'python', tmp_path / 'started'
  stand_in.write_text(STAND_IN)
  stand_in.chmod(0o755)
  env = {**os.environ, 'OUT': str(out), 'MODELS': 'mlp',
         'REAL_PY': sys.executable, 'STARTED': str(started)}

  def call(seconds, python):
    return subprocess.run(
        ['bash', str(root / 'benchmarks' / 'device_study.sh'), *toy],
        env={**env, 'PY': str(python), 'STUDY_SECONDS': str(seconds)},
        capture_output=True, text=True, timeout=600)

  past = call(0, stand_in)  # the deadline is now: no time is left
  assert past.returncode == 0, past.stderr
  assert past.stdout.splitlines()[-1] == (
      'study: out of time before three_models; call again to continue')
  assert not started.exists()  # stopped before the comparison
  hung = call(3, stand_in)  # the comparison never ends: killed at 3 s
  assert hung.returncode == 0, hung.stderr
  assert hung.stdout.splitlines()[-1] == (
      'study: three_models stopped at the deadline; call again to continue'
  ), hung.stdout
  assert started.exists()
  assert not (out / 'three_models' / 'results.json').exists()
  assert not (out / 'seed_models.png').exists()
  second = call(540, sys.executable)
  assert second.returncode == 0, second.stderr
  assert second.stdout.splitlines()[-1] == 'study: done'
  (row,) = json.loads((out / 'three_models' / 'results.json').read_text())
  assert (row['model'], row['method'], row['status']) == (
      'mlp', 'gumbel', 'done')
  assert (out / 'seed_models.png').read_bytes()[:4] == b'\x89PNG'
