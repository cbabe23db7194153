"""A run's configuration: seven groups of settings, each checked where it lives.

    Config(data=DataConfig(...), model=ModelConfig(...), space=SpaceConfig(...),
           server=ServerConfig(...), algorithm=AlgorithmConfig(...),
           policy=PolicyConfig(...), run=RunConfig(...))

Every group (`groups.py`) is a frozen dataclass of `setting`s that checks
its own values when it is made; `Config` checks what one group's setting
means for another's. A setting's name is unique across the groups and is
its command-line flag's name; the policy and algorithm groups hold the
chosen policy's and algorithm's own config. `override` applies flat
`{name: value}` settings (from flags, a preset file or a script) with their
types checked.
The defaults are the embedded offline demo: the project's method (`gumbel`)
over eight configurations on Fashion-MNIST writers.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from pfhpo import algorithms
from pfhpo import data as datasets
from pfhpo import models
from pfhpo.experiment.groups import (AlgorithmConfig, DataConfig, ModelConfig,
                                     PolicyConfig, RunConfig, ServerConfig,
                                     SpaceConfig)
from pfhpo.experiment.retired import check_retired
from pfhpo.policies import registry
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import check_choice, checked, coerce, require

__all__ = ['AlgorithmConfig', 'Config', 'DataConfig', 'ModelConfig',
           'PolicyConfig', 'RunConfig', 'ServerConfig', 'SpaceConfig',
           'all_settings', 'override', 'own_settings']


@checked
class Config:
  data: DataConfig = DataConfig()
  model: ModelConfig = ModelConfig()
  space: SpaceConfig = SpaceConfig()
  server: ServerConfig = ServerConfig()
  algorithm: AlgorithmConfig = AlgorithmConfig()
  policy: PolicyConfig = PolicyConfig()
  run: RunConfig = RunConfig()

  def __post_init__(self):
    """What one group's setting means for another's."""
    model = self.model.model
    algorithms.entry(self.algorithm.algorithm).check(
        self.algorithm.options, model, self.server == ServerConfig())
    dataset = self.data.dataset
    if dataset in datasets.SEQUENCES:
      require(model in models.SEQUENCE_MODELS, f'`dataset`={dataset} holds '
              f'character sequences: use `model`=lstm, not {model}.')
    else:
      require(model not in models.SEQUENCE_MODELS, f'`model`={model} reads '
              f'character sequences: use it with `dataset`=shakespeare.')

  def search_space(self) -> SearchSpace:
    """The client configurations the policy chooses among: the space
    group's axes and the algorithm's tuned setting."""
    return self.space.space(self.algorithm.tuned())


GROUPS = tuple(f.name for f in dataclasses.fields(Config))
# Every setting of every group but a chosen policy's or algorithm's own:
# its group's name.
GROUP_OF = {f.name: group for group, cls in typing.get_type_hints(
    Config).items() for f in dataclasses.fields(cls) if f.name != 'options'}
# The groups whose `options` are a registered choice's own config: group ->
# its registry; the group's setting of the same name is the choice.
CHOSEN = {'policy': registry.REGISTRY, 'algorithm': algorithms.REGISTRY}


def own_settings() -> dict[str, tuple[str, dict[str, dataclasses.Field]]]:
  """{setting name: (its group, {choice: its field})} over every registered
  policy's and algorithm's own config."""
  found: dict[str, tuple[str, dict[str, dataclasses.Field]]] = {}
  for group, choices in CHOSEN.items():
    for name, entry in choices.items():
      for f in dataclasses.fields(entry.config):
        found.setdefault(f.name, (group, {}))[1][name] = f
  return found


def all_settings() -> dict[str, tuple[type, Any, str]]:
  """{name: (type, default, help)} of every setting a run can be given; a
  policy's or algorithm's own setting has a default and help per choice,
  so they are None."""
  out = {}
  for group, cls in typing.get_type_hints(Config).items():
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
      if f.name != 'options':
        out[f.name] = (hints[f.name], f.default, f.metadata['help'])
  for name, (group, per_choice) in own_settings().items():
    cls = CHOSEN[group][next(iter(per_choice))].config
    out[name] = (typing.get_type_hints(cls)[name], None, None)
  return out


def override(cfg: Config, values: Mapping[str, Any]) -> Config:
  """`cfg` with the flat settings `values` ({name: value}; strings are
  parsed) replaced. Choosing another policy or algorithm starts from its
  defaults; a setting of another one than the chosen is an error."""
  values = dict(values)
  check_retired(values, values.get('policy', cfg.policy.policy))
  kinds = all_settings()
  for name in values:
    require(name in kinds, f'unknown setting `{name}`')
  values = {k: coerce(v, kinds[k][0], k) for k, v in values.items()}
  groups = {g: {k: v for k, v in values.items()
                if GROUP_OF.get(k) == g and k not in CHOSEN} for g in GROUPS}
  shared = own_settings()
  for group, choices in CHOSEN.items():
    current = getattr(cfg, group)
    name = values.get(group, getattr(current, group))
    check_choice(group, name, tuple(choices))
    own = {f.name for f in dataclasses.fields(choices[name].config)}
    options = {k: v for k, v in values.items()
               if k in shared and shared[k][0] == group}
    for k in options:
      require(k in own, f'`{k}` does not apply to `{group}`={name} (only to '
              f'{", ".join(shared[k][1])}); drop it.')
    base = (current.options if name == getattr(current, group)
            else choices[name].config())
    groups[group].update({group: name, 'options': dataclasses.replace(
        base, **options)})
  return dataclasses.replace(cfg, **{
      g: dataclasses.replace(getattr(cfg, g), **v)
      for g, v in groups.items() if v})
