"""The client axis sharded over several devices computes what one device does.

Runs in a subprocess: the device count of a CPU host is fixed when jax starts
(`--xla_force_host_platform_device_count`).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np, optax
    from pfhpo import models
    from pfhpo.federated import client_mesh, make_round
    from pfhpo.policies import gumbel, make_space
    from pfhpo.types import ClientBatch, RoundBatch, ValBatch
    assert jax.device_count() == 4
    K = 8
    model = models.create('mlp', (6, 6, 1), 5)
    features = lambda x: x.astype(jnp.float32) / 255
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (K, 20, 6, 6, 1), dtype=np.uint8)
    y = rng.integers(0, 5, (K, 20)).astype(np.int32)
    val = ValBatch(x[0, :10], y[0, :10], np.full(10, 0.1, np.float32))
    batch = RoundBatch(np.arange(K, dtype=np.int32), ClientBatch(
        x, y, np.arange(3, 3 + 2 * K, 2).astype(np.int32)), val)
    # Every client its own configuration, and its own credit dL/dc_i.
    space = make_space([0.01, 0.1, 0.3], [1, 3, 5], [2, 8])
    policy = gumbel(space, optax.sgd(0.5))
    out = []
    for mesh in (None, client_mesh()):
      algo = make_round(model, features, optax.sgd(1.0), space, policy,
                        client_chunk=1, mesh=mesh)
      state, rows = algo.init(jax.random.PRNGKey(0), K)
      init = state.server.params
      step = jax.jit(algo.apply)
      credits = []
      for r in range(3):
        state, rows, m = step(state, rows, batch, jax.random.PRNGKey(r))
        credits.append(m.credit)
      out.append((state, jnp.stack(credits)))
    leaves = lambda t: jax.tree_util.tree_leaves(t)
    moved = max(float(jnp.abs(a - b).max())
                for a, b in zip(leaves(out[0][0].server.params), leaves(init)))
    diff = max(float(jnp.abs(a - b).max())
               for a, b in zip(leaves(out[0]), leaves(out[1])))
    print(moved, diff)
''')



def test_sharded_round_equals_single_device_round():
  env = {**os.environ,
         'XLA_FLAGS': '--xla_force_host_platform_device_count=4'}
  proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  moved, diff = map(float, proc.stdout.split())
  assert moved > 1e-2
  # Parameters, policy logits and credits: only the order of the
  # aggregation sum differs.
  assert diff < 1e-5


def _cli(args, tmp_path):
  env = {**os.environ,
         'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, 'experiments', 'femnist.py'),
       '--dataset=digits', '--model=mlp', '--rounds=4', '--eval_every=2',
       f'--out_dir={tmp_path / "run"}', *args],
      env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('policy', ['fedex', 'fathom'])
def test_cli_runs_sharded_over_two_host_devices(tmp_path, policy):
  """Sharded like a single device, with the policies whose clients also
  report validation losses (fedex) or step alignment (fathom); plain FedAvg
  is the test above."""
  args = ['--clients_per_round=4', f'--policy={policy}', '--lrs=0.05,0.3',
          '--local_steps=2,10', '--batch_sizes=16']
  proc = _cli(args, tmp_path)
  assert proc.returncode == 0, proc.stderr[-2000:]
  summary = json.loads((tmp_path / 'run' / 'summary.json').read_text())
  assert summary['round_compilations'] == 1
  config = (tmp_path / 'run' / 'config.json').read_text()
  assert json.loads(config)['resolved']['devices'] == ['cpu:0', 'cpu:1']
  sys.path.insert(0, os.path.join(ROOT, 'experiments'))
  import femnist  # this process sees one device
  one = tmp_path / 'one'
  assert femnist.main(['--dataset=digits', '--model=mlp', '--rounds=4',
                       '--eval_every=2', f'--out_dir={one}', *args]) == 0
  single = json.loads((one / 'summary.json').read_text())
  assert abs(single['global_loss'] - summary['global_loss']) < 1e-4


def test_clients_per_round_must_divide_over_devices(tmp_path):
  proc = _cli(['--clients_per_round=5', '--policy=static', '--static_index=0'],
              tmp_path)
  assert proc.returncode == 2
  assert 'multiple of the 2 devices' in proc.stderr
  assert not (tmp_path / 'run').exists()
