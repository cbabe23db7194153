"""The test split never reaches a choice.

The same comparison twice at toy size, the second with every test label
relabelled (y -> y + 1 mod classes, a permutation of the classes): every
policy's choices and what it learned, every validation and training
figure of every run, and every tuner's pick and spend must be the same to
the last digit, while the test figures move. A method or tuner that read
the test split anywhere in a decision would differ.
"""
import dataclasses
import json
import sys
from pathlib import Path

import pytest

from pfhpo import data as datasets
from pfhpo.data.federated import ClientSplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import compare  # noqa: E402  (experiments/compare.py)

PRESET = ROOT / 'experiments' / 'configs' / 'cross_silo.toml'

# The space and federation of tests/test_tuning.py (their programs are
# compiled once), FATHOM starting from the second configuration.
ARGV = ['--dataset=digits', '--max_clients=4', '--clients_per_round=4',
        '--rounds=2', '--eval_every=1', '--models=mlp', '--lrs=0.1,0.3',
        '--local_steps=1,5', '--seeds=0', '--static_grid=0', '--budgets=2',
        '--policies=gumbel,gumbel_pop,fedex,pfedex,fathom,rs,sha,hyperband,'
        'fedex_sha,fedpop']
# Figures of the test split (and of the clock); everything else a run
# writes must not move when the test labels do.
TEST = {'global_acc', 'global_loss', 'client_acc_mean', 'global_error',
        'refine_error', 'best_global_acc', 'test_at_best_val',
        'personal_acc', 'personal_acc_p10', 'personal_acc_pooled',
        'personal_acc_unseen', 'groups', 'curve', 'rounds_to_target',
        'final_global_acc', 'personal_p10', 'seconds', 'total_seconds',
        'first_round_seconds', 'compile_seconds'}


def _relabelled(load):
  def loader(*args, **kwargs):
    data = load(*args, **kwargs)
    test = data.test
    return dataclasses.replace(data, test=ClientSplit(
        test.x, (test.y + 1) % data.num_classes, test.offsets, test.width))
  return loader


def _blind(record):
  if isinstance(record, dict):
    blind = {k: _blind(v) for k, v in record.items() if k not in TEST}
    if 'anytime' in blind:  # (round, local steps, best val, its test acc)
      blind['anytime'] = [point[:3] for point in blind['anytime']]
    return blind
  return record


def _written(out: Path) -> dict:
  """Every run's rows, choices and summary, and the comparison's rows."""
  files = {}
  for path in sorted(out.rglob('*')):
    if path.name in ('metrics.jsonl', 'choices.jsonl'):
      files[str(path.relative_to(out))] = [
          _blind(json.loads(line)) for line in path.read_text().splitlines()]
    elif path.name in ('summary.json', 'results.json'):
      record = json.loads(path.read_text())
      files[str(path.relative_to(out))] = (
          [_blind(r) for r in record] if isinstance(record, list)
          else _blind(record))
  return files


def test_relabelling_the_test_split_changes_no_choice(tmp_path, monkeypatch):
  preset = tmp_path / 'preset.toml'
  preset.write_text(PRESET.read_text().replace('static_index = 4',
                                               'static_index = 1'))
  argv = ARGV + [f'--config={preset}']
  assert compare.main(argv + [f'--out_dir={tmp_path / "a"}']) == 0
  monkeypatch.setattr(datasets, 'load', _relabelled(datasets.load))
  assert compare.main(argv + [f'--out_dir={tmp_path / "b"}']) == 0
  a, b = _written(tmp_path / 'a'), _written(tmp_path / 'b')
  assert a.keys() == b.keys()
  methods = {r['method'] for r in a['results.json']}
  assert {'gumbel', 'gumbel_pop', 'fedex', 'pfedex', 'fathom', 'rs', 'sha',
          'hyperband', 'fedex_sha', 'fedpop'} <= methods
  assert sum(name.endswith('choices.jsonl') for name in a) >= 8
  for name in a:
    assert a[name] == b[name], name
  # and the test figures did move
  rows = lambda d: json.loads((tmp_path / d / 'results.json').read_text())
  assert [r['test_at_best_val'] for r in rows('a')] != [
      r['test_at_best_val'] for r in rows('b')]
