"""experiments/compare.py: the grid's runs, resumable and fault-isolated,
and the table, results and figures they make."""
import csv
import dataclasses
import fcntl
import json
import os
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest

import pfhpo.data
from pfhpo.data.groups import GROUPS, with_groups
from pfhpo.errors import ConfigError
from pfhpo.experiment import comparison, outputs

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import compare  # noqa: E402  (experiments/compare.py)
from test_resume import run_files, untimed  # noqa: E402

# Two static configurations (lr 0.1 / 0.3, 5 steps) and gumbel over them,
# two seeds: 6 runs of 3 rounds on 4 digits writers.
ARGV = ['--dataset=digits', '--max_clients=4', '--clients_per_round=4',
        '--rounds=3', '--eval_every=1', '--models=mlp', '--policies=gumbel',
        '--seeds=0,1', '--target_acc=0.5']
PRESET_DIR = ROOT / 'experiments' / 'configs'
PRESET = str(PRESET_DIR / 'cross_silo.toml')


def _preset(tmp_path, more='', steps=5):
  """The cross-silo preset with a space of two configurations (`steps`
  local steps; FATHOM starting from the second), and `more` TOML after it."""
  text = Path(PRESET).read_text().replace(
      'lrs = [0.01, 0.03, 0.1, 0.3]', 'lrs = [0.1, 0.3]').replace(
          'local_steps = [1, 10]', f'local_steps = [{steps}]').replace(
              'static_index = 4', 'static_index = 1')
  path = tmp_path / 'small.toml'
  path.write_text(text + more)
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
  # The grid's best, chosen on test or on validation, cost the whole grid:
  # both runs of its seed, and their local steps.
  cells = _table_cells(table, 'mlp')
  (grid,) = {sum(r['local_steps_total'] for rs in statics.values()
                 for r in rs if r['seed'] == seed) for seed in (0, 1)}
  for label in (f'static: best of 2 ({statics[best][0]["configuration"]})',
                'static: best of 2 by validation'):
    assert cells[label]['runs spent'] == '2.00', label
    assert cells[label]['local steps'] == f'{grid:,.0f}', label
  assert table.count('**') >= 2  # the best of each column in bold
  assert (out / 'best_acc_mlp.png').stat().st_size > 1000
  assert table in capsys.readouterr().out

  # Run again: every finished run is read, none is redone.
  monkeypatch.setattr(comparison.runs, 'run', lambda cfg: pytest.fail('re-ran'))
  assert compare.main(argv) == 0
  assert json.loads((out / 'results.json').read_text()) == rows
  # One that lacks a setting (another pfhpo's) is refused, as is a
  # different base, with one line naming it.
  path = out / 'comparison.json'
  stored = json.loads(path.read_text())
  del stored['policy']['options']['prior_rate']
  path.write_text(json.dumps(stored))
  assert compare.main(argv) == 2
  assert '(--prior_rate=None, not 4.0)' in capsys.readouterr().err
  stored['policy']['options']['prior_rate'] = 4.0
  path.write_text(json.dumps(stored))
  assert compare.main(argv[:-1] + ['--rounds=4', f'--out_dir={out}']) == 2
  assert '(--rounds=3, not 4)' in capsys.readouterr().err


def test_a_failed_run_is_reported_and_the_others_go_on(tmp_path, monkeypatch,
                                                       capsys):
  real = comparison.runs.run

  def flaky(cfg):
    if cfg.policy.policy == 'gumbel' and cfg.run.seed == 1:
      raise FloatingPointError('injected')
    return real(cfg)

  monkeypatch.setattr(comparison.runs, 'run', flaky)
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
  monkeypatch.setattr(comparison.runs, 'run', real)
  assert compare.main(ARGV + [_preset(tmp_path), '--static_grid=0',
                              f'--out_dir={out}']) == 0
  rows = json.loads((out / 'results.json').read_text())
  assert [r['status'] for r in rows] == ['done', 'done']


class Crash(BaseException):
  """A kill as the run meets one: nothing in the comparison catches it (it
  is not an Exception), so the run stops where it is, its files as they
  are."""


def _crash_after(monkeypatch, seed: int, round_: int) -> None:
  """Makes the run of `seed` die right after it logs round `round_`'s
  metrics line."""
  real = outputs.RunDirectory.log_metrics

  def log_metrics(self, row):
    real(self, row)
    if row.round == round_ and self.path.name == f'seed{seed}':
      raise Crash(f'seed {seed} killed after round {round_}')

  monkeypatch.setattr(outputs.RunDirectory, 'log_metrics', log_metrics)


def test_an_interrupted_comparison_continues_its_run_to_the_straight_one(
    tmp_path, monkeypatch):
  """The comparison's own resume (`runs.train_to`), gumbel on one seed of
  4 rounds, checkpoints every 2. Its run dies after logging round 1,
  before its first checkpoint (config and a metrics line written, no
  checkpoint, or only the temporary directory of one cut short): the same
  command starts it afresh, and it dies again after
  round 3 (its checkpoint at round 2, a line past it): the same command
  continues it from round 2 to the end. Its metrics rows, choices and
  summary, and its row of results.json, then equal a straight comparison's
  (timings aside), and its summary says it resumed from round 2."""
  preset = Path(_preset(tmp_path)[len('--config='):])
  preset.write_text(preset.read_text().replace(
      '[run]\n', '[run]\ncheckpoint_every = 2\n', 1))
  argv = lambda out: ARGV + [f'--config={preset}', '--static_grid=0',
                             '--seeds=0', '--rounds=4', f'--out_dir={out}']
  straight, out = tmp_path / 'straight', tmp_path / 'cut'
  assert compare.main(argv(straight)) == 0
  run = out / 'runs' / 'mlp' / 'gumbel' / 'seed0'
  lines = lambda: (run / 'metrics.jsonl').read_text().splitlines()
  steps = lambda: sorted(p.name for p in (run / 'checkpoints').iterdir()
                         if p.name.isdigit())

  with monkeypatch.context() as m:  # dies before its first checkpoint
    _crash_after(m, seed=0, round_=1)
    with pytest.raises(Crash):
      compare.main(argv(out))
  assert (run / 'config.json').exists() and len(lines()) == 1
  assert steps() == [] and not (run / 'summary.json').exists()
  # as a crash while orbax wrote the first checkpoint leaves it: its
  # temporary directory, named after the step, and no step
  (run / 'checkpoints' / '2.orbax-checkpoint-tmp-0').mkdir(parents=True)
  with monkeypatch.context() as m:  # started again; dies after round 3
    _crash_after(m, seed=0, round_=3)
    with pytest.raises(Crash):
      compare.main(argv(out))
  assert steps() == ['2'] and len(lines()) == 3
  assert not (run / 'summary.json').exists()
  assert compare.main(argv(out)) == 0  # continued from round 2

  got = run_files(run)
  want = run_files(straight / 'runs' / 'mlp' / 'gumbel' / 'seed0')
  assert got[0] == want[0]  # every metric of every round, exactly
  assert got[1] == want[1]  # every client's configuration
  assert got[2] == want[2]
  assert json.loads((run / 'summary.json').read_text())[
      'resumed_from_round'] == 2
  got, want = (json.loads((root / 'results.json').read_text())
               for root in (out, straight))
  assert [untimed(r) for r in got] == [untimed(r) for r in want]
  assert [(r['seed'], r['status']) for r in got] == [(0, 'done')]


def _locked(directory: Path) -> bool:
  """Whether a process holds `directory`'s lock (an exclusive flock on its
  `.lock`, as a run's directory is held)."""
  fd = os.open(directory / '.lock', os.O_RDWR | os.O_CREAT)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return False
  except BlockingIOError:
    return True
  finally:
    os.close(fd)


def test_a_second_comparison_into_a_running_ones_out_dir_is_refused(
    tmp_path, monkeypatch, capsys):
  """A comparison holds its `--out_dir`'s lock while it runs and lets go
  when it ends; a second one into it meanwhile stops at once with one line
  and exit status 2, writing nothing. No run trains: the first stops at
  its first run, and the second is refused before it."""
  out = tmp_path / 'cmp'
  argv = ARGV + [_preset(tmp_path), f'--out_dir={out}']
  held = []

  def first_run(cfg):
    held.append(_locked(out))
    raise ConfigError('stopped at its first run')

  monkeypatch.setattr(comparison.runs, 'run', first_run)
  assert compare.main(argv) == 2
  assert held == [True] and not _locked(out)
  capsys.readouterr()
  tree = lambda: {p: p.is_file() and p.read_bytes() for p in out.rglob('*')}
  before = tree()
  fd = os.open(out / '.lock', os.O_RDWR)  # held as the first held it
  fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  try:
    assert compare.main(argv) == 2
  finally:
    os.close(fd)
  assert capsys.readouterr().err == (
      f'error: a comparison is running in --out_dir={out}; wait for it to '
      f'end or pass another --out_dir.\n')
  assert held == [True]  # no run started
  assert tree() == before


def test_named_methods_run_with_their_own_settings(tmp_path, capsys):
  """A preset's [compare.methods]: gumbel-global is gumbel with one shared
  policy row; fathom starts from its configuration, and its one epoch
  start (4 steps of 16 on the largest writer's 63 examples) is cut to the
  3 steps the round is compiled for, not failed."""
  out = tmp_path / 'cmp'
  shared = ('\n[compare.methods.gumbel-global]\npolicy = "gumbel"\n'
            'policy_scope = "global"\n')
  argv = ARGV + [_preset(tmp_path, shared, steps=3), '--static_grid=0',
                 '--seeds=0',
                 '--policies=gumbel-global,fathom', f'--out_dir={out}']
  assert compare.main(argv) == 0
  rows = json.loads((out / 'results.json').read_text())
  assert [(r['method'], r['status']) for r in rows] == [
      ('gumbel-global', 'done'), ('fathom', 'done')]
  runs = out / 'runs' / 'mlp'
  config = json.loads((runs / 'gumbel-global' / 'seed0' / 'config.json'
                       ).read_text())
  assert config['policy']['policy'] == 'gumbel'
  assert config['policy']['options']['policy_scope'] == 'global'
  first = json.loads((runs / 'fathom' / 'seed0' / 'choices.jsonl'
                      ).read_text().splitlines()[0])
  assert first['lr'] == pytest.approx([0.3] * 4)  # configuration 1
  assert max(first['local_steps']) == 3
  # A method whose settings changed is not read from the old run.
  changed = tmp_path / 'changed.toml'
  changed.write_text((tmp_path / 'small.toml').read_text().replace(
      'policy_scope = "global"', 'policy_scope = "client"'))
  assert compare.main(ARGV + [f'--config={changed}', '--static_grid=0',
                              '--seeds=0', '--policies=gumbel-global',
                              f'--out_dir={out}']) == 2
  err = capsys.readouterr().err
  assert "used --policy_scope='global', not 'client'" in err


def _table_cells(table: str, model: str) -> dict[str, dict[str, str]]:
  """{method: {column: cell}} of `model`'s table in table.md, the bold
  marks taken off."""
  section = table[table.index(f'## {model}\n'):]
  end = section.find('\n\n', section.index('| method'))
  section = section[:end if end >= 0 else None]
  lines = [l for l in section.splitlines() if l.startswith('| ')]
  split = lambda l: [c.strip().strip('*') for c in l.strip('|').split('|')]
  header = split(lines[0])
  return {cells[0]: dict(zip(header[1:], cells[1:]))
          for cells in map(split, lines[2:])}


def test_each_model_gets_its_table_and_figure(tmp_path):
  """Each model's runs go to its own directory with its own config; its
  table in table.md (in --models' order) shows its run's own figures from
  results.json, column by column (one seed: each number as it is, no
  spread); each gets its figure."""
  out = tmp_path / 'cmp'
  assert compare.main(ARGV + [_preset(tmp_path), '--static_grid=0',
                              '--seeds=0', '--rounds=2', '--models=mlp,conv',
                              f'--out_dir={out}']) == 0
  rows = json.loads((out / 'results.json').read_text())
  assert [(r['model'], r['status']) for r in rows] == [('mlp', 'done'),
                                                       ('conv', 'done')]
  assert all(r['compile_seconds'] > 0 for r in rows)
  config = json.loads((out / 'runs' / 'conv' / 'gumbel' / 'seed0' /
                       'config.json').read_text())
  assert config['model']['model'] == 'conv'
  table = (out / 'table.md').read_text()
  assert table.index('## mlp') < table.index('## conv')
  for row in rows:
    cells = _table_cells(table, row['model'])
    assert list(cells) == ['gumbel'], row['model']
    acc = lambda key: f'{row[key]:.3f}' if row[key] is not None else '-'
    count = lambda key: f'{row[key]:,.0f}' if row[key] is not None else '-'
    assert cells['gumbel'] == {
        'runs': '1', 'best global acc': acc('best_global_acc'),
        'test at best val': acc('test_at_best_val'),
        'final global acc': acc('global_acc'),
        'personal acc': acc('personal_acc'),
        'personal p10': acc('personal_acc_p10'),
        'rounds to target': count('rounds_to_target'),
        'runs spent': f'{row["spent_runs"]:.2f}',
        'local steps': count('local_steps_total'),
        'seconds': count('total_seconds')}, row['model']
    assert row['best_global_acc'] == max(a for _, a in row['curve'])
    assert row['global_acc'] == row['curve'][-1][1]
  for model in ('mlp', 'conv'):
    assert (out / f'best_acc_{model}.png').stat().st_size > 1000


@pytest.mark.parametrize('table,match', [
    ('[compare.methods.fast]\npolicy = "gumbel"\nrounds = 10',
     '[compare.methods.fast]: --rounds is not a setting of policy gumbel'),
    ('[compare.methods.tuned]\npolicy = "static"',
     "--policy='static' is not a learned policy"),
    ('[compare.methods.mine]\npolicy = "gumbel"\nprior_rate = "x"',
     "--prior_rate='x' is not a number"),
    ('[compare.methods."a/b"]\npolicy = "gumbel"', "its runs' directory"),
])
def test_a_bad_method_table_is_one_line_exit_2(tmp_path, capsys, table,
                                               match):
  name = table.split(']')[0].rsplit('.', 1)[1]
  out = tmp_path / 'cmp'
  assert compare.main(ARGV + [_preset(tmp_path, '\n' + table + '\n'),
                              f'--policies={name}', f'--out_dir={out}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and match in err[0], err
  assert not out.exists()


@pytest.mark.parametrize('flag,match', [
    ('--policies=gumbel,nope', "unknown --policies='nope'"),
    ('--models=mlp,mlp', '--models repeats'),
    ('--target_acc=2', '--target_acc must be in'),
    ('--seeds=a', '--seeds'),
    (f'--config={PRESET_DIR / "femnist_fedavg.toml"}',
     'but it holds one; give several --lrs'),
])
def test_bad_grid_flags_are_one_line_exit_2(tmp_path, capsys, flag, match):
  out = tmp_path / 'cmp'
  assert compare.main(ARGV + [flag, f'--out_dir={out}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and match in err[0], err
  assert not out.exists()


def test_bad_input_that_needs_the_data_stops_the_comparison_in_one_line(
    tmp_path, capsys):
  """A setting that only the data shows to be wrong fails every run alike:
  the first one stops the comparison, exit status 2, one line."""
  out = tmp_path / 'cmp'
  assert compare.main(ARGV + [_preset(tmp_path), '--clients_per_round=5',
                              f'--out_dir={out}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1] == ('error: --clients_per_round=5 exceeds the 4 clients of '
                     'digits; lower it.')
  assert sum(line.startswith('error') for line in err) == 1
  assert not (out / 'runs' / 'mlp' / 'static_0' / 'seed0').exists()


@pytest.mark.parametrize('preset', [
    p for p in sorted(PRESET_DIR.glob('*.toml')) if '[compare]' in p.read_text()
], ids=lambda p: p.name)
def test_every_preset_plans_its_grid_and_its_named_methods(preset):
  """Every run a preset's comparison would make is a valid config (checked
  before any starts), and every named method of it too; FATHOM starts
  where the preset's comment says (lr 0.1, FATHOM's protocol, for the
  image presets)."""
  base, grid, _, _ = compare.configs([f'--config={preset}'])
  space = base.search_space()
  specs = comparison.plan(base, grid)
  assert len(specs) == len(grid.models) * len(grid.seeds) * (
      space.size * grid.static_grid + len(grid.policies))
  if grid.methods:  # MOCHA's methods on the convex model they need
    convex = {m for m, t in grid.methods.items() if t.get('algorithm') == 'mocha'}
    planned = set()
    for names, models in ((set(grid.methods) - convex, grid.models),
                          (convex, ('logreg',))):
      if names:
        planned |= {s.method for s in comparison.plan(base, dataclasses.replace(
            grid, policies=tuple(sorted(names)), models=models))}
    assert planned >= set(grid.methods)
    if convex:  # and on another model, refused before any run starts
      with pytest.raises(ConfigError, match='use `model`=logreg'):
        comparison.plan(base, dataclasses.replace(
            grid, policies=tuple(convex), models=('mlp',)))
  fathom = grid.methods.get('fathom')
  if fathom:
    before = preset.read_text().split('[compare.methods.fathom]')[0]
    comment = re.search(r'((?:#[^\n]*\n)+)$', before).group(1)
    said = re.search(r'lr ([0-9.]+)', comment)  # the comment above it
    assert space.lr[fathom['static_index']] == pytest.approx(
        float(said.group(1)))


@pytest.mark.parametrize('preset,method', [
    ('conv_cross_silo.toml', 'gumbel'), ('resnet18_cross_silo.toml', 'fedex')])
def test_a_model_preset_runs_a_round_at_toy_size(preset, method, tmp_path):
  """The seed's model presets (studies of hours) are tested by planning
  their grids (above) and by one round of a method on their first model at
  the smallest size that runs it (2 digits writers, one step of 4
  examples): the default on the conv; on ResNet-18 FedEx, whose round
  compiles once where the default also compiles the window's replay of the
  network. Its time is the network's compilation (ResNet-18: 62 s of the
  72 s that two rounds of 4 writers took on this CPU)."""
  _, grid, _, _ = compare.configs([f'--config={PRESET_DIR / preset}'])
  out = tmp_path / 'cmp'
  assert compare.main([
      f'--config={PRESET_DIR / preset}', '--dataset=digits',
      '--max_clients=2', '--clients_per_round=2', '--rounds=1',
      '--local_steps=1', '--batch_sizes=4', '--eval_every=1', '--seeds=0',
      '--static_grid=0', f'--models={grid.models[0]}',
      f'--policies={method}', f'--out_dir={out}']) == 0
  (row,) = json.loads((out / 'results.json').read_text())
  assert (row['model'], row['method'], row['status']) == (
      grid.models[0], method, 'done')
  assert [c[0] for c in row['curve']] == [1]
  assert 0 < row['best_global_acc'] <= 1


def test_a_named_method_called_static_something_is_not_in_the_grid():
  """Only 'static[z]' runs are the static grid; a method a preset names
  'staticky' is a learned method with its own row."""
  result = lambda method, acc: comparison.RunResult(
      'mlp', method, 0, 'done', configuration='lr=0.1',
      best_global_acc=acc, local_steps_total=10, total_seconds=1.0)
  rows = comparison.table_rows([result('static[0]', 0.5),
                                result('staticky', 0.9)])
  assert [r.method for r in rows] == [
      'static: best of 1 (lr=0.1)', 'static grid: all 1 (cost per seed)',
      'staticky']


def test_the_per_group_oracle_is_found_by_a_scan_and_run_on_every_seed(
    tmp_path):
  """A federation of groups (1 noisy, 1 few, 2 clean digits writers): after
  the static grid and the methods, each group tries the other configuration
  with the rest on the best static one (first seed), each takes its best,
  and that vector runs on both seeds; the table reports every method per
  group, with its policy's mass on the group's oracle configuration."""
  out = tmp_path / 'cmp'
  more = ('\n[data]\nnoisy_fraction = 0.25\nfew_fraction = 0.25\n'
          'few_examples = 8\n')
  preset = Path(_preset(tmp_path)[len('--config='):])
  text = preset.read_text().replace('[data]\n', more.lstrip('\n'), 1)
  preset.write_text(text)
  assert compare.main(ARGV + [f'--config={preset}', f'--out_dir={out}']) == 0
  rows = json.loads((out / 'results.json').read_text())
  acc = {(r['method'], r['seed']): r['best_global_acc'] for r in rows}
  best = max((0, 1), key=lambda z: acc[f'static[{z}]', 0] +
             acc[f'static[{z}]', 1])
  scans = [r['method'] for r in rows if r['method'].startswith('group-scan')]
  vectors = [comparison.oracle.vector_of(m) for m in scans]
  assert sorted(vectors) == sorted(
      tuple(1 - best if h == g else best for h in range(3)) for g in range(3))
  assert all(r['seed'] == 0 for r in rows if r['method'] in scans)
  oracle = tuple(
      max((best, 1 - best), key=lambda z: acc[
          'static[%d]' % best if z == best else
          'group-scan[%s]' % ','.join(str(z if h == g else best)
                                      for h in range(3)), 0])
      for g in range(3))
  name = 'group-oracle[%s]' % ','.join(map(str, oracle))
  assert [r['seed'] for r in rows if r['method'] == name] == [0, 1]
  assert [r['method'] for r in rows][-2:] == [name, name]

  # Each group's figures: its clients, and the global accuracy pooled over
  # its test examples, which pool back to the run's own.
  data = with_groups(pfhpo.data.load('digits', seed=0, max_clients=4),
                     0.25, 0.8, 0.25, 8, seed=0)
  gumbel = next(r for r in rows if r['method'] == 'gumbel' and r['seed'] == 0)
  counts = np.bincount(data.client_group, data.test.counts, 3)
  assert {g: f['clients'] for g, f in gumbel['groups'].items()} == {
      'clean': 2, 'noisy': 1, 'few': 1}
  pooled = sum(counts[GROUPS.index(g)] * f['global_acc']
               for g, f in gumbel['groups'].items()) / counts.sum()
  assert pooled == pytest.approx(gumbel['global_acc'], abs=1e-6)

  table = (out / 'table.md').read_text()
  assert 'per-group oracle (clean: ' in table
  assert 'per-group scan: 3 runs (cost, one seed)' in table
  group_table = table[table.index('By client group'):]
  cells = [[c.strip(' *') for c in line.strip('|').split('|')]
           for line in group_table.splitlines() if line.startswith('| ')]
  header, rows_ = cells[0], {c[0]: c for c in cells[2:]}
  static_row = next(v for k, v in rows_.items() if k.startswith('static'))
  mass = lambda row, g: float(
      row[header.index(f'{g} oracle mass')].split()[0])
  for g, name_ in enumerate(GROUPS):
    assert mass(static_row, name_) == float(oracle[g] == best)
    gumbel_mass = statistics.mean(
        r['groups'][name_]['mean_probabilities'][oracle[g]]
        for r in rows if r['method'] == 'gumbel')
    assert mass(rows_['gumbel'], name_) == pytest.approx(gumbel_mass,
                                                         abs=5e-4)
