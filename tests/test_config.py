"""Config groups, the generated command line, presets and overrides."""
import ast
import dataclasses
import inspect
import re
import typing
from pathlib import Path

import pytest

from pfhpo.errors import ConfigError
from pfhpo.experiment import Config, override
from pfhpo.experiment.comparison import CompareConfig
from pfhpo.experiment.config import all_settings, own_settings
from pfhpo.experiment.flags import (PROCESS_FLAGS, command_from_args,
                                    flag_message, parser)
from pfhpo.experiment.retired import RETIRED
from pfhpo.federated.credit import make_credit
from pfhpo.policies import REGISTRY, FedExConfig, GumbelConfig, gumbel
from pfhpo.policies.registry import credit_of
from pfhpo.types import CreditSettings

ROOT = Path(__file__).resolve().parents[1]
PRESETS = sorted((ROOT / 'experiments' / 'configs').glob('*.toml'))


def test_every_setting_is_a_flag_once():
  processes = [name for name, _, _ in PROCESS_FLAGS]
  flags = [a.dest for a in parser()._actions
           if a.dest not in ('help', 'config', *processes, *RETIRED)]
  assert sorted(flags) == sorted(all_settings())
  assert not set(RETIRED) & set(all_settings())  # read only to name the tag
  # the processes of a run are the command line's, not the Config's
  assert not set(processes) & set(all_settings())
  assert command_from_args(['--num_processes=2']).processes.num_processes == 2
  for entry in REGISTRY.values():  # every policy's own settings too
    assert {f.name for f in dataclasses.fields(entry.config)} <= set(flags)


def test_the_default_searches_a_space_of_several_configurations():
  cfg = command_from_args([]).config
  assert cfg.policy.policy == 'gumbel'
  assert cfg.search_space().size == 8
  assert cfg.policy.options == GumbelConfig()


def test_flags_override_the_preset_and_reach_their_group():
  assert PRESETS, 'experiments/configs/ holds no preset'
  cfg = command_from_args([f'--config={ROOT}/experiments/configs/'
                           'cross_silo.toml', '--rounds=3', '--lrs=0.05,0.5',
                           '--policy_scope=global', '--horizon=1']
                          ).config
  assert cfg.run.rounds == 3 and cfg.run.clients_per_round == 20
  assert cfg.space.lrs == (0.05, 0.5) and cfg.data.max_clients == 20
  assert cfg.policy.options.policy_scope == 'global'
  assert cfg.policy.options.horizon == 1


@pytest.mark.parametrize('preset', PRESETS, ids=lambda p: p.name)
def test_every_preset_is_a_valid_config(preset):
  cfg = command_from_args([f'--config={preset}']).config
  assert cfg != Config()


def test_a_preset_setting_in_the_wrong_group_names_both(tmp_path):
  preset = tmp_path / 'bad.toml'
  preset.write_text('[data]\nrounds = 5\n')
  with pytest.raises(ConfigError, match=r'`rounds` is not a setting of '
                     r'\[data\] but of \[run\]'):
    command_from_args([f'--config={preset}']).config


def test_choosing_another_policy_starts_from_its_defaults():
  cfg = override(Config(), {'policy_lr': '0.2'})
  assert cfg.policy.options.policy_lr == 0.2
  cfg = override(cfg, {'policy': 'fedex', 'baseline_decay': 1})
  assert cfg.policy.options == FedExConfig(baseline_decay=1.0)
  with pytest.raises(ConfigError,
                     match='only to reinforce, gumbel, gumbel_pop, pfedex'):
    override(cfg, {'policy_lr': 0.1})


@pytest.mark.parametrize('name,value,want', [
    ('lrs', '0.1, 0.3', (0.1, 0.3)), ('lrs', [0.1, 1], (0.1, 1.0)),
    ('max_clients', 'none', None), ('unroll', '1', True),
    ('unroll', 'false', False), ('seed', 7, 7)])
def test_settings_are_parsed_to_their_types(name, value, want):
  cfg = override(Config(), {name: value})
  group = next(g for g in ('data', 'space', 'run')
               if hasattr(getattr(cfg, g), name))
  assert getattr(getattr(cfg, group), name) == want


@pytest.mark.parametrize('name,value', [('seed', 1.5), ('rounds', True),
                                        ('local_steps', '1,x')])
def test_a_value_of_the_wrong_type_is_an_error(name, value):
  with pytest.raises(ConfigError, match=f'`{name}`='):
    override(Config(), {name: value})


def test_the_library_names_parameters_and_the_cli_spells_flags():
  message = '`lrs` holds 5, above `max_local_steps`=3; see `numpy`'
  assert flag_message(message) == \
      '--lrs holds 5, above --max_local_steps=3; see `numpy`'
  # No string of the library but a docstring spells a setting as a flag.
  pattern = re.compile(r'--(' + '|'.join(all_settings()) + r')\b')
  for path in (ROOT / 'src' / 'pfhpo').rglob('*.py'):
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef,
                                       ast.FunctionDef)) and node.body
                  and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
      if (isinstance(node, ast.Constant) and isinstance(node.value, str)
          and id(node) not in docstrings):
        assert not pattern.search(node.value), (path, node.value)


def _float_settings():
  """Every float setting a run or a comparison takes (alone, optional or a
  list), with the choice of policy or algorithm it belongs to."""
  floats = lambda kind: float in (kind, *typing.get_args(kind)) or any(
      float in typing.get_args(a) for a in typing.get_args(kind))
  own = own_settings()
  found = []
  for name, (kind, _, _) in all_settings().items():
    if floats(kind):
      choice = ({own[name][0]: next(iter(own[name][1]))} if name in own
                else {})
      found.append((name, choice))
  hints = typing.get_type_hints(CompareConfig)
  grid = [n for n, k in hints.items() if floats(k)]
  return found, grid


@pytest.mark.parametrize('value', ['inf', '-inf', 'nan'])
def test_every_float_setting_rejects_inf_and_nan(value):
  """Each is one ConfigError naming the setting, from its group's own
  check (a library user building the config gets it too), before any
  check of another setting."""
  found, grid = _float_settings()
  names = {n for n, _ in found}
  assert {'policy_lr', 'lrs', 'server_lr', 'ditto_lambda', 'credit_at',
          'noise_rate', 'algorithm_values'} <= names
  for name, choice in found:
    with pytest.raises(ConfigError, match=rf'`{name}` must be finite'):
      override(Config(), {**choice, name: value})
  assert grid == ['server_lrs', 'server_momenta', 'target_acc']
  for name in grid:
    one = float(value) if name == 'target_acc' else (0.5, float(value))
    with pytest.raises(ConfigError, match=f'`{name}` must be finite'):
      CompareConfig(**{name: one})


def test_the_command_lines_gumbel_is_the_librarys_default():
  """One set of defaults: `--policy=gumbel`'s settings are `gumbel`'s own
  and its credit's (`CreditSettings`, which `make_credit` defaults to)."""
  config, own = GumbelConfig(), inspect.signature(gumbel).parameters
  assert (config.policy_scope, config.prior_rate, config.policy_basis) == (
      own['scope'].default, own['prior_rate'].default, own['basis'].default)
  assert config.credit() == CreditSettings()
  credit = inspect.signature(make_credit).parameters
  assert CreditSettings() == CreditSettings(
      *(credit[name].default for name in CreditSettings._fields))
  assert credit_of('gumbel') == CreditSettings()
  assert credit_of('fedex') is None  # the round's own choice: none
