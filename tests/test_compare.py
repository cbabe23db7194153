"""experiments/compare.py: the grid's runs, resumable and fault-isolated,
and the table, results and figures they make."""
import csv
import json
import sys
from pathlib import Path

import pytest

from pfhpo.experiment import comparison

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import compare  # noqa: E402  (experiments/compare.py)

# Two static configurations (lr 0.1 / 0.3, 5 steps) and gumbel over them,
# two seeds: 6 runs of 3 rounds on 4 digits writers.
ARGV = ['--dataset=digits', '--max_clients=4', '--clients_per_round=4',
        '--rounds=3', '--eval_every=1', '--models=mlp', '--policies=gumbel',
        '--seeds=0,1', '--target_acc=0.5']
PRESET = str(ROOT / 'experiments' / 'configs' / 'cross_silo.toml')


def _preset(tmp_path):
  """The cross-silo preset with a space of two configurations."""
  text = Path(PRESET).read_text().replace(
      'lrs = [0.01, 0.03, 0.1, 0.3]', 'lrs = [0.1, 0.3]').replace(
          'local_steps = [1, 10]', 'local_steps = [5]')
  path = tmp_path / 'small.toml'
  path.write_text(text)
  return f'--config={path}'


def test_a_comparison_runs_its_grid_writes_its_table_and_resumes(
    tmp_path, monkeypatch, capsys):
  out = tmp_path / 'cmp'
  argv = ARGV + [_preset(tmp_path), f'--out_dir={out}']
  assert compare.main(argv) == 0
  rows = json.loads((out / 'results.json').read_text())
  assert [(r['method'], r['seed']) for r in rows] == [
      ('static[0]', 0), ('static[0]', 1), ('static[1]', 0), ('static[1]', 1),
      ('gumbel', 0), ('gumbel', 1)]
  for r in rows:  # each row is its run's own summary and metrics
    run = out / 'runs' / 'mlp' / r['method'].replace('[', '_').rstrip(']') / (
        f'seed{r["seed"]}')
    summary = json.loads((run / 'summary.json').read_text())
    assert r['status'] == 'done'
    assert r['best_global_acc'] == summary['best_global_acc']
    assert r['global_acc'] == summary['global_acc']
    assert [c[0] for c in r['curve']] == [1, 2, 3]
    reached = [rnd for rnd, acc in r['curve'] if acc >= 0.5]
    assert r['rounds_to_target'] == (reached[0] if reached else None)
  assert rows[0]['configuration'] == 'lr=0.1 steps=5 batch=16'
  with (out / 'results.csv').open() as f:
    assert len(list(csv.DictReader(f))) == 6
  table = (out / 'table.md').read_text()
  statics = {m: [r for r in rows if r['method'] == m]
             for m in ('static[0]', 'static[1]')}
  best = max(statics, key=lambda m: sum(r['best_global_acc']
                                        for r in statics[m]))
  assert f'static: best of 2 ({statics[best][0]["configuration"]})' in table
  assert '| gumbel | 2 |' in table and 'static grid: all 2' in table
  assert table.count('**') >= 2  # the best of each column in bold
  assert (out / 'best_acc_mlp.png').stat().st_size > 1000
  assert table in capsys.readouterr().out

  # Run again: every finished run is read, none is redone.
  monkeypatch.setattr(comparison, 'run', lambda cfg: pytest.fail('re-ran'))
  assert compare.main(argv) == 0
  assert json.loads((out / 'results.json').read_text()) == rows
  # A different base is refused, with one line.
  assert compare.main(argv[:-1] + ['--rounds=4', f'--out_dir={out}']) == 2
  assert 'error: --out_dir=' in capsys.readouterr().err


def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path, monkeypatch,
                                                       capsys):
  real = comparison.run

  def flaky(cfg):
    if cfg.policy.policy == 'gumbel' and cfg.run.seed == 1:
      raise FloatingPointError('injected')
    return real(cfg)

  monkeypatch.setattr(comparison, 'run', flaky)
  out = tmp_path / 'cmp'
  assert compare.main(ARGV + [_preset(tmp_path), '--static_grid=0',
                              f'--out_dir={out}']) == 1
  rows = json.loads((out / 'results.json').read_text())
  assert [(r['seed'], r['status']) for r in rows] == [(0, 'done'),
                                                      (1, 'failed')]
  assert rows[1]['error'] == 'FloatingPointError: injected'
  assert '| gumbel | 1 (1 failed) |' in (out / 'table.md').read_text()
  assert 'failed: mlp gumbel seed 1' in capsys.readouterr().err
  # Once fixed, the same command runs the failed one and reads the other.
  monkeypatch.setattr(comparison, 'run', real)
  assert compare.main(ARGV + [_preset(tmp_path), '--static_grid=0',
                              f'--out_dir={out}']) == 0
  rows = json.loads((out / 'results.json').read_text())
  assert [r['status'] for r in rows] == ['done', 'done']


@pytest.mark.parametrize('flag,match', [
    ('--policies=gumbel,nope', "unknown --policies='nope'"),
    ('--models=mlp,mlp', '--models repeats'),
    ('--target_acc=2', '--target_acc must be in'),
    ('--seeds=a', '--seeds'),
])
def test_bad_grid_flags_are_one_line_exit_2(tmp_path, capsys, flag, match):
  out = tmp_path / 'cmp'
  assert compare.main(ARGV + [flag, f'--out_dir={out}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and match in err[0], err
  assert not out.exists()
