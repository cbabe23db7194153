"""The tuners as methods of experiments/compare.py: trials are the static
grid's runs, taken rung by rung from their checkpoints, charged what they
train, chosen on validation."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from pfhpo.experiment import comparison
from pfhpo.experiment.comparison.runs import read_rows, train_to
from pfhpo.experiment.comparison.grid import static_spec
from pfhpo.experiment.comparison.tuning import fedex_arm, population_spec
from pfhpo.tuners import rung_rounds, sha_spend, sized_sha

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import compare  # noqa: E402  (experiments/compare.py)

# A space of four configurations (lr 0.1 / 0.3 x 1 / 5 steps), 8 rounds on
# 4 digits writers, evaluated every round.
ARGV = ['--dataset=digits', '--max_clients=4', '--clients_per_round=4',
        '--rounds=8', '--eval_every=1', '--models=mlp', '--lrs=0.1,0.3',
        '--local_steps=1,5', '--seeds=0', '--static_grid=0']
SAME = ('round', 'global_acc', 'val_acc', 'val_loss', 'train_loss',
        'local_steps_total')


def test_sha_trains_rung_by_rung_from_checkpoints_within_its_budget(
    tmp_path, monkeypatch):
  out = tmp_path / 'cmp'
  argv = ARGV + ['--policies=sha,fedex_sha', '--budgets=2',
                 f'--out_dir={out}']
  assert compare.main(argv) == 0
  row, fedex = json.loads((out / 'results.json').read_text())
  n = sized_sha(4, 2, 2, 8, 1)
  rungs = rung_rounds(n, 2, 8, 1)
  assert (n, rungs) == (4, [2, 4, 8])
  assert row['spent_runs'] == sha_spend(4, 2, rungs) / 8 == 2.0
  # Its trials are the static runs, each taken as far as SHA took it: two
  # stopped at the first rung, one at the second, one ran all 8 rounds.
  base = compare.configs(argv)[0]
  reached, steps = {}, 0
  for z in range(4):
    run = static_spec('mlp', 0, z, 4).directory(out)
    rows = read_rows(run, 8)
    reached[z] = rows[-1]['round']
    steps += rows[-1]['local_steps_total']
  assert sorted(reached.values()) == [2, 2, 4, 8]
  assert row['local_steps_total'] == steps
  # Chosen on validation: the test accuracy of the trial's row of best
  # validation accuracy among every row SHA saw.
  seen = [r for z in range(4)
          for r in read_rows(static_spec('mlp', 0, z, 4).directory(out), 8)]
  best = max(seen, key=lambda r: r['val_acc'])
  assert row['test_at_best_val'] == best['global_acc']
  assert row['best_val_acc'] == best['val_acc']
  # FedEx+SHA: as many FedEx arms, each with its own baseline discount,
  # halved on the same rungs.
  assert fedex['method'] == 'fedex_sha' and fedex['spent_runs'] == 2.0
  decays = set()
  for j in range(4):
    config = json.loads((fedex_arm('mlp', 0, j).directory(out) /
                         'config.json').read_text())
    assert config['policy']['policy'] == 'fedex'
    decays.add(config['policy']['options']['baseline_decay'])
  assert len(decays) == 4 and all(0 <= d <= 1 for d in decays)
  table = (out / 'table.md').read_text()
  assert '### mlp at a budget of 2 runs' in table and '| sha | 1 |' in table
  assert '| fedex_sha | 1 |' in table
  assert (out / 'budget_mlp.png').stat().st_size > 1000

  # A trial continued from its rung's checkpoint is the straight run: its
  # rows equal, figure for figure, those of one run of 8 rounds.
  short = min(reached, key=reached.get)
  assert train_to(base, static_spec('mlp', 0, short, 4), out, 8) is None
  assert train_to(base, static_spec('mlp', 0, short, 4), tmp_path / 'straight',
                  8) is None
  continued, straight = (
      read_rows(static_spec('mlp', 0, short, 4).directory(root), 8)
      for root in (out, tmp_path / 'straight'))
  assert [[r[k] for k in SAME] for r in continued] == \
      [[r[k] for k in SAME] for r in straight]

  # Run again: the tuner reads its trials, trains none, and finds the same.
  monkeypatch.setattr(comparison.runs, 'run', lambda cfg: pytest.fail('ran'))
  assert compare.main(argv) == 0
  assert json.loads((out / 'results.json').read_text()) == [row, fedex]


def test_tuners_over_the_static_grid_train_nothing_more(tmp_path, capsys):
  """With the grid run first, every tuner's trials are prefixes of its
  runs: the tuners add rows, not runs; a tuner at budget 4 (the whole
  grid, each run whole) chooses what the grid chosen on validation does."""
  out = tmp_path / 'cmp'
  argv = ARGV[:-1] + ['--policies=rs,sha,hyperband', '--budgets=1,4',
                      f'--out_dir={out}']
  assert compare.main(argv) == 0
  rows = json.loads((out / 'results.json').read_text())
  statics = [r for r in rows if r['method'].startswith('static[')]
  assert len(statics) == 4 and all(r['spent_runs'] == 1.0 for r in statics)
  for r in statics:  # each run's own choice on validation, in its summary
    run = static_spec('mlp', 0, int(r['method'][7:-1]), 4).directory(out)
    best = max(read_rows(run, 8), key=lambda row: row['val_acc'])
    summary = json.loads((run / 'summary.json').read_text())
    assert r['test_at_best_val'] == best['global_acc'] == \
        summary['test_at_best_val']
  tuners = {(r['method'], r['budget']): r for r in rows
            if r['method'] in ('rs', 'sha', 'hyperband')}
  assert set(tuners) == {(t, b) for t in ('rs', 'sha', 'hyperband')
                         for b in (1, 4)}
  for r in tuners.values():
    assert r['status'] == 'done' and r['spent_runs'] <= r['budget']
  grid = max(statics, key=lambda r: r['best_val_acc'])
  assert tuners['rs', 4]['test_at_best_val'] == grid['test_at_best_val']
  assert tuners['rs', 4]['spent_runs'] == 4.0
  table = (out / 'table.md').read_text()
  assert 'static: best of 4 by validation' in table
  assert table.count('at a budget of') == 2
  with (out / 'results.csv').open() as f:
    header = f.readline().strip().split(',')
  assert {'budget', 'test_at_best_val', 'spent_runs'} <= set(header)


def test_server_axes_are_searched_by_the_grid_and_the_tuners(tmp_path,
                                                            capsys):
  """One client configuration on four server ones (lr x momentum): the
  static grid runs each, the tuners and FedPop choose among them, gumbel
  draws one a round, and so does each member of its population; a policy
  without a server row cannot search a server axis, and adam has no
  momentum to set."""
  out = tmp_path / 'cmp'
  axes = ['--lrs=0.1', '--local_steps=5', '--server_lrs=0.5,1',
          '--server_momenta=0,0.9']
  argv = ARGV[:-1] + axes + ['--rounds=4',
                             '--policies=gumbel,gumbel_pop,rs,sha,fedpop',
                             '--budgets=4', f'--out_dir={out}']
  assert compare.main(argv) == 0
  rows = json.loads((out / 'results.json').read_text())
  servers = []
  for r in rows[:4]:
    config = json.loads((static_spec('mlp', 0, int(r['method'][7:-1]), 4)
                         .directory(out) / 'config.json').read_text())
    servers.append((config['server']['server_lr'],
                    config['server']['server_momentum']))
  assert servers == [(0.5, 0.0), (0.5, 0.9), (1.0, 0.0), (1.0, 0.9)]
  assert rows[1]['configuration'].endswith('server_lr=0.5 server_momentum=0.9')
  grid = max(rows[:4], key=lambda r: r['best_val_acc'])
  rs = next(r for r in rows if r['method'] == 'rs')
  assert rs['spent_runs'] == 4.0
  assert rs['test_at_best_val'] == grid['test_at_best_val']
  assert rs['configuration'].split('; chose ')[1].startswith(
      grid['configuration'] + ' at round ')
  # FedPop at a budget of 4: one run of 4 members over the server axes,
  # charged every member's rounds and local steps (4 x 4 clients x 5 steps
  # x 4 rounds)
  pop = next(r for r in rows if r['method'] == 'fedpop')
  assert pop['spent_runs'] == 4.0 and pop['local_steps_total'] == 320
  config = json.loads((population_spec('mlp', 'fedpop', 0, 4,
                                       compare.configs(argv)[1])
                       .directory(out) / 'config.json').read_text())
  assert config['policy']['options']['population'] == 4
  assert config['policy']['options']['server_lrs'] == [0.5, 1.0]
  assert pop['test_at_best_val'] is not None
  # the method at a budget of 4: a population of 4 of its runs, each
  # member drawing the server's configuration from its own row, charged
  # four runs: each member trains what the run alone does (one client
  # configuration: the same steps each round)
  method = next(r for r in rows if r['method'] == 'gumbel_pop')
  alone = next(r for r in rows if r['method'] == 'gumbel')
  assert method['budget'] == 4 and method['spent_runs'] == 4.0
  assert method['local_steps_total'] == 4 * alone['local_steps_total'] > 0
  config = json.loads((population_spec('mlp', 'gumbel_pop', 0, 4,
                                       compare.configs(argv)[1])
                       .directory(out) / 'config.json').read_text())
  assert config['policy']['options']['population'] == 4
  assert config['policy']['options']['server_lrs'] == [0.5, 1.0]
  assert 'gumbel_pop (budget 4)' in (out / 'table.md').read_text()
  # gumbel draws the server's configuration each round from the same axes
  config = json.loads((out / 'runs/mlp/gumbel/seed0/config.json').read_text())
  assert config['policy']['options']['server_momenta'] == [0.0, 0.9]
  served = {(round(r['server_lr'], 4), round(r['server_momentum'], 4))
            for r in read_rows(out / 'runs/mlp/gumbel/seed0', 4)}
  assert served and served <= {(0.5, 0.0), (0.5, 0.9), (1.0, 0.0),
                               (1.0, 0.9)}
  capsys.readouterr()
  assert compare.main(ARGV[:-1] + axes + ['--policies=fedex,rs',
                                          f'--out_dir={tmp_path / "g"}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'fedex cannot search a server axis' in err[0]
  assert compare.main(ARGV[:-1] + axes + [
      '--policies=rs', '--server_opt=adam', f'--out_dir={tmp_path / "a"}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'adam has its own' in err[0], err


def test_a_rows_validation_accuracy_is_of_the_model_it_tests(tmp_path):
  """With a server step of 1e-4 the server's model stays near its start
  (chance on digits) while each round's aggregate learns: the row's
  validation accuracy, what tuners choose on, is the server model's, as
  its test accuracy is, not the aggregate's."""
  import femnist  # noqa: E402  (experiments/femnist.py)
  out = tmp_path / 'run'
  # logreg: what the row measures does not depend on the model, and it
  # compiles in a fraction of the default conv's time
  assert femnist.main(ARGV[:5] + [
      '--model=logreg', '--policy=static', '--lrs=0.3', '--local_steps=20',
      '--batch_sizes=16', '--server_lr=1e-4', '--rounds=2',
      f'--out_dir={out}']) == 0
  rows = read_rows(out, 2)
  assert len(rows) == 2
  for r in rows:
    assert r['val_acc'] < 0.3 and abs(r['val_acc'] - r['global_acc']) < 0.1
    # the aggregate itself learns: its validation loss (the round's
    # measurement) is far below chance's
    assert r["val_loss"] < 0.8 * np.log(10)
