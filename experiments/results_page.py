"""Writes RESULTS.md from its template and the committed results files.

    python experiments/results_page.py            # writes RESULTS.md
    python experiments/results_page.py --check    # exit 1 if it differs

The template (experiments/results_page.md) holds the page's prose and
directives (`pfhpo.experiment.comparison.page`) that the comparisons'
`results/<study>/results.json` fill in: every figure on the page is read
from the file beside its study, never typed.
"""
import argparse
import sys
from pathlib import Path

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison.page import render
from pfhpo.experiment.outputs import write_atomic

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--template', type=Path,
                 default=ROOT / 'experiments' / 'results_page.md')
  p.add_argument('--results', type=Path, default=ROOT / 'results',
                 help='the directory of the studies (results/<study>/)')
  p.add_argument('--out', type=Path, default=ROOT / 'RESULTS.md')
  p.add_argument('--check', action='store_true',
                 help='write nothing; exit 1 if --out is not what the '
                 'template and the results files give')
  args = p.parse_args(argv)
  try:
    if not args.template.is_file():
      raise ConfigError(f'--template={args.template} is not a file; give '
                        'the page\'s template')
    page = render(args.template.read_text(), args.results)
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  if not args.check:
    write_atomic(args.out, page)
    return 0
  have = args.out.read_text().splitlines() if args.out.exists() else []
  want = page.splitlines()
  if have == want:
    return 0
  line = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b),
              min(len(have), len(want)))
  print(f'{args.out} differs from its template and results files at line '
        f'{line + 1}; run `make results-page`', file=sys.stderr)
  return 1


if __name__ == '__main__':
  sys.exit(main())
