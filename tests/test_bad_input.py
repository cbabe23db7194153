"""Bad input of every kind: a one-line error naming the fix, exit status 2,
and an earlier run in the same place left byte for byte as it was."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pfhpo.data import femnist as femnist_data
from pfhpo.data.federated import write_sqlite

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import femnist  # noqa: E402  (experiments/femnist.py)

QUICK = ['--dataset=digits', '--model=mlp', '--clients_per_round=5',
         '--policy=static', '--lrs=0.1', '--local_steps=5', '--batch_sizes=16']


def _files(directory: Path) -> dict:
  return {p: p.read_bytes() for p in sorted(directory.rglob('*'))
          if p.is_file()}


@pytest.fixture(scope='module')
def earlier(tmp_path_factory):
  """A finished run (with its checkpoint) that no bad invocation may touch."""
  out = tmp_path_factory.mktemp('earlier') / 'run'
  assert femnist.main(QUICK + ['--rounds=2', f'--out_dir={out}']) == 0
  return out, _files(out)


def _femnist_files(directory: Path, spoil: str) -> Path:
  """fedjax-format FEMNIST files with one defect."""
  rng = np.random.default_rng(0)
  clients = {c: {'pixels': rng.random((12, 28, 28)).astype(np.float32),
                 'label': rng.integers(0, 62, 12).astype(np.int32)}
             for c in ('a', 'b', 'c')}
  if spoil == 'empty_client':
    clients['b'] = {'pixels': np.zeros((0, 28, 28), np.float32),
                    'label': np.zeros(0, np.int32)}
  if spoil == 'nan_pixels':
    clients['c']['pixels'][3, 5, 5] = np.nan
  directory.mkdir(parents=True, exist_ok=True)
  for name in femnist_data.file_names():
    write_sqlite(directory / name, clients)
  if spoil == 'truncated':
    path = directory / femnist_data.file_names()[0]
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
  return directory


CASES = {
    'unknown dataset': (['--dataset=cifar'], 'choose one of femnist'),
    'unknown model': (['--model=transformer'], 'choose one of logreg'),
    'unknown policy': (['--policy=bayes'], 'choose one of static'),
    'steps above the compiled maximum': (
        ['--local_steps=5,50', '--max_local_steps=20'],
        'raise --max_local_steps to 50'),
    'fathom start above the compiled maximum': (
        ['--policy=fathom', '--local_steps=1', '--fathom_epochs=3'],
        'pass --max_local_steps >='),
    "another algorithm's setting": (
        ['--ditto_lambda=1'],
        '--ditto_lambda does not apply to --algorithm=fedavg (only to ditto)'),
    'FedRep body steps above the compiled maximum': (
        ['--algorithm=fedrep', '--body_steps=9'], 'raise --max_local_steps'),
    'algorithm values for an algorithm with no client setting': (
        ['--algorithm_values=1,2'], '--algorithm=fedavg has no client setting'),
    "algorithm values with a setting's own value": (
        ['--algorithm=ditto', '--ditto_lambda=1', '--algorithm_values=0,1'],
        'not both'),
    'fathom over algorithm values': (
        ['--algorithm=ditto', '--algorithm_values=0,1', '--policy=fathom'],
        'fathom tunes the learning rate'),
    'mocha on a model that is not convex': (
        ['--algorithm=mocha'], 'use --model=logreg'),
    'mocha with a server optimizer': (
        ['--algorithm=mocha', '--model=logreg', '--server_opt=adam'],
        "mocha's server step is its own closed form"),
    'a character data set with an image model': (
        ['--dataset=shakespeare', '--model=conv'], 'use --model=lstm, not conv'),
    'the character model on images': (
        ['--model=lstm'], 'use it with --dataset=shakespeare'),
    'label noise on next characters': (
        ['--dataset=shakespeare', '--model=lstm', '--noisy_fraction=0.2'],
        '--noisy_fraction flips class labels'),
    'label skew for a data set with its own clients': (
        ['--dataset=synthetic', '--alpha=0.1'], '--alpha does not apply'),
    'many processes without a coordinator': (
        ['--num_processes=2', '--process_id=0'],
        'needs --coordinator_address'),
    'a process id past the process count': (
        ['--num_processes=2', '--process_id=2',
         '--coordinator_address=localhost:1'], 'must be in 0..1'),
    'a population of an algorithm with per-client state': (
        ['--policy=fedpop', '--server_lrs=0.5,1', '--algorithm=ditto'],
        'use --algorithm=fedavg'),
    'a server axis for a policy without a server row': (
        ['--server_lrs=0.5,1'], '--server_lrs does not apply to --policy=static'),
    'server momenta for adam': (
        ['--policy=gumbel', '--lrs=0.1,0.3', '--server_opt=adam',
         '--server_momenta=0,0.9'], 'adam has its own'),
    "a prior row's rate without the prior row": (
        ['--policy=gumbel', '--policy_scope=client', '--prior_rate=2'],
        'pass --policy_scope=prior or leave it at 4.0'),
    'a population with nothing to search': (
        ['--policy=fedpop'], 'give several --lrs'),
    'client with zero examples': ('empty_client', "'b' has no training"),
    'NaN pixels': ('nan_pixels', "'c' has 1 NaN or infinite pixels"),
    'truncated SQLite file': ('truncated', 'not a valid fedjax FEMNIST'),
}


@pytest.mark.parametrize('case', list(CASES))
@pytest.mark.parametrize('target', ['new', 'earlier'])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(
    tmp_path, capsys, earlier, case, target):
  flags, match = CASES[case]
  if isinstance(flags, str):  # a data file with this defect
    flags = ['--dataset=femnist', '--model=conv', '--clients_per_round=2',
             f'--data_dir={_femnist_files(tmp_path / "data", flags)}']
  out = tmp_path / 'new' if target == 'new' else earlier[0]
  resume = ['--resume'] if target == 'earlier' else []
  assert femnist.main(QUICK + ['--rounds=2', f'--out_dir={out}', *flags,
                               *resume]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and match in err[0], err
  assert err[0].startswith('error: ')
  if target == 'new':
    assert not out.exists()
  assert _files(earlier[0]) == earlier[1]


def test_another_runs_directory_is_refused_without_resume(capsys, earlier):
  assert femnist.main(QUICK + ['--rounds=2', f'--out_dir={earlier[0]}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'already holds a run' in err[0]
  assert '--resume' in err[0] and 'new --out_dir' in err[0]
  assert _files(earlier[0]) == earlier[1]


def test_a_checkpoint_cut_short_is_one_line_and_loses_nothing(
    tmp_path, capsys, monkeypatch, earlier):
  """A run whose largest checkpoint file was cut short (as a crash while
  writing it leaves it), resumed: exit status 2 and one line naming the
  checkpoint to delete, nothing after it (no traceback from a read left
  running), and not a byte of the run changed. Those tracebacks came from
  about half the resumes (thread timing), so it resumes six times in this
  process, a second each, then once as the command."""
  out = tmp_path / 'run'
  shutil.copytree(earlier[0], out)
  largest = max((p for p in (out / 'checkpoints').rglob('*') if p.is_file()),
                key=lambda p: p.stat().st_size)
  largest.write_bytes(largest.read_bytes()[:largest.stat().st_size // 2])
  before = _files(out)
  resume = QUICK + ['--rounds=3', f'--out_dir={out}', '--resume']
  start = (f'error: --resume: the checkpoint {out / "checkpoints" / "2"} '
           f'cannot be read')
  end = ('delete that directory to resume from an earlier checkpoint, or '
         'start a new --out_dir.\n')
  unraisable = []  # what a thread could not raise (printed as a traceback)
  monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
  for _ in range(6):
    assert femnist.main(resume) == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.endswith(end), err[-3000:]
    assert err.count('\n') == 1
  assert not unraisable, unraisable[0].exc_value
  proc = subprocess.run(
      [sys.executable, str(ROOT / 'experiments' / 'femnist.py'), *resume],
      capture_output=True, text=True, timeout=600)
  assert proc.returncode == 2 and proc.stdout == '', proc.stderr[-3000:]
  assert proc.stderr.startswith(start) and proc.stderr.endswith(end), (
      proc.stderr[-3000:])
  assert proc.stderr.count('\n') == 1
  assert 'Traceback' not in proc.stderr and 'RuntimeError' not in proc.stderr
  assert _files(out) == before


def test_clients_smaller_than_the_batch_train_with_a_note(tmp_path, capsys):
  """Not an error (FEMNIST has writers with a few examples): 3 of the 20
  digits clients hold 62 training examples, the others 63, so a batch of 63
  repeats one of theirs. A batch above every client's size is an error
  (tests/test_experiment.py)."""
  out = tmp_path / 'run'
  assert femnist.main(QUICK[:4] + ['--lrs=0.1', '--local_steps=5',
                                   '--batch_sizes=63', '--rounds=2',
                                   f'--out_dir={out}']) == 0
  err = capsys.readouterr().err
  assert 'note: 3 of 20 clients hold fewer training examples than the ' \
         'largest batch (63)' in err
  assert json.loads((out / 'config.json').read_text())['resolved'][
      'clients_below_batch'] == 3


def test_an_out_dir_that_is_a_file_is_refused(tmp_path, capsys):
  path = tmp_path / 'notes.txt'
  path.write_text('mine')
  assert femnist.main(QUICK + ['--rounds=1', f'--out_dir={path}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'is a file, not a directory' in err[0], err
  assert path.read_text() == 'mine'


def test_two_runs_started_at_once_into_one_directory(tmp_path):
  """One runs; the other is refused with one line, exit 2, whichever of the
  lock or the finished run's files it meets; no row is written twice."""
  out = tmp_path / 'run'
  cmd = [sys.executable, str(ROOT / 'experiments' / 'femnist.py'), *QUICK,
         '--rounds=10', '--eval_every=1', f'--out_dir={out}']
  procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(2)]
  results = [(p.wait(timeout=600), p.stderr.read()) for p in procs]
  assert sorted(code for code, _ in results) == [0, 2], results
  err = next(e for code, e in results if code == 2).strip().splitlines()
  assert len(err) == 1, err
  assert ('another run is writing into --out_dir' in err[0] or
          'already holds a run' in err[0]), err
  rows = [json.loads(l) for l in (out / 'metrics.jsonl').read_text().splitlines()]
  assert [r['round'] for r in rows] == list(range(1, 11))
