"""Kill-and-resume: a run killed with SIGKILL at a seeded random round and
resumed ends bit-identical to an uninterrupted run; bad checkpoints are
errors.

Each run is a real process (`experiments/femnist.py`), killed from outside
while it trains or writes a checkpoint.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo import policies
from pfhpo.experiment.checkpoints import RunCheckpoints, RunState, Totals
from pfhpo.experiment.records import MetricsRow
from pfhpo.federated.server import init_server
from pfhpo.policies.space import make_space
from pfhpo.types import Feedback, RoundState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import femnist  # noqa: E402  (experiments/femnist.py)

ROUNDS = 16  # kills after 5 to 10 logged rounds, checkpoints every 3
ARGS = ['--dataset=digits', '--model=mlp', f'--rounds={ROUNDS}',
        '--eval_every=1', '--clients_per_round=5', '--policy=gumbel',
        '--algorithm=ditto',  # per-client rows in the checkpoint too
        # and a window of past rounds, with a sample of their clients'
        # rows and data
        '--horizon=2', '--horizon_credit=sampled', '--horizon_sample=2',
        '--policy_opt=adam', '--policy_lr=0.1', '--lrs=0.05,0.3',
        '--local_steps=5,20', '--batch_sizes=16', '--checkpoint_every=3']
TIMING = ('seconds', 'total_seconds', 'first_round_seconds', 'compile_seconds',
          'resumed_from_round', 'round_compilations')


def _cmd(out, *extra):
  return [sys.executable, str(ROOT / 'experiments' / 'femnist.py'), *ARGS,
          f'--out_dir={out}', *extra]


def _run(out, *extra):
  return subprocess.run(_cmd(out, *extra), capture_output=True, text=True,
                        timeout=600)


def _inode(path: Path) -> int | None:
  return path.stat().st_ino if path.exists() else None


def _kill_at(out, round_: int, where: str, *extra) -> int:
  """Starts the run, SIGKILLs it as soon as its metrics file holds round
  `round_`'s line, written by this run: past the lines an earlier kill
  left, or after the run replaced that file (a resumed run rewrites it at
  its start); returns the rounds logged at the kill (a round or two more
  may have been logged between the poll and the kill). A run that ends
  before it is killed is a failure that says where."""
  metrics = out / 'metrics.jsonl'
  before = _inode(metrics)
  left = len(metrics.read_text().splitlines()) if before is not None else 0
  log = out.parent / f'{out.name}.{round_}.log'
  with log.open('w') as stderr:
    proc = subprocess.Popen(_cmd(out, *extra), stdout=subprocess.DEVNULL,
                            stderr=stderr)
  deadline = time.monotonic() + 300
  logged = lambda: len(metrics.read_text().splitlines())
  try:
    while proc.poll() is None and time.monotonic() < deadline:
      ours = round_ > left or _inode(metrics) not in (None, before)
      if metrics.exists() and ours and logged() >= round_:
        break
      time.sleep(0.002)
    ended = proc.poll()
    assert ended is None, (
        f'{where}: the run ended (exit status {ended}) before round {round_} '
        f'was logged, so it was not killed; its stderr: '
        f'{log.read_text()[-2000:]}')
    assert logged() >= round_, f'{where}: round {round_} not logged in 300 s'
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()
  return logged()


def untimed(record: dict) -> dict:
  """A run's record without what differs between an interrupted run and a
  straight one: its clocks, and whether (and from where) it resumed."""
  return {k: v for k, v in record.items() if k not in TIMING}


def run_files(out):
  """A run's metrics rows and summary (timings aside) and its choices."""
  rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
  summary = json.loads((out / 'summary.json').read_text())
  return ([untimed(r) for r in rows], (out / 'choices.jsonl').read_text(),
          untimed(summary))


# The kills' rounds come from this seed (PFHPO_KILL_SEED picks another, to
# try other rounds); a failure names it, and repeating the seed repeats the
# rounds.
KILL_SEED = int(os.environ.get('PFHPO_KILL_SEED', '20261207'))


def test_sigkill_at_random_rounds_then_resume_is_bit_identical(tmp_path):
  """A run SIGKILLed at a round drawn from KILL_SEED (between checkpoints,
  or while writing one), resumed, killed again at a later drawn round while
  resumed, then resumed to the end, logs every metric of every round,
  every client's configuration and the summary bit-identical to an
  uninterrupted run's (timings aside), and says it was resumed."""
  reference = tmp_path / 'reference'  # in this process: the same programs
  assert femnist.main([*ARGS, f'--out_dir={reference}']) == 0
  rng = np.random.default_rng(KILL_SEED)
  first, second = sorted(rng.choice(np.arange(5, ROUNDS - 5), 2, replace=False))
  where = f'PFHPO_KILL_SEED={KILL_SEED}: kills at rounds {first} and {second}'
  out = tmp_path / 'killed'
  at_first = _kill_at(out, first, where)
  # Killed again while resuming, then resumed to the end.
  at_second = _kill_at(out, second, where, '--resume')
  where += f' (killed with {at_first} and {at_second} rounds logged)'
  proc = _run(out, '--resume')
  assert proc.returncode == 0, f'{where}: {proc.stderr[-2000:]}'
  got, want = run_files(out), run_files(reference)
  assert got[0] == want[0], where  # every metric of every round, exactly
  assert got[1] == want[1], where  # every client's configuration
  assert got[2] == want[2], where
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['resumed_from_round'] is not None, where


def test_bad_resumes_are_errors_that_change_nothing(tmp_path, capsys):
  """No run to resume; other flags; a corrupt checkpoint: exit 2, one line,
  and not a byte of the run changed. In this process (a real process's
  exit status is tests/test_experiment.py's)."""
  out = tmp_path / 'run'
  args = [a for a in ARGS if not a.startswith('--rounds')]

  def run(*extra) -> tuple[int, str]:  # (exit status, stderr)
    capsys.readouterr()
    code = femnist.main([*args, f'--out_dir={out}', *extra])
    return code, capsys.readouterr().err

  code, err = run('--resume', '--rounds=8')
  assert code == 2 and 'holds no run to resume' in err
  assert not out.exists()
  assert run('--rounds=6')[0] == 0
  files = lambda: {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
  before = files()
  code, err = run('--resume', '--rounds=8', '--lrs=0.05,0.5')
  assert code == 2
  assert 'used --lrs=[0.05, 0.3], not [0.05, 0.5]' in err
  assert files() == before
  for path in (out / 'checkpoints' / '6' / 'state').rglob('*'):
    if path.is_file():
      path.write_bytes(b'\0garbage')
  before = files()
  code, err = run('--resume', '--rounds=8')
  assert code == 2
  err = err.strip().splitlines()
  assert len(err) == 1 and 'cannot be read' in err[0], err[-20:]
  assert files() == before


def test_every_policys_state_round_trips_through_a_checkpoint(tmp_path):
  """The whole RunState comes back from orbax exactly, with its record
  types: whatever a policy keeps (logits and Adam moments, FedEx's theta and
  discounted sums, a hypernetwork, FATHOM's averaged update), host-resident
  client rows, the counters and the metrics rows."""
  space = make_space([0.1, 1.0], [1, 5], [16])
  params = {'w': jnp.linspace(-1, 1, 12).reshape(3, 4), 'b': jnp.ones(4)}
  server = init_server(optax.adam(0.1), params)
  row = MetricsRow(7, 0.5, 1.2, 0.4, 1.1, 1.3, 0.1, 3.0, 16.0, 30, 1, 2, 1,
                   1, 4.5, policy_entropy=0.9)
  for name, entry in policies.REGISTRY.items():
    options = (entry.config(static_index=1) if name == 'static'
               else entry.config())
    policy = policies.create(name, space, options,
                             train_counts=np.array([10, 20, 30]),
                             params_like=params)
    pstate = policy.init(jax.random.PRNGKey(0), 3)
    clients = jnp.arange(3)
    _, choices = policy.propose(pstate, clients, jax.random.PRNGKey(1))
    pstate = policy.update(pstate, Feedback(
        clients, choices, jnp.array([0.3, -0.1, 0.2]), jnp.float32(1.0),
        jnp.float32(0.5), jnp.zeros(3), jnp.array([0.9, 0.4, 0.7]),
        jnp.array([5, 6, 7]), params, jnp.array([0.9, 0.5, 0.1]),
        jnp.array([False, True, False])))
    table = {'head': np.arange(6, dtype=np.float32).reshape(3, 2)}
    state = RunState(7, RoundState(server, pstate), table,
                     Totals(*map(jnp.int32, (30, 2, 1, 1))), (row,),
                     ((1, 2), (0, 3)), 2.5, 4.5)
    checkpoints = RunCheckpoints(tmp_path / name)
    checkpoints.save(state)
    fresh = RunState(0, RoundState(server, policy.init(
        jax.random.PRNGKey(0), 3)), {'head': np.zeros((3, 2), np.float32)},
                     Totals.zeros(), (), (), None, 0.0)
    got = RunCheckpoints(tmp_path / name).restore(fresh)
    assert got[:1] + got[4:] == state[:1] + state[4:], name
    assert isinstance(got.client_table['head'], np.ndarray)
    np.testing.assert_array_equal(got.client_table['head'], table['head'])
    assert jax.tree_util.tree_structure(got.arrays()) == (
        jax.tree_util.tree_structure(state.arrays())), name
    for a, b in zip(jax.tree_util.tree_leaves(got.arrays()),
                    jax.tree_util.tree_leaves(state.arrays())):
      np.testing.assert_array_equal(a, b, err_msg=name)
    checkpoints.close()
