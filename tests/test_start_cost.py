"""experiments/start_cost.py on a constructed comparison: the best and the
harmful configurations are chosen on validation (test disagrees), and each
window's accuracies and masses are the figures computed by hand."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'experiments'))
import start_cost  # noqa: E402  (experiments/start_cost.py)


def write_run(path: Path, rows, choices=None):
  path.mkdir(parents=True)
  (path / 'metrics.jsonl').write_text(
      '\n'.join(json.dumps(r) for r in rows) + '\n')
  if choices is not None:
    (path / 'choices.jsonl').write_text('\n'.join(
        json.dumps({'round': t + 1, 'choices': c})
        for t, c in enumerate(choices)) + '\n')


def row(r, test, val):
  return {'round': r, 'global_acc': test, 'val_acc': val}


def test_windows_compare_the_method_with_the_best_configuration_on_validation(
    tmp_path):
  runs = tmp_path / 'runs' / 'mlp'
  for seed, shift in ((0, 0.0), (1, 0.1)):
    # static 0 is best on validation (0.9) though static 1 is best on test;
    # static 2 is harmful (0.8 < 0.9 - 0.05), static 1 (0.88) is not
    write_run(runs / 'static_0' / f'seed{seed}',
              [row(2, 0.5 + shift, 0.6), row(4, 0.7 + shift, 0.9)])
    write_run(runs / 'static_1' / f'seed{seed}',
              [row(2, 0.9, 0.5), row(4, 0.95, 0.88)])
    write_run(runs / 'static_2' / f'seed{seed}',
              [row(2, 0.3, 0.7), row(4, 0.4, 0.8)])
    # four clients a round; rounds 1-2, then 3-4
    write_run(runs / 'gumbel' / f'seed{seed}',
              [row(2, 0.4, 0.5), row(4, 0.6 + shift, 0.7)],
              [[0, 2, 2, 1], [2, 2, 1, 1], [0, 0, 0, 1], [0, 0, 1, 2]])
  got = start_cost.start_cost(tmp_path, 'gumbel', 'mlp', 0.05)
  assert [r['rounds'] for r in got] == ['1-2', '3-4']
  first, second = got
  assert first['seeds'] == 2
  assert first['method_acc'] == pytest.approx(0.4)
  assert first['best_acc'] == pytest.approx(0.55)  # static 0's, by val
  assert first['deficit'] == pytest.approx(0.15)
  assert first['best_mass'] == pytest.approx(1 / 8)
  assert first['harmful_mass'] == pytest.approx(4 / 8)
  assert second['method_acc'] == pytest.approx(0.65)
  assert second['best_acc'] == pytest.approx(0.75)
  assert second['best_mass'] == pytest.approx(5 / 8)
  assert second['harmful_mass'] == pytest.approx(1 / 8)
  assert start_cost.main([str(tmp_path), f'--out={tmp_path / "w.json"}']) == 0
  assert json.loads((tmp_path / 'w.json').read_text()) == got


def test_a_directory_without_the_grid_is_one_line_and_exit_2(tmp_path, capsys):
  assert start_cost.main([str(tmp_path)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'no static grid' in err[0]
