"""The seven groups of a run's settings, each checked where it lives.

Every group is a frozen dataclass of `setting`s (`pfhpo.settings.checked`)
that checks its own values when it is made; what one group's setting means
for another's is checked by the whole `Config` (`config.py`), and what
needs the data (clients per round against the federation, batches against
the clients' sizes) when the run is built (`setup.py`). The policy and
algorithm groups hold the chosen policy's and algorithm's own config
(`pfhpo.policies.registry`, `pfhpo.algorithms.registry`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

from pfhpo import algorithms
from pfhpo import data as datasets
from pfhpo import convolution, models
from pfhpo.data.batches import VAL_SOURCES
from pfhpo.data.groups import check_groups
from pfhpo.errors import ConfigError
from pfhpo.federated.server import server_optimizer
from pfhpo.policies import registry
from pfhpo.policies.space import SearchSpace, make_space
from pfhpo.settings import (check_choice, checked, default_of, require,
                            setting)


@checked
class DataConfig:
  dataset: str = setting('fashion_mnist', ', '.join(datasets.DATASETS) +
                         ', or tfds:NAME (a TFDS image set prepared in '
                         '`data_dir`)')
  data_dir: str | None = setting(
      None, 'directory that already holds the data set files')
  max_clients: int | None = setting(
      None, 'keep only the first N clients (quick runs)')
  alpha: float | None = setting(
      None, "Dirichlet concentration of the clients' label skew, smaller "
      'is more skewed (digits, fashion_mnist; unset: 0.5)')
  val_source: str = setting(
      'server', "'server' (a held-out set drawn from the clients' validation "
      "splits) or 'federated' (the round's clients' own splits)")
  val_size: int = setting(1000, 'examples in the server validation set')
  noisy_fraction: float = setting(
      0.0, 'fraction of clients whose training labels are noisy '
      '(pfhpo.data.groups)')
  noise_rate: float = setting(
      0.8, "fraction of a noisy client's training labels flipped to another "
      'class')
  noise_kind: str = setting(
      'symmetric', "'symmetric' (to any other class) or 'pair' (to the "
      'next class)')
  few_fraction: float = setting(
      0.0, 'fraction of clients that keep only `few_examples` training '
      'examples')
  few_examples: int = setting(16, "a 'few' client's training examples")

  def __post_init__(self):
    datasets.check_dataset(self.dataset)
    if self.alpha is not None:
      require(datasets.label_skewed(self.dataset),
              f'`alpha` does not apply to `dataset`={self.dataset} (its '
              'clients are its own); drop it.')
      require(self.alpha > 0, f'`alpha` must be > 0, got {self.alpha}')
    check_groups(self.noisy_fraction, self.noise_rate, self.few_fraction,
                 self.few_examples, self.noise_kind)
    require(not (self.noisy_fraction and self.dataset in datasets.SEQUENCES),
            f'`noisy_fraction` flips class labels, and `dataset`='
            f'{self.dataset} has next characters; drop it.')
    check_choice('val_source', self.val_source, VAL_SOURCES)
    require(self.val_size >= 1, f'`val_size` must be >= 1, got {self.val_size}')
    require(self.max_clients is None or self.max_clients >= 1,
            f'`max_clients` must be >= 1, got {self.max_clients}')


@checked
class ModelConfig:
  model: str = setting('conv', ', '.join(models.MODELS) +
                       ' (conv: the FEMNIST CNN)')
  conv_impl: str | None = setting(
      None, "'patches' or 'lax' (unset: patches on CPU, lax elsewhere)")

  def __post_init__(self):
    check_choice('model', self.model, models.MODELS)
    if self.conv_impl is not None:
      check_choice('conv_impl', self.conv_impl, convolution.CONV_IMPLS)


@checked
class SpaceConfig:
  """The search space: the Cartesian product of the three lists."""
  lrs: tuple[float, ...] = setting((0.01, 0.03, 0.1, 0.3),
                                   'client learning rates')
  local_steps: tuple[int, ...] = setting((1, 10), 'local SGD steps')
  batch_sizes: tuple[int, ...] = setting((16,), 'local batch sizes')
  max_local_steps: int | None = setting(
      None, 'the most local steps the round is compiled for (unset: the '
      'largest of `local_steps`)')
  max_batch_size: int | None = setting(
      None, 'the largest batch the round is compiled for (unset: the largest '
      'of `batch_sizes`)')
  momentum: float = setting(0.0, 'client SGD momentum (not searched)')

  def __post_init__(self):
    self.space()
    require(0 <= self.momentum < 1,
            f'`momentum` must be in [0, 1), got {self.momentum}')

  def space(self, tuned: tuple[tuple[float, ...], str] = ((0.0,), '')
            ) -> SearchSpace:
    """The space, with the algorithm's tuned axis (values, name:
    `AlgorithmConfig.tuned`)."""
    return make_space(self.lrs, self.local_steps, self.batch_sizes,
                      self.max_local_steps, self.max_batch_size, *tuned)


@checked
class ServerConfig:
  server_opt: str = setting('sgd', 'sgd (FedAvg), momentum (FedAvgM), adam '
                            '(FedAdam)')
  server_lr: float = setting(1.0, 'server learning rate')
  server_momentum: float | None = setting(
      None, 'server momentum of sgd or momentum (unset: 0 for sgd, 0.9 for '
      'momentum)')

  def __post_init__(self):
    self.optimizer()

  def optimizer(self, injected: bool = False):
    """The server's optax optimizer (`injected`: its hyper-parameters in
    its state, for a policy that sets them: `server_optimizer`)."""
    return server_optimizer(self.server_opt, self.server_lr,
                            self.server_momentum, injected)


@checked
class AlgorithmConfig:
  """The algorithm's name, its own settings (None: that algorithm's
  defaults), and the values of its tuned setting to search."""
  algorithm: str = setting('fedavg', ', '.join(algorithms.REGISTRY) +
                           ' (the client side of the round; '
                           'pfhpo.algorithms)')
  options: Any = None
  algorithm_values: tuple[float, ...] | None = setting(
      None, "values of the algorithm's own client setting for the policy to "
      'choose among per client, an axis of the search space: ' + ', '.join(
          f'{a}: {e.tuned}' for a, e in algorithms.REGISTRY.items()
          if e.tuned) + ' (unset: that setting)')

  def __post_init__(self):
    spec = _with_options(self, 'algorithm', algorithms.entry)
    name = spec.tuned
    if self.algorithm_values is None:
      return
    require(name is not None, f'`algorithm`={self.algorithm} has no client '
            'setting to search (those that do: ' + ', '.join(
                f'{a} ({e.tuned})' for a, e in algorithms.REGISTRY.items()
                if e.tuned) + '); drop `algorithm_values`.')
    require(getattr(self.options, name) == default_of(spec.config, name),
            f'give `{name}` or `algorithm_values` (its values to search), '
            'not both.')
    values = self.algorithm_values
    require(len(values) > 0 and len(set(values)) == len(values),
            f'`algorithm_values` must list distinct values, got {values}')
    for v in values:
      try:
        dataclasses.replace(self.options, **{name: v})
      except ConfigError as e:
        raise ConfigError(f'`algorithm_values` are values of `{name}`: '
                          f'{e}') from None

  def tuned(self) -> tuple[tuple[float, ...], str]:
    """(values, name) of the search space's tuned axis (`make_space`):
    `algorithm_values` and its setting's name where searched, else the
    setting's one value (0 for an algorithm without one) and ''."""
    name = algorithms.entry(self.algorithm).tuned
    if self.algorithm_values is not None:
      return tuple(self.algorithm_values), name
    return (float(getattr(self.options, name)) if name else 0.0,), ''


def _with_options(group, key: str, entry):
  """The registry entry of the choice `group.<key>`, with the group's
  `options` set to its defaults where unset and checked to be its config."""
  name = getattr(group, key)
  spec = entry(name)
  if group.options is None:
    object.__setattr__(group, 'options', spec.config())
  require(isinstance(group.options, spec.config),
          f'`{key}`={name} takes a {spec.config.__name__}, got '
          f'{type(group.options).__name__}')
  return spec


@checked
class PolicyConfig:
  """The policy's name and its own settings (None: that policy's defaults)."""
  policy: str = setting('gumbel', ', '.join(registry.REGISTRY))
  options: Any = None

  def __post_init__(self):
    _with_options(self, 'policy', registry.entry)


@checked
class RunConfig:
  rounds: int = setting(30, 'rounds to run')
  clients_per_round: int = setting(10, 'clients sampled per round')
  holdout_fraction: float = setting(
      0.0, 'fraction of the clients never sampled for a round (drawn from '
      'the seed): their personal accuracy shows how the policy fares on '
      'clients it never saw')
  eval_every: int = setting(5, 'evaluate every N rounds (and at the last)')
  eval_chunk: int = setting(512, 'examples per evaluation step')
  client_chunk: int | None = setting(
      None, 'clients trained side by side (unset: on CPU 1 for the '
      'convolutional models, whose lone clients skip the steps past their '
      'own, and 2 for the others; all elsewhere)')
  recompute_clients: bool | None = setting(
      None, "train each group of `client_chunk` clients again in the "
      "credit's backward pass instead of keeping every client's update: "
      'device memory that does not grow with the clients per round, for '
      "twice the clients' compute (unset: when those updates would take "
      'more than 1 GiB a device)')
  unroll: bool | None = setting(
      None, 'unroll the local-step loop (unset: only for lax convolutions '
      'on CPU)')
  seed: int = setting(0, 'seed of everything: data split, model, sampling')
  out_dir: str | None = setting(
      None, 'where results go, never overwritten (unset: '
      'runs/<dataset>-<policy>-<time>)')
  checkpoint_every: int = setting(
      50, 'save the whole run state every N rounds (0: only at the end)')
  resume: bool = setting(
      False, 'continue the run in `out_dir` from its last checkpoint')
  stall_rounds: int = setting(
      5, 'stop the run (checkpoint, summary, exit status 3) after this many '
      'rounds in a row in which the server model did not move: every '
      'client diverged or the aggregate was rejected (0: never stop)')

  def __post_init__(self):
    for name in ('rounds', 'clients_per_round', 'eval_every', 'eval_chunk'):
      value = getattr(self, name)
      require(value >= 1, f'`{name}` must be >= 1, got {value}')
    require(0 <= self.holdout_fraction < 1, '`holdout_fraction` must be in '
            f'[0, 1), got {self.holdout_fraction}')
    require(self.client_chunk is None or self.client_chunk >= 1,
            f'`client_chunk` must be >= 1, got {self.client_chunk}')
    for name in ('checkpoint_every', 'stall_rounds'):
      value = getattr(self, name)
      require(value >= 0, f'`{name}` must be >= 0, got {value}')
    require(0 <= self.seed < 2**32,
            f'`seed` must be in [0, 2**32), got {self.seed}')
    require(not self.resume or self.out_dir is not None,
            '`resume` needs the `out_dir` of the run to continue')
