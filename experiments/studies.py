"""Runs the studies whose files RESULTS.md reads, in order, each resumable
run by run, and copies each one's results files into results/<study>/.

    python experiments/studies.py                  # every study (make results)
    python experiments/studies.py headline_cross_silo

A study is one `experiments/compare.py` comparison into
runs/studies/<study>/ (run again, it continues: a finished run is read, an
interrupted one resumes from its last checkpoint); its results.json,
results.csv, table.md and figures then go to results/<study>/, where
`make results-page` reads them.
"""
import shutil
import sys
from pathlib import Path

import compare

ROOT = Path(__file__).resolve().parents[1]
# The field's protocol on every preset: the method (the shipped default)
# and its population at 1, 2, 4 and 8 runs, its one-run peers, the static
# grid and the tuners at 1, 2, 4 and 8 runs, three seeds.
HEADLINE = ['--seeds=0,1,2', '--budgets=1,2,4,8',
            '--policies=gumbel,gumbel_pop,fedex,pfedex,fathom,rs,sha,'
            'hyperband,fedex_sha,fedpop']
STUDIES = {
    'headline_cross_silo': HEADLINE,
    'headline_cross_device': [
        '--config=experiments/configs/cross_device.toml', *HEADLINE],
    'headline_heterogeneous': [
        '--config=experiments/configs/heterogeneous.toml', *HEADLINE],
    'personalisation_heterogeneous': [
        '--config=experiments/configs/heterogeneous.toml', '--seeds=0,1,2',
        '--group_oracle=0', '--static_grid=0',
        '--policies=gumbel,ditto,ditto-gumbel,fedrep,pfedhn,reptile,'
        'reptile-gumbel',
        '--methods=experiments/studies/personalisation.toml'],
    'personalisation_cross_silo': [
        '--seeds=0,1,2', '--static_grid=0',
        '--policies=ditto,fedrep,fedmeta,per_fedavg,pfedhn,reptile'],
    'headline_shakespeare': [
        '--config=experiments/configs/shakespeare.toml', *HEADLINE],
    # The other models, sized to a 2-core CPU (RESULTS.md, "Other models").
    'conv_cross_silo': [
        '--config=experiments/configs/conv_cross_silo.toml', '--seeds=0,1,2'],
    'resnet18_cross_silo': [
        '--config=experiments/configs/resnet18_cross_silo.toml'],
}
KEPT = ('results.json', 'results.csv', 'table.md', '*.png')


def main(argv=None) -> int:
  names = list(argv if argv is not None else sys.argv[1:]) or list(STUDIES)
  unknown = [n for n in names if n not in STUDIES]
  if unknown:
    print(f'error: no study {unknown[0]!r}; the studies are '
          f'{", ".join(STUDIES)}', file=sys.stderr)
    return 2
  for name in names:
    out = ROOT / 'runs' / 'studies' / name
    print(f'study {name}: {out}', file=sys.stderr, flush=True)
    code = compare.main(STUDIES[name] + [f'--out_dir={out}'])
    if code != 0:
      return code
    kept = ROOT / 'results' / name
    kept.mkdir(parents=True, exist_ok=True)
    for pattern in KEPT:
      for path in out.glob(pattern):
        shutil.copy2(path, kept / path.name)
  return 0


if __name__ == '__main__':
  sys.exit(main())
