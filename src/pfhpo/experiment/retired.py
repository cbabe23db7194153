"""Settings the method's ablations retired: each is a one-line error that
names the git tag where it still runs.

An ablation is measured, written up in docs/ablations.md, and then leaves
the core; the tag keeps every retired variant runnable with the command
its row in docs/ablations.md gives.
"""
from __future__ import annotations

from typing import Any, Mapping

from pfhpo.settings import require

TAG = 'ablations-2026-12'

# setting -> what it chose, for the message
RETIRED = {
    'credit': "the credit's form (its 'params' form)",
    'credit_normalize': 'unnormalised credits',
    'baseline_scope': "a running baseline of gumbel's credits",
    'entropy_weight': 'an entropy bonus in the score update',
    'credit_examples': 'the credit on a sample of the validation set',
    'local_start': "where FedPop's client slots start",
}
# a setting retired from one policy that another still has -> that policy
RETIRED_FROM = {'baseline_decay': 'gumbel'}
# a setting's retired values
RETIRED_VALUES = {'policy_scope': ('shared',)}


def check_retired(values: Mapping[str, Any], policy: str,
                  where: str = '') -> None:
  """A ConfigError naming the tag if the flat settings `values` of a run of
  `policy` hold a retired setting or value (`where`: the message's
  prefix)."""
  for name, value in values.items():
    value = str(value)
    gone = (name in RETIRED or RETIRED_FROM.get(name) == policy
            or value in RETIRED_VALUES.get(name, ()))
    what = f'`{name}`={value}' if name in RETIRED_VALUES else f'`{name}`'
    require(not gone, f'{where}{what} was retired after its ablation '
            f'(docs/ablations.md); it still runs at the git tag {TAG} '
            f'(`git checkout {TAG}`)')
