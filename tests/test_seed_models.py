"""experiments/seed_models.py: the seed's figure, one panel a model, from
the comparisons' results.json files."""
import sys
from pathlib import Path

import numpy as np
import pytest

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison import RunResult, write_results
from pfhpo.experiment.comparison.results import read_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import seed_models  # noqa: E402  (experiments/seed_models.py)


def _run(model, method, seed, curve, configuration=None):
  return RunResult(model, method, seed, 'done', configuration=configuration,
                   best_global_acc=max(acc for _, acc in curve),
                   curve=tuple(curve), anytime=((5, 50, 0.5, 0.4),))


def _comparison(root: Path, model: str, shift: float = 0.0) -> Path:
  """Two static configurations (the second better on the mean of its
  seeds' best global accuracy, the first on seed 0's) and gumbel, 2 seeds."""
  rows = []
  for seed in (0, 1):
    rows += [
        _run(model, 'static[0]', seed,
             [(5, 0.6 + shift), (10, 0.55 + 0.3 * (seed == 0) + shift)],
             'lr=0.1'),
        _run(model, 'static[1]', seed, [(5, 0.7 + shift), (10, 0.8 + shift)],
             'lr=0.3'),
        _run(model, 'gumbel', seed, [(5, 0.5 + shift), (10, 0.75 + shift)])]
  root.mkdir()
  write_results(rows, root)
  return root / 'results.json'


def test_results_json_reads_back_as_the_rows_written(tmp_path):
  path = _comparison(tmp_path / 'a', 'conv')
  rows = read_results(path)
  assert rows[1] == _run('conv', 'static[1]', 0, [(5, 0.7), (10, 0.8)],
                         'lr=0.3')
  assert len(rows) == 6


def test_a_panel_a_model_from_the_first_file_holding_it(tmp_path):
  """The grid's best is the static configuration of the best mean best
  global accuracy (lr 0.3: 0.8 and 0.8 against 0.85 and 0.6), labelled
  with it and drawn before the learned methods; a model two files hold is
  drawn from the first given."""
  conv = _comparison(tmp_path / 'conv_preset', 'conv')
  both = tmp_path / 'both'
  rows = (read_results(_comparison(tmp_path / 'mlp_preset', 'mlp', 0.1)) +
          read_results(_comparison(tmp_path / 'other', 'conv', -0.2)))
  both.mkdir()
  write_results(rows, both)
  figure = seed_models.panels([both / 'results.json', conv], ['conv', 'mlp'])
  assert list(figure) == ['conv (both)', 'mlp (both)']
  assert list(figure['conv (both)']) == ['static best (lr=0.3)', 'gumbel']
  np.testing.assert_allclose(figure['conv (both)']['static best (lr=0.3)'],
                             [[(5, 0.5), (10, 0.6)]] * 2)
  figure = seed_models.panels([conv, both / 'results.json'], ['mlp', 'conv'])
  assert list(figure) == ['mlp (both)', 'conv (conv_preset)']
  assert figure['conv (conv_preset)']['gumbel'][1] == ((5, 0.5), (10, 0.75))


def test_the_command_writes_the_figure_and_refuses_a_missing_model(
    tmp_path, capsys):
  conv = _comparison(tmp_path / 'conv_preset', 'conv')
  out = tmp_path / 'seed_models.png'
  assert seed_models.main([f'--results={conv}', '--models=conv',
                           f'--out={out}']) == 0
  assert out.read_bytes()[:4] == b'\x89PNG'
  out.unlink()
  capsys.readouterr()
  assert seed_models.main([f'--results={conv}', '--models=resnet18,conv',
                           f'--out={out}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert err == [f'error: no run of model resnet18 in {conv}; run its '
                 'comparison or drop it from `models`']
  assert not out.exists()
  with pytest.raises(ConfigError, match='not a comparison'):
    read_results(tmp_path / 'missing.json')
