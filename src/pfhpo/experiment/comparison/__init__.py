"""A comparison: methods x models x seeds on one data set, one budget.

Every run of the grid starts from the same base `Config` (a preset) and
differs only in its model, its method and its seed, so every method gets the
same rounds, clients, search space, validation and evaluation. The methods
are the learned policies named, and the static grid: every configuration
of the space run as `static` (the tuned-FedAvg oracle is the best of them,
and the grid's cost is all of them together).

On a federation of client groups (`pfhpo.data.groups`) the comparison
also computes the per-group oracle: each group on its own best static
configuration. It is found by one coordinate step from the best static
configuration z*: for each group g and configuration z != z*, a `static`
run with group g on z and the others on z* (`group-scan[...]`, on the
first seed only; the scan's cost is reported); each group then takes the
configuration whose run had the best best-global accuracy (z* included),
and that vector runs on every seed (`group-oracle[...]`). table.md then
also shows, per group, each method's accuracy and the mass its policy puts
on the group's oracle configuration.

Each run is an independent unit with its own directory under
`<out_dir>/runs/<model>/<method>/seed<k>`: a finished one (its summary.json
written) is read, never redone; an interrupted one resumes from its last
checkpoint (or starts again if it died before one); one that fails is
recorded with its error and the others go on. `results.json`/`results.csv`
hold a row per run, `table.md` the mean and spread over seeds, and
`best_acc_<model>.png` the best-so-far global accuracy against the round.

The package's modules, in the order a comparison uses them: `grid` (what
runs: the methods, models and seeds, planned and checked), `results` (a
run's recorded result and the results files), `oracle` (the grid's best and
the per-group oracle's scan), `runs` (running, continuing or reading one
run),
`tuning` (the tuners over the static grid at each budget), `suite` (all
of it in order), `table` (table.md's rows over seeds), `report` (their
markdown and the figures) and `page` (a results page's template filled in
from the comparisons' results files: RESULTS.md).
"""
from pfhpo.experiment.comparison.grid import (STATIC, CompareConfig, RunSpec,
                                              plan)
from pfhpo.experiment.comparison.report import table_markdown, write_report
from pfhpo.experiment.comparison.results import RunResult, write_results
from pfhpo.experiment.comparison.runs import run_one
from pfhpo.experiment.comparison.suite import claim, run_all
from pfhpo.experiment.comparison.table import TableRow, table_rows

__all__ = ['STATIC', 'CompareConfig', 'RunResult', 'RunSpec', 'TableRow',
           'claim', 'plan', 'run_all', 'run_one', 'table_markdown',
           'table_rows', 'write_report', 'write_results']
