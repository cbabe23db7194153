"""The seed's figure: each model's best-so-far global accuracy, side by side.

    python experiments/seed_models.py \
        --results=results/resnet18_cross_silo/results.json,results/conv_cross_silo/results.json \
        --models=resnet18,mlp,conv --out=results/seed_models.png

One panel a model, in the order of `--models`, from the first
`results.json` of `--results` (files experiments/compare.py wrote) that
holds runs of it: the grid's best static configuration and every learned
method of that comparison, each the mean over its seeds with a band from
the lowest to the highest, as in a comparison's best_acc_<model>.png. Exit
status 0, or 2 for bad input (a file that is not a results.json, a model
none of them holds).
"""
import sys
from pathlib import Path

from pfhpo.errors import ConfigError
from pfhpo.experiment.comparison.report import best_accuracy_curves
from pfhpo.experiment.comparison.results import read_results
from pfhpo.experiment.flags import OneLineParser
from pfhpo.experiment.plots import plot_best_accuracy_panels


def parser() -> OneLineParser:
  p = OneLineParser(description=__doc__.splitlines()[0])
  p.add_argument('--results', required=True,
                 help="comma-separated results.json files of comparisons")
  p.add_argument('--models', default='resnet18,mlp,conv',
                 help='the panels, left to right (resnet18,mlp,conv)')
  p.add_argument('--out', default='results/seed_models.png',
                 help='the figure (results/seed_models.png)')
  return p


def panels(files: list[Path], models: list[str]) -> dict[str, dict]:
  """{'<model> (<comparison>)': best_accuracy_curves} for each model, from
  the first of `files` that holds runs of it."""
  read = [(path, read_results(path)) for path in files]
  out = {}
  for model in models:
    source = next(((path, rows) for path, rows in read
                   if any(r.model == model and r.curve for r in rows)), None)
    if source is None:
      raise ConfigError(
          f'no run of model {model} in {", ".join(map(str, files))}; run '
          "its comparison or drop it from `models`")
    path, rows = source
    out[f'{model} ({path.parent.name})'] = best_accuracy_curves(rows, model)
  return out


def main(argv=None) -> int:
  try:
    args = parser().parse_args(argv)
    files = [Path(f) for f in args.results.split(',') if f]
    figure = panels(files, [m for m in args.models.split(',') if m])
    out = Path(args.out)
    if not out.parent.is_dir():
      raise ConfigError(f'`out`={out}: its folder does not exist; create '
                        'it or name another')
  except ConfigError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  plot_best_accuracy_panels(figure, out)
  print(f'wrote {out}: {", ".join(figure)}', file=sys.stderr)
  return 0


if __name__ == '__main__':
  sys.exit(main())
