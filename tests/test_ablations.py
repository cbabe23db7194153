"""The method's retired variants and its measured ones: a retired setting
is a one-line error that names the tag where it runs, and every variant
kept in experiments/ablations/ plans with its preset."""
import sys
from pathlib import Path

import pytest

from pfhpo.experiment import comparison
from pfhpo.experiment.retired import RETIRED, TAG

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'experiments'))
import compare  # noqa: E402
import femnist  # noqa: E402

ABLATIONS = sorted((ROOT / 'experiments' / 'ablations').glob('*.toml'))


@pytest.mark.parametrize('ablations', ABLATIONS, ids=lambda p: p.name)
def test_every_kept_variant_plans_with_its_preset(ablations):
  """`--methods` adds the file's named methods to its preset's: each plans
  as a valid run (its settings checked before any run starts)."""
  preset = ROOT / 'experiments' / 'configs' / ablations.name
  base, grid, _, _ = compare.configs([f'--config={preset}',
                                      f'--methods={ablations}'])
  added = set(grid.methods) - set(compare.configs(
      [f'--config={preset}'])[1].methods)
  assert added and all(name.startswith('gumbel-') for name in added)
  planned = comparison.plan(base, grid.__class__(
      **{**grid.__dict__, 'policies': tuple(sorted(added)),
         'static_grid': False}))
  assert {s.method for s in planned} == added


@pytest.mark.parametrize('flag', [
    *(f'--{name}=1' for name in RETIRED), '--policy_scope=shared',
    '--policy=gumbel --baseline_decay=0.9'])
def test_a_retired_setting_is_one_line_naming_the_tag(tmp_path, capsys,
                                                       flag):
  """Each retired setting, on the command line of a run, is one line with
  exit status 2 naming the tag, and nothing is written."""
  out = tmp_path / 'run'
  assert femnist.main([*flag.split(), f'--out_dir={out}']) == 2
  captured = capsys.readouterr()
  lines = captured.err.splitlines()
  assert len(lines) == 1 and f'at the git tag {TAG}' in lines[0], lines
  assert lines[0].startswith(f'error: --{flag.split()[-1][2:].split("=")[0]}')
  assert not out.exists()


def test_a_retired_setting_in_a_named_method_names_the_tag(tmp_path, capsys):
  methods = tmp_path / 'methods.toml'
  methods.write_text('[compare.methods.gumbel-raw]\npolicy = "gumbel"\n'
                     'credit_normalize = false\n')
  assert compare.main([f'--methods={methods}', '--policies=gumbel-raw',
                       f'--out_dir={tmp_path / "cmp"}']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and '--credit_normalize was retired' in err[0], err
  assert f'at the git tag {TAG}' in err[0]
  assert not (tmp_path / 'cmp').exists()
