"""RESULTS.md is its template filled in from the committed results files
(`pfhpo.experiment.comparison.page`), and each directive says what its
file says: figures computed here by hand from constructed results."""
import json
import statistics
import sys
from pathlib import Path

import pytest

from pfhpo.errors import ConfigError
from pfhpo.experiment import comparison
from pfhpo.experiment.comparison.page import render
from pfhpo.experiment.comparison.results import RunResult, write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import results_page  # noqa: E402  (experiments/results_page.py)
import studies  # noqa: E402  (experiments/studies.py)


def test_the_pages_are_their_templates_filled_from_the_results_files(capsys):
  """README.md, RESULTS.md, docs/ablations.md and docs/benchmarks.md, as
  `make results-page` writes them."""
  assert results_page.main(['--check']) == 0, capsys.readouterr().err


def _study(root: Path) -> Path:
  """Two seeds of a grid of two static configurations, whose best on
  test (static[1]) is not its best on validation on seed 0, one learned
  method, and random search and SHA at budgets of 1 and 2 runs."""
  def run(method, seed, val, test, budget=1, steps=100, personal=None):
    return RunResult('mlp', method, seed, 'done', best_val_acc=val,
                     test_at_best_val=test, best_global_acc=test,
                     budget=budget, spent_runs=float(budget),
                     local_steps_total=steps, personal_acc=personal)
  results = [
      run('static[0]', 0, 0.90, 0.70), run('static[1]', 0, 0.80, 0.95),
      run('static[0]', 1, 0.60, 0.62), run('static[1]', 1, 0.85, 0.88),
      run('gumbel', 0, 0.7, 0.81, personal=0.5),
      run('gumbel', 1, 0.7, 0.79, personal=0.7),
      run('rs', 0, 0.9, 0.70, budget=2), run('rs', 1, 0.9, 0.88, budget=2),
      run('sha', 0, 0.9, 0.90, budget=2), run('sha', 1, 0.9, 0.84, budget=2),
      run('rs', 0, 0.9, 0.60), run('rs', 1, 0.9, 0.64),
      run('sha', 0, 0.9, 0.50), run('sha', 1, 0.9, 0.52)]
  (root / 'results' / 'toy').mkdir(parents=True)
  write_results(results, root / 'results' / 'toy')
  (root / 'bench.json').write_text(json.dumps([
      {'model': 'mlp', 'steps': 12000, 's': 0.25, 'note': None},
      {'model': 'conv', 's': 1.5, 'extra': True}]))
  return root


def test_each_directive_is_its_figure_computed_by_hand(tmp_path):
  root = _study(tmp_path)
  sd = lambda *v: statistics.stdev(v)
  page = render(
      '{{cell|toy|mlp|gumbel|test at best val}}\n'
      '{{cell|toy|mlp|gumbel|personal acc}}\n'
      # per seed, the grid's run of best validation accuracy: static[0]
      # on seed 0 (0.70; its best on test is 0.95), static[1] on seed 1
      '{{cell|toy|mlp|static: best of 2 by validation|test at best val}}\n'
      '{{tuner|toy|mlp|2}}\n{{tuner|toy|mlp|1}}\n'
      '{{best|toy|mlp|test at best val|gumbel|rs (budget 2)}}\n'
      '{{cell|toy|mlp|static: best of 2 by validation|local steps}}', root)
  assert page.splitlines() == [
      f'0.800 ± {sd(0.81, 0.79):.3f}',
      f'0.600 ± {sd(0.5, 0.7):.3f}',
      f'0.790 ± {sd(0.70, 0.88):.3f}',
      f'sha 0.870 ± {sd(0.90, 0.84):.3f}',
      f'rs 0.620 ± {sd(0.60, 0.64):.3f}',
      f'gumbel 0.800 ± {sd(0.81, 0.79):.3f}',
      '200']  # both runs of the grid, each seed
  table = render('{{budget|toy|mlp|2}}', root).splitlines()
  assert table[0].startswith('| method | runs | test at best val |')
  assert [line.split(' | ')[0] for line in table[2:]] == [
      '| gumbel', '| static: best of 2 by validation', '| rs', '| sha']
  assert f'**0.870 ± {sd(0.90, 0.84):.3f}**' in table[-1]
  rows = render('{{table|toy|mlp}}', root).splitlines()
  assert rows[0].startswith('| method | runs | best global acc | test at')
  assert [r.split(' | ')[0] for r in rows[2:]] == [
      '| static: best of 2 (None)', '| static: best of 2 by validation',
      '| static grid: all 2 (cost per seed)', '| gumbel', '| rs (budget 2)',
      '| sha (budget 2)', '| rs (budget 1)', '| sha (budget 1)']
  assert render('{{records|bench.json|model,steps,s}}', root).splitlines() == [
      '| model | steps | s |', '| --- | --- | --- |',
      '| mlp | 12,000 | 0.25 |', '| conv | - | 1.5 |']


def test_rows_are_the_named_rows_and_columns_from_one_study_or_two(tmp_path):
  """`rows`: the rows in the order named, renamed where asked, one taken
  from another study, '-' where a row has no figure and '(k of n)' where
  k of its n runs have one, the best of each column among the rows shown
  in bold (fewest local steps; most accuracy)."""
  root = _study(tmp_path)
  other = [RunResult('mlp', 'gumbel', s, 'done', best_val_acc=0.9,
                     test_at_best_val=t, budget=1, spent_runs=1.0,
                     local_steps_total=50, personal_acc=p)
           for s, t, p in ((0, 0.6, 0.4), (1, 0.7, None))]
  (root / 'results' / 'older').mkdir()
  write_results(other, root / 'results' / 'older')
  sd = lambda *v: statistics.stdev(v)
  table = render('{{rows|toy|mlp|test at best val,personal acc,local steps|'
                 'gumbel->the method|static: best of 2 by validation|'
                 'older@gumbel->older method|sha (budget 2)}}', root)
  assert table.splitlines() == [
      '| method | test at best val | personal acc | local steps |',
      '| --- | --- | --- | --- |',
      f'| the method | 0.800 ± {sd(0.81, 0.79):.3f} | '
      f'**0.600 ± {sd(0.5, 0.7):.3f}** | 100 |',
      f'| static: best of 2 by validation | 0.790 ± {sd(0.70, 0.88):.3f} | - '
      '| 200 |',
      f'| older method | 0.650 ± {sd(0.6, 0.7):.3f} | 0.400 (1 of 2) '
      '| **50** |',
      f'| sha (budget 2) | **0.870 ± {sd(0.90, 0.84):.3f}** | - | 100 |']
  with pytest.raises(ConfigError, match="no row 'bayes'"):
    render('{{rows|toy|mlp|test at best val|older@bayes}}', root)
  with pytest.raises(ConfigError, match='nowhere.*does not exist'):
    render('{{rows|toy|mlp|test at best val|nowhere@gumbel}}', root)


def test_budgets_side_by_side_are_each_budgets_table(tmp_path):
  """`budgets`: a method's test at best val at each budget, '-' where it
  does not fit (the grid of two at one run), each budget's best in bold."""
  sd = lambda *v: f'{statistics.stdev(v):.3f}'
  table = render('{{budgets|toy|mlp}}', _study(tmp_path)).splitlines()
  assert table == [
      '| method | budget 1 | budget 2 |', '| --- | --- | --- |',
      f'| gumbel | **0.800 ± {sd(0.81, 0.79)}** | 0.800 ± {sd(0.81, 0.79)} |',
      f'| rs | 0.620 ± {sd(0.60, 0.64)} | 0.790 ± {sd(0.70, 0.88)} |',
      f'| sha | 0.510 ± {sd(0.50, 0.52)} | **0.870 ± {sd(0.90, 0.84)}** |',
      f'| static: best of 2 by validation | - | 0.790 ± {sd(0.70, 0.88)} |']


def test_settings_spell_each_named_method_as_its_flags(tmp_path):
  """`settings`: a named method of several files once where they agree,
  once a file where they differ; booleans and lists as flags take them."""
  (tmp_path / 'a.toml').write_text(
      '[compare.methods.g-client]\npolicy = "gumbel"\nhorizon = 1\n'
      '[compare.methods.g-global]\npolicy_scope = "global"\ncredit_at = 1.0\n')
  (tmp_path / 'b.toml').write_text(
      '[compare.methods.g-client]\npolicy = "gumbel"\nhorizon = 1\n'
      '[compare.methods.g-global]\npolicy_scope = "global"\n'
      '[compare.methods.g-lrs]\nlrs = [0.1, 0.3]\ngroup_oracle = false\n')
  assert render('{{settings|a.toml,b.toml}}', tmp_path).splitlines() == [
      '| method | settings | in |', '| --- | --- | --- |',
      '| g-client | `--policy=gumbel` `--horizon=1` | a, b |',
      '| g-global | `--policy_scope=global` `--credit_at=1.0` | a |',
      '| g-global | `--policy_scope=global` | b |',
      '| g-lrs | `--lrs=0.1,0.3` `--group_oracle=0` | b |']


@pytest.mark.parametrize('directive,match', [
    ('{{cell|nowhere|mlp|gumbel|test at best val}}', 'does not exist'),
    ('{{cell|toy|conv|gumbel|test at best val}}', 'no runs of the model conv'),
    ('{{cell|toy|mlp|bayes|test at best val}}', "no row 'bayes'; the rows"),
    ('{{cell|toy|mlp|gumbel|accuracy}}', "no column 'accuracy'"),
    ('{{cell|toy|mlp|gumbel|seconds}}', "no 'seconds' in its results file"),
    ('{{tuner|toy|mlp|4}}', 'the budgets are [1, 2]'),
    ('{{rows|toy|mlp|accuracy|gumbel}}', "no column 'accuracy'"),
    ('{{figure|toy|mlp}}', 'a directive is one of table'),
    ('{{records|bench.json|model,speed}}', "has ['speed']; its fields are"),
    ('{{records|nothing.json|model}}', 'cannot be read as JSON'),
    ('{{settings|bench.json}}', 'has no [compare.methods.NAME] tables'),
])
def test_a_directive_its_files_cannot_fill_names_the_fix(tmp_path, directive,
                                                         match):
  with pytest.raises(ConfigError, match=match.replace('[', r'\[')):
    render(f'text {directive} text', _study(tmp_path))


def test_the_command_checks_writes_and_refuses_in_one_line(tmp_path, capsys):
  root = _study(tmp_path / 'repo')
  template, out = tmp_path / 'page.md', tmp_path / 'RESULTS.md'
  template.write_text('# Toy\n\n{{cell|toy|mlp|gumbel|test at best val}}\n')
  argv = [f'--template={template}', f'--root={root}', f'--out={out}']
  assert results_page.main(argv + ['--check']) == 1
  assert 'run `make results-page`' in capsys.readouterr().err
  assert results_page.main(argv) == 0
  assert out.read_text().startswith('# Toy\n\n0.800 ± ')
  assert results_page.main(argv + ['--check']) == 0
  out.write_text(out.read_text().replace('0.800', '0.801'))  # typed into
  assert results_page.main(argv + ['--check']) == 1
  assert 'at line 3' in capsys.readouterr().err
  template.write_text('{{cell|toy|mlp|bayes|test at best val}}')
  assert results_page.main(argv) == 2
  err = capsys.readouterr().err
  assert err.count('\n') == 1 and err.startswith('error: {{cell|toy|mlp|bayes|')
  assert out.read_text().startswith('# Toy')  # nothing lost
  assert results_page.main([f'--template={template}']) == 2
  assert 'give both' in capsys.readouterr().err


def test_a_study_runs_into_runs_and_keeps_its_files_in_results(
    tmp_path, monkeypatch, capsys):
  """`make results`' script: a study is a comparison under runs/studies/,
  its results files copied to results/<study>/; run again, it is read,
  not redone; an unknown study is one line and exit status 2."""
  monkeypatch.setattr(studies, 'ROOT', tmp_path)
  monkeypatch.setattr(studies, 'STUDIES', {'toy': [
      '--dataset=digits', '--max_clients=4', '--clients_per_round=4',
      '--rounds=2', '--models=mlp', '--policies=gumbel', '--seeds=0',
      '--static_grid=0', '--lrs=0.1,0.3', '--local_steps=1,5']})
  assert studies.main(['toy']) == 0
  run = tmp_path / 'runs' / 'studies' / 'toy'
  kept = tmp_path / 'results' / 'toy'
  for name in ('results.json', 'results.csv', 'table.md', 'best_acc_mlp.png'):
    assert (kept / name).read_bytes() == (run / name).read_bytes(), name
  assert not (kept / 'runs').exists()
  assert render('{{cell|toy|mlp|gumbel|runs spent}}', tmp_path) == '1.00'
  monkeypatch.setattr(comparison.runs, 'run',
                      lambda cfg: pytest.fail('re-ran'))
  assert studies.main(['toy']) == 0
  assert studies.main(['bayes']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err[-1] == "error: no study 'bayes'; the studies are toy"
