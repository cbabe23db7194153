"""A comparison's grid: which methods, models and seeds run, and each run's
config over the shared base (`plan`)."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

from pfhpo import models as model_zoo
from pfhpo.data.groups import group_names
from pfhpo.experiment.config import (AlgorithmConfig, Config, override,
                                     own_settings)
from pfhpo.experiment.retired import check_retired
from pfhpo.policies import REGISTRY
from pfhpo.settings import check_choice, checked, require, setting


STATIC = 'static'
# The tuners, methods of `policies` (`tuning.py`): random search, successive
# halving and Hyperband over the static grid's configurations, FedEx
# wrapped in successive halving, and FedPop (a population of one member
# per run of the budget).
TUNERS = ('rs', 'sha', 'hyperband', 'fedex_sha', 'fedpop')
# The method at a budget of B runs: a population of B of its runs
# (`gumbel_pop`, `pfhpo.policies.gumbel.gumbel_population`).
METHOD_AT_BUDGET = 'gumbel_pop'
# The methods of `policies` sized to each budget (`tuning.py`).
BUDGETED = (METHOD_AT_BUDGET,) + TUNERS


# What a method may set besides its policy's settings: the federated
# algorithm, its own settings, and the server optimizer it is defined with
# (FedMeta's Adam).
METHOD_SETTINGS = tuple(
    f.name for f in dataclasses.fields(AlgorithmConfig) if f.name != 'options'
) + tuple(name for name, (group, _) in own_settings().items()
          if group == 'algorithm') + ('server_opt', 'server_lr')


@checked
class CompareConfig:
  """The grid of a comparison (a preset's [compare] table).

  A method is a learned policy by name, or a variant a preset names in a
  [compare.methods.NAME] table: its `policy` (default NAME; `static` with a
  `static_index`), settings of that policy, and the federated algorithm
  with its settings and server optimizer (METHOD_SETTINGS), e.g.

      [compare.methods.gumbel-global]
      policy = "gumbel"
      policy_scope = "global"

      [compare.methods.ditto]
      policy = "static"
      static_index = 5
      algorithm = "ditto"

  so that every method runs with the same data, model, space and rounds.
  """
  policies: tuple[str, ...] = setting(
      ('gumbel', 'reinforce', 'random', 'fedex', 'pfedex', 'fathom'),
      "the learned methods (policies, or the preset's [compare.methods]), "
      'each run on every model and seed')
  models: tuple[str, ...] = setting(('mlp',), 'the models')
  seeds: tuple[int, ...] = setting((0, 1, 2), 'the seeds')
  budgets: tuple[int, ...] = setting(
      (1, 2, 4, 8), "the tuners' budgets, in runs (one run: `rounds` "
      'rounds); each tuner is sized to each')
  server_lrs: tuple[float, ...] = setting(
      (), 'server learning rates the static grid and the tuners also search '
      "(unset: the base run's `server_lr` alone)")
  server_momenta: tuple[float, ...] = setting(
      (), 'server momenta (of `server_opt`=sgd or momentum) the static grid '
      "and the tuners also search (unset: the base run's alone)")
  eta: int = setting(
      2, "successive halving's and Hyperband's eta: the best 1/eta of a "
      'rung go on')
  static_grid: bool = setting(
      True, "also run every configuration of the space as 'static'")
  target_acc: float | None = setting(
      None, 'global accuracy whose first round each run reports (unset: none)')
  group_oracle: bool = setting(
      True, 'on a federation of client groups (`noisy_fraction`, '
      '`few_fraction`), also find and run the per-group oracle (needs the '
      'static grid)')
  methods: Mapping[str, Mapping[str, Any]] = dataclasses.field(
      default_factory=dict, metadata={'help': (
          'named methods: a policy and its own settings (a preset\'s '
          '[compare.methods.NAME] tables)')})

  def __post_init__(self):
    for name in ('policies', 'models', 'seeds', 'budgets'):
      values = getattr(self, name)
      require(len(values) > 0, f'`{name}` is empty; give at least one')
      require(len(set(values)) == len(values),
              f'`{name}` repeats a value ({list(values)}); list each once')
    learned = tuple(p for p in REGISTRY if p != STATIC)
    for name, table in self.methods.items():
      where = f'[compare.methods.{name}]'
      require(re.fullmatch(r'[\w.-]+', name) is not None,
              f'{where}: a method\'s name is its runs\' directory; use '
              'letters, digits, ".", "-" and "_"')
      require(isinstance(table, Mapping), f'{where} is not a table')
      require(name not in BUDGETED, f'{where}: {name} names a method sized '
              'to the budgets; give the method another')
      policy = table.get('policy', name)
      require(policy in learned or (policy == STATIC and 'static_index' in
                                    table),
              f'{where}: `policy`={policy!r} is not a learned policy; choose '
              f'one of {", ".join(learned)}, or {STATIC} with a '
              '`static_index`')
      check_retired(table, policy, f'{where}: ')
      own = [f.name for f in dataclasses.fields(REGISTRY[policy].config)]
      for setting_ in set(table) - {'policy'}:
        require(setting_ in own or setting_ in METHOD_SETTINGS,
                f'{where}: `{setting_}` is not a setting of policy {policy} '
                f'({", ".join(own) or "it has none"}) or of the algorithm '
                f'({", ".join(METHOD_SETTINGS)}); every method runs with the '
                'same data, model, space and rounds')
    for method in self.policies:
      check_choice('policies', method, learned + TUNERS + tuple(
          m for m in self.methods if m not in learned))
    require(all(b >= 1 for b in self.budgets),
            f'`budgets` are in runs, each at least 1; got {list(self.budgets)}')
    require(self.eta >= 2, f'`eta` must be at least 2, got {self.eta}')
    for name in ('server_lrs', 'server_momenta'):
      values = getattr(self, name)
      require(len(set(values)) == len(values),
              f'`{name}` repeats a value ({list(values)}); list each once')
    require(all(lr > 0 for lr in self.server_lrs),
            f'`server_lrs` must be > 0, got {list(self.server_lrs)}')
    require(all(0 <= m < 1 for m in self.server_momenta),
            f'`server_momenta` must be in [0, 1), got '
            f'{list(self.server_momenta)}')
    if self.server_lrs or self.server_momenta:
      unable = [m for m in self.policies if m not in TUNERS and not
                searches_server(self.settings_of(m)['policy'])]
      require(not unable,
              f'{", ".join(unable)} cannot search a server axis '
              '(`server_lrs`, `server_momenta`: the static grid, the '
              f'tuners {", ".join(TUNERS)} and the policies '
              f'{", ".join(p for p in REGISTRY if searches_server(p))} '
              'search them); drop the axes or run those methods in a '
              'comparison of their own')
    for model in self.models:
      check_choice('models', model, model_zoo.MODELS)
    require(self.target_acc is None or 0 < self.target_acc <= 1,
            f'`target_acc` must be in (0, 1], got {self.target_acc}')

  def servers(self) -> list[dict]:
    """The server configurations searched: the product of `server_lrs` and
    `server_momenta` as settings over the base run's ([{}]: the base's)."""
    return [{**({'server_lr': lr} if lr is not None else {}),
             **({'server_momentum': m} if m is not None else {})}
            for lr in self.server_lrs or (None,)
            for m in self.server_momenta or (None,)]

  def settings_of(self, method: str) -> dict:
    """A learned method's flat settings over the base run (with the grid's
    server axes for a policy that searches them)."""
    table = dict(self.methods.get(method, {}))
    policy = table.pop('policy', method)
    axes = {name: getattr(self, name) for name in SERVER_AXES
            if getattr(self, name) and searches_server(policy)}
    return {'policy': policy, **axes, **table}


SERVER_AXES = ('server_lrs', 'server_momenta')


def searches_server(policy: str) -> bool:
  """Whether `policy` chooses the server's configurations itself (its own
  `server_lrs` and `server_momenta`)."""
  return policy in REGISTRY and all(
      name in {f.name for f in dataclasses.fields(REGISTRY[policy].config)}
      for name in SERVER_AXES)


class RunSpec(NamedTuple):
  """One run of the grid: a method on a model with a seed."""
  model: str
  method: str  # a policy's name, or 'static[j]' for the grid's run j
  seed: int
  settings: dict  # flat settings over the base config

  @property
  def key(self) -> tuple[str, str, int]:
    return self.model, self.method, self.seed

  def directory(self, root: Path) -> Path:
    method = self.method.replace('[', '_').replace(']', '')
    return root / 'runs' / self.model / method / f'seed{self.seed}'


def plan(base: Config, grid: CompareConfig) -> list[RunSpec]:
  """Every run of the grid, checked (a bad setting is a ConfigError here,
  before any run starts): per model, the static grid, then the policies,
  each over the seeds."""
  space = base.search_space()
  servers = grid.servers()
  statics = [static_spec('', 0, j, space.size, servers)
             for j in range(space.size * len(servers))]
  methods = ([(spec.method, spec.settings) for spec in statics]
             if grid.static_grid else [])
  methods += [(m, grid.settings_of(m)) for m in grid.policies
              if m not in BUDGETED]
  searching = [m for m, s in methods if REGISTRY[s['policy']].searches]
  searching += [m for m in grid.policies if m in BUDGETED]
  require(space.size * len(servers) > 1 or not searching,
          f'{", ".join(searching)} choose among the search space\'s '
          'configurations, but it holds one; give several `lrs`, '
          '`local_steps` or `batch_sizes`.')
  grouped = len(group_names(base.data.noisy_fraction,
                            base.data.few_fraction)) > 1
  require(len(servers) == 1 or not (grid.group_oracle and grouped
                                    and grid.static_grid),
          "the per-group oracle scans the clients' configurations on the "
          'base server; with `server_lrs` or `server_momenta` pass '
          '`group_oracle`=false')
  specs = []
  for model in grid.models:
    for method, settings in methods:
      for seed in grid.seeds:
        spec = RunSpec(model, method, seed, settings)
        config_of(base, spec, Path('.'))  # checks it
        specs.append(spec)
  return specs


def static_spec(model: str, seed: int, j: int, size: int,
                servers: Sequence[dict] = ({},)) -> RunSpec:
  """The static grid's run j: client configuration j mod H of the space's
  H = `size` on server configuration j div H (`CompareConfig.servers`)."""
  return RunSpec(model, f'{STATIC}[{j}]', seed,
                 {'policy': STATIC, 'static_index': j % size,
                  **servers[j // size]})


def config_of(base: Config, spec: RunSpec, root: Path, resume: bool = False,
              rounds: int | None = None) -> Config:
  """The run of `spec` in `root`; `rounds`: that many instead of the
  base's (a tuner's rung)."""
  return override(base, {**spec.settings, 'model': spec.model,
                         'seed': spec.seed,
                         'out_dir': str(spec.directory(root)),
                         'resume': resume,
                         'rounds': rounds or base.run.rounds})


def describe_server(settings: Mapping[str, Any]) -> str:
  """A run's server settings of the grid's axes, as the tables name them
  ('' for the base's)."""
  return ''.join(f' {name}={settings[name]:g}'
                 for name in ('server_lr', 'server_momentum')
                 if name in settings)
