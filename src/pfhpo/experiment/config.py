"""A run's configuration: seven groups of settings, each checked where it lives.

    Config(data=DataConfig(...), model=ModelConfig(...), space=SpaceConfig(...),
           server=ServerConfig(...), algorithm=AlgorithmConfig(...),
           policy=PolicyConfig(...), run=RunConfig(...))

Every group is a frozen dataclass of `setting`s that checks its own values
when it is made; what needs the data (clients per round against the
federation, batches against the clients' sizes) is checked when the run is
built (`setup.py`). A setting's name is unique across the groups and is its
command-line flag's name; the policy group holds the chosen policy's own
config (`pfhpo.policies.registry`). `override` applies flat `{name: value}`
settings (from flags, a preset file or a script) with their types checked.
The defaults are the embedded offline demo: the project's method (`gumbel`)
over eight configurations on Fashion-MNIST writers.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from pfhpo import data as datasets
from pfhpo import models
from pfhpo.algorithms import AlgorithmConfig
from pfhpo.data.batches import VAL_SOURCES
from pfhpo.data.groups import check_groups
from pfhpo.federated.server import server_optimizer
from pfhpo.policies import registry
from pfhpo.policies.space import SearchSpace, make_space
from pfhpo.settings import check_choice, coerce, require, setting


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  model: str = setting('conv', ', '.join(models.MODELS) +
                       ' (conv: the FEMNIST CNN)')
  conv_impl: str | None = setting(
      None, "'patches' or 'lax' (unset: patches on CPU, lax elsewhere)")

  def __post_init__(self):
    check_choice('model', self.model, models.MODELS)
    if self.conv_impl is not None:
      check_choice('conv_impl', self.conv_impl, models.CONV_IMPLS)


@dataclasses.dataclass(frozen=True)
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


@dataclasses.dataclass(frozen=True)
class ServerConfig:
  server_opt: str = setting('sgd', 'sgd (FedAvg), momentum (FedAvgM), adam '
                            '(FedAdam)')
  server_lr: float = setting(1.0, 'server learning rate')

  def __post_init__(self):
    self.optimizer()

  def optimizer(self):
    return server_optimizer(self.server_opt, self.server_lr)


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
  """The policy's name and its own settings (None: that policy's defaults)."""
  policy: str = setting('gumbel', ', '.join(registry.REGISTRY))
  options: Any = None

  def __post_init__(self):
    entry = registry.entry(self.policy)
    if self.options is None:
      object.__setattr__(self, 'options', entry.config())
    require(isinstance(self.options, entry.config),
            f'`policy`={self.policy} takes a {entry.config.__name__}, got '
            f'{type(self.options).__name__}')


@dataclasses.dataclass(frozen=True)
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
      None, 'clients trained side by side (unset: 2 on CPU, all elsewhere)')
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


@dataclasses.dataclass(frozen=True)
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
    algorithm, model = self.algorithm.algorithm, self.model.model
    require(algorithm != 'mocha' or model == 'logreg', 'mocha learns convex '
            f'per-client models: use `model`=logreg, not {model}.')
    require(algorithm != 'fedrep' or model != 'logreg', 'fedrep trains a body '
            'below the head, and `model`=logreg has none; use mlp or conv.')
    dataset = self.data.dataset
    if dataset in datasets.SEQUENCES:
      require(model in models.SEQUENCE_MODELS, f'`dataset`={dataset} holds '
              f'character sequences: use `model`=lstm, not {model}.')
    else:
      require(model not in models.SEQUENCE_MODELS, f'`model`={model} reads '
              f'character sequences: use it with `dataset`=shakespeare.')
    require(algorithm != 'mocha' or self.server == ServerConfig(),
            "mocha's server step is its own closed form; drop `server_opt` "
            'and `server_lr`.')

  def search_space(self) -> SearchSpace:
    """The client configurations the policy chooses among: the space
    group's axes and the algorithm's tuned setting."""
    return self.space.space(self.algorithm.tuned())


GROUPS = tuple(f.name for f in dataclasses.fields(Config))
# Every setting of every group but the policy's options: its group's name.
GROUP_OF = {f.name: group for group, cls in typing.get_type_hints(
    Config).items() for f in dataclasses.fields(cls) if f.name != 'options'}


def policy_settings() -> dict[str, dict[str, dataclasses.Field]]:
  """{setting name: {policy name: its field}} over every registered policy."""
  found: dict[str, dict[str, dataclasses.Field]] = {}
  for name, entry in registry.REGISTRY.items():
    for f in dataclasses.fields(entry.config):
      found.setdefault(f.name, {})[name] = f
  return found


def all_settings() -> dict[str, tuple[type, Any, str]]:
  """{name: (type, default, help)} of every setting a run can be given; a
  policy setting's default and help are per policy, so they are None."""
  out = {}
  for group, cls in typing.get_type_hints(Config).items():
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
      if f.name != 'options':
        out[f.name] = (hints[f.name], f.default, f.metadata['help'])
  for name, per_policy in policy_settings().items():
    cls = registry.REGISTRY[next(iter(per_policy))].config
    out[name] = (typing.get_type_hints(cls)[name], None, None)
  return out


def override(cfg: Config, values: Mapping[str, Any]) -> Config:
  """`cfg` with the flat settings `values` ({name: value}; strings are
  parsed) replaced. Choosing another policy starts from its defaults."""
  values = dict(values)
  kinds = all_settings()
  for name in values:
    require(name in kinds, f'unknown setting `{name}`')
  values = {k: coerce(v, kinds[k][0], k) for k, v in values.items()}
  name = values.pop('policy', cfg.policy.policy)
  own = {f.name for f in dataclasses.fields(registry.entry(name).config)}
  shared = policy_settings()
  options = {k: values.pop(k) for k in list(values) if k in shared}
  for k in options:
    require(k in own, f'`{k}` does not apply to `policy`={name} (only to '
            f'{", ".join(shared[k])}); drop it.')
  base = cfg.policy.options if name == cfg.policy.policy else None
  policy = PolicyConfig(name, dataclasses.replace(
      base or registry.entry(name).config(), **options))
  groups = {g: {k: v for k, v in values.items() if GROUP_OF[k] == g}
            for g in GROUPS}
  return dataclasses.replace(cfg, policy=policy, **{
      g: dataclasses.replace(getattr(cfg, g), **v)
      for g, v in groups.items() if v and g != 'policy'})
