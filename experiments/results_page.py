"""Writes the pages whose figures come from files (README.md, RESULTS.md,
docs/ablations.md, docs/benchmarks.md), each from its template in
experiments/pages/.

    python experiments/results_page.py            # writes every page
    python experiments/results_page.py --check    # exit 1 if one differs

A template holds a page's prose and directives
(`pfhpo.experiment.comparison.page`) that the committed
`results/<study>/results.json` and `benchmarks/results/*.json` fill in:
no figure on the pages is typed.
"""
import argparse
import sys
from pathlib import Path

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison.page import render
from pfhpo.experiment.outputs import write_atomic

ROOT = Path(__file__).resolve().parents[1]
# template (under experiments/pages/) -> the page it writes
PAGES = {'README.md': 'README.md', 'RESULTS.md': 'RESULTS.md',
         'ablations.md': 'docs/ablations.md',
         'benchmarks.md': 'docs/benchmarks.md'}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--root', type=Path, default=ROOT,
                 help='the repository whose files fill the pages')
  p.add_argument('--template', type=Path, default=None,
                 help='one template to render (with --out) instead of '
                 'every page of experiments/pages/')
  p.add_argument('--out', type=Path, default=None)
  p.add_argument('--check', action='store_true',
                 help='write nothing; exit 1 if a page is not what its '
                 'template and the files give')
  args = p.parse_args(argv)
  pages = ({args.template: args.out} if args.template or args.out else
           {ROOT / 'experiments' / 'pages' / t: ROOT / out
            for t, out in PAGES.items()})
  try:
    if None in pages or None in pages.values():
      raise ConfigError('--template and --out go together; give both, or '
                        'neither for every page')
    rendered = {}
    for template, out in pages.items():
      if not template.is_file():
        raise ConfigError(f'--template={template} is not a file; give a '
                          "page's template")
      rendered[out] = render(template.read_text(), args.root)
  except ConfigError as e:  # nothing written
    print(f'error: {e}', file=sys.stderr)
    return 2
  if not args.check:
    for out, page in rendered.items():
      write_atomic(out, page)
    return 0
  stale = 0
  for out, page in rendered.items():
    have = out.read_text().splitlines() if out.exists() else []
    want = page.splitlines()
    if have != want:
      line = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b),
                  min(len(have), len(want)))
      print(f'{out} differs from its template and files at line {line + 1};'
            ' run `make results-page`', file=sys.stderr)
      stale += 1
  return 1 if stale else 0


if __name__ == '__main__':
  sys.exit(main())
