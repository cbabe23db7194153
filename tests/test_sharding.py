"""The client axis sharded over several devices computes what one device does.

Runs in a subprocess: the device count of a CPU host is fixed when jax starts
(`--xla_force_host_platform_device_count`).
"""
import json
import os
import socket
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np, optax
    from pfhpo import models
    from pfhpo.federated import Execution, client_mesh, make_round
    from pfhpo.federated.credit import make_credit
    from pfhpo.federated.sharding import replicated
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
    # Every client its own configuration, and its own credit dL/dc_i: of
    # the round, and over 2 rounds with the later round's clients, all or
    # a sample, trained again outside the shard_map ('sampled' takes the
    # stored aggregate's path of 'first_order' too).
    space = make_space([0.01, 0.1, 0.3], [1, 3, 5], [2, 8])
    out = []
    for credit, mesh in [(make_credit(h, e, sample=3), mesh)
                         for h, e in [(1, 'exact'), (2, 'exact'),
                                      (2, 'sampled')]
                         for mesh in (None, client_mesh())]:
      algo = make_round(model, features, optax.sgd(1.0), space,
                        gumbel(space, optax.sgd(0.5)), credit,
                        execution=Execution(client_chunk=1, mesh=mesh))
      state, rows = algo.init(jax.random.PRNGKey(0), K, batch)
      init = state.server.params
      # The outputs come back replicated, where init put the state, as the
      # CLI's round does: the second round meets the first one's placement
      # and does not compile again.
      step = jax.jit(algo.apply, out_shardings=None if mesh is None
                     else replicated(mesh))
      credits = []
      for r in range(3):
        state, rows, m = step(state, rows, batch, jax.random.PRNGKey(r))
        credits.append(m.credit)
      out.append((state, jnp.stack(credits)))
    leaves = lambda t: jax.tree_util.tree_leaves(t)
    moved = max(float(jnp.abs(a - b).max())
                for a, b in zip(leaves(out[0][0].server.params), leaves(init)))
    f64 = lambda a: np.asarray(a, np.float64)
    diff = max(float(np.abs(f64(a) - f64(b)).max()) for i in (0, 2, 4)
               for a, b in zip(leaves(out[i]), leaves(out[i + 1])))
    for i in (2, 4):  # the windows closed
      assert float(jnp.abs(out[i][1][1:]).min()) > 0
    print(moved, diff)
''')



def test_sharded_round_equals_single_device_round():
  env = {**os.environ,
         'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')
                      + ' --xla_force_host_platform_device_count=4'}
  proc = subprocess.run([sys.executable, '-c', SCRIPT], env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  moved, diff = map(float, proc.stdout.split())
  assert moved > 1e-2
  # Parameters, policy logits, windows and credits: only the order of the
  # aggregation sum differs.
  assert diff < 1e-5


def _cli(args, tmp_path):
  env = {**os.environ,
         'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')
                      + ' --xla_force_host_platform_device_count=2'}
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


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _two_processes(args, out_dir):
  """`femnist.py args` as two processes of one run (jax.distributed over
  gloo), one CPU device each; their (exit status, stderr)."""
  address = f'localhost:{_free_port()}'
  env = {**os.environ, 'XLA_FLAGS': os.environ.get('XLA_FLAGS', '')
                      + ' --xla_force_host_platform_device_count=1'}
  procs = [subprocess.Popen(
      [sys.executable, os.path.join(ROOT, 'experiments', 'femnist.py'),
       *args, f'--out_dir={out_dir}', '--num_processes=2',
       f'--process_id={p}', f'--coordinator_address={address}'],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      for p in range(2)]
  return [(p.communicate(timeout=300)[1], p.returncode)[::-1] for p in procs]


def test_two_processes_run_what_one_process_runs(tmp_path):
  """Ditto (per-client rows that travel every round) under gumbel (per-client
  credits through the aggregation), its client axis split over two
  processes and resumed from their checkpoint, against one process: every
  figure equal to 1e-5 (only the order of the aggregation's sum differs),
  process 0 alone writing."""
  args = ['--dataset=digits', '--model=mlp', '--eval_every=1',
          '--clients_per_round=4', '--algorithm=ditto', '--policy=gumbel',
          '--lrs=0.05,0.3', '--local_steps=2,5', '--batch_sizes=16',
          '--checkpoint_every=2']
  two = tmp_path / 'two'
  for more in (['--rounds=2'], ['--rounds=3', '--resume']):
    for code, err in _two_processes(args + more, two):
      assert code == 0, err[-2000:]
  sys.path.insert(0, os.path.join(ROOT, 'experiments'))
  import femnist
  one = tmp_path / 'one'
  assert femnist.main(args + ['--rounds=3', f'--out_dir={one}']) == 0
  rows = [[json.loads(line) for line in (d / 'metrics.jsonl').open()]
          for d in (one, two)]
  assert [r['round'] for r in rows[1]] == [1, 2, 3]
  for a, b in zip(*rows):
    for name, value in a.items():
      if isinstance(value, float) and name != 'seconds':
        assert abs(value - b[name]) < 1e-5, (name, value, b[name])
  assert (one / 'choices.jsonl').read_text() == (two / 'choices.jsonl'
                                                  ).read_text()
  config = json.loads((two / 'config.json').read_text())
  assert config['resolved']['processes'] == 2
  assert config['resolved']['devices'] == ['cpu:0', 'cpu:2048']
  summary = json.loads((two / 'summary.json').read_text())
  assert summary['resumed_from_round'] == 2
  assert summary['round_compilations'] == 1
