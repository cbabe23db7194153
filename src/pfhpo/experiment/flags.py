"""The command line, generated from the config's settings.

Every setting of every group (`config.py`) and of every registered policy's
and algorithm's config is a flag of the same name, with the setting's help
line: a flag is written once, where its setting is. `--config=FILE` starts from a preset,
a TOML file whose tables are the groups,

    [space]
    lrs = [0.01, 0.03, 0.1, 0.3]
    [policy]
    policy = "gumbel"
    policy_scope = "client"

and flags given beside it override the preset. Library errors name settings
in backquotes; `flag_message` spells them as flags for the command line.
"""
from __future__ import annotations

import argparse
import re
import tomllib
import typing
from pathlib import Path
from typing import NamedTuple, Sequence

from pfhpo.distributed import Processes
from pfhpo.errors import ConfigError
from pfhpo.experiment.config import (GROUP_OF, GROUPS, Config, all_settings,
                                     override, own_settings)
from pfhpo.experiment.retired import RETIRED
from pfhpo.settings import require


class OneLineParser(argparse.ArgumentParser):
  """argparse whose errors are ConfigErrors: one line, exit 2."""

  def error(self, message):
    raise ConfigError(message)


# The processes of one run (`pfhpo.distributed`): flags of the command
# line, not settings of its Config.
PROCESS_FLAGS = (
    ('coordinator_address', str, 'host:port where process 0 serves the '
     'coordinator'),
    ('num_processes', int, 'how many processes run the round'),
    ('process_id', int, "this process's rank, 0 .. num_processes - 1"))


def parser() -> argparse.ArgumentParser:
  p = OneLineParser(description='Federated training with per-client '
              'hyper-parameters chosen by a policy.')
  p.add_argument('--config', default=argparse.SUPPRESS,
                 help='a preset (TOML, tables named after the groups) that '
                 'flags override; see experiments/configs/')
  sections = {g: p.add_argument_group(g) for g in GROUPS}
  processes = p.add_argument_group(
      'processes', 'one run over many processes (jax.distributed); unset '
      'flags fall back to JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, '
      'JAX_PROCESS_ID, or SLURM under srun')
  for name, kind, text in PROCESS_FLAGS:
    processes.add_argument(f'--{name}', type=kind, default=None,
                           metavar=name.upper(), help=text)
  for name in RETIRED:  # read, so that `override` names the tag
    p.add_argument(f'--{name}', default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS)
  own, settings = own_settings(), all_settings()
  names = _flag_names(settings)
  for name, (kind, default, text) in settings.items():
    if name in own:  # one line per distinct meaning and default
      group, per_choice = own[name]
      section = sections[group]
      users = {}
      for choice, f in per_choice.items():
        users.setdefault((f.metadata['help'], _shown(f.default)),
                         []).append(choice)
      text = '; '.join(f'{", ".join(p)}: {h} ({d})'
                       for (h, d), p in users.items())
    else:
      section = sections[GROUP_OF[name]]
      text = f'{text} ({_shown(default)})'
    boolean = bool in (kind, *typing.get_args(kind))
    section.add_argument(
        f'--{name}', default=argparse.SUPPRESS,
        help=_spelt(text, names).replace('%', '%%'),
        metavar='0|1' if boolean else name.upper(),
        nargs='?' if boolean else None, const='1' if boolean else None)
  return p


class Command(NamedTuple):
  """What `experiments/femnist.py`'s command line asks for."""
  config: Config
  processes: Processes


def _shown(default) -> str:
  if default is None:
    return 'default: unset'
  if isinstance(default, tuple):
    return 'default: ' + ','.join(map(str, default))
  return f'default: {default}'


# Tables of a preset that belong to another command than a single run:
# [compare] is experiments/compare.py's grid.
COMMAND_TABLES = ('compare',)


def load_preset(path: str) -> dict:
  """A preset file's settings, flat: {name: value}; its COMMAND_TABLES are
  left to their commands (`load_table`)."""
  return _settings(_tables(path), path)


def load_table(path: str, name: str) -> dict:
  """A preset's table `name` (one of COMMAND_TABLES) as it is; {} if none."""
  table = _tables(path).get(name, {})
  require(isinstance(table, dict), f'`config`={path}: [{name}] is not a table')
  return table


def _tables(path: str) -> dict:
  try:
    return tomllib.loads(Path(path).read_text())
  except OSError as e:
    raise ConfigError(f'cannot read `config`={path} ({e.strerror}); pass a '
                      f'preset file such as experiments/configs/*.toml') from None
  except tomllib.TOMLDecodeError as e:
    raise ConfigError(f'`config`={path} is not valid TOML ({e})') from None


def _settings(tables: dict, path: str) -> dict:
  values = {}
  own = own_settings()
  for group, table in tables.items():
    if group in COMMAND_TABLES:
      continue
    require(group in GROUPS and isinstance(table, dict),
            f'`config`={path}: [{group}] is not a group; use '
            f'{", ".join(GROUPS)}')
    for name, value in table.items():
      where = own[name][0] if name in own else GROUP_OF.get(name)
      require(where == group, f'`config`={path}: `{name}` is not a setting '
              f'of [{group}]' + (f' but of [{where}]' if where else ''))
      values[name] = value
  return values


def command_from_args(argv: Sequence[str] | None = None) -> Command:
  """The Config and the processes of `experiments/femnist.py`'s command
  line."""
  given = vars(parser().parse_args(argv))
  processes = Processes(**{name: given.pop(name)
                           for name, _, _ in PROCESS_FLAGS})
  preset = given.pop('config', None)
  cfg = Config() if preset is None else override(Config(), load_preset(preset))
  return Command(override(cfg, given), processes)


def flag_message(message: str, more: Sequence[str] = ()) -> str:
  """A library message with its `setting` names (and the `more` flags of
  another command) spelt as --flags."""
  return _spelt(message, _flag_names(all_settings(), more))


def _flag_names(settings, more: Sequence[str] = ()) -> set[str]:
  """The names a message may spell as flags: every setting, the retired
  ones, --config, the process flags and the `more` of another command."""
  return {*settings, *RETIRED, 'config', *(f[0] for f in PROCESS_FLAGS),
          *more}


def _spelt(message: str, names: set[str]) -> str:
  return re.sub(r'`(\w+)`', lambda m: f'--{m[1]}' if m[1] in names else m[0],
                message)
