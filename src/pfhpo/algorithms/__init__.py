"""Federated algorithms on the one round: FedAvg and the personalisation
algorithms, each a `ClientAlgorithm` (the client's side and its per-client
rows; `base.py`), chosen with `AlgorithmConfig.algorithm`."""
from __future__ import annotations

import dataclasses
import functools

import jax
import optax
from typing import Callable

from pfhpo.algorithms.base import ClientAlgorithm, ServerModel, repeat_rows
from pfhpo.algorithms.ditto import ditto
from pfhpo.algorithms.fedavg import fedavg
from pfhpo.algorithms.fedmeta import LEARNERS, META_SGD, fedmeta
from pfhpo.algorithms.fedrep import fedrep
from pfhpo.algorithms.mocha import mocha, mocha_server, mocha_server_model
from pfhpo.algorithms.per_fedavg import make_meta_steps, per_fedavg
from pfhpo.algorithms.pfedhn import pfedhn, pfedhn_server
from pfhpo.algorithms.reptile import reptile, reptile_server
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.models import Model
from pfhpo.settings import check_choice, require, setting

ALGORITHMS = ('fedavg', 'reptile', 'ditto', 'fedrep', 'fedmeta', 'per_fedavg',
              'pfedhn', 'mocha')
# Each algorithm's own settings; given to another algorithm, an error.
OWN = {'ditto_lambda': ('ditto',), 'body_steps': ('fedrep',),
       'meta_learner': ('fedmeta', 'per_fedavg'),
       'query_fraction': ('fedmeta',), 'meta_lr': ('per_fedavg',),
       'embed_dim': ('pfedhn',), 'embed_lr': ('pfedhn',),
       'reptile_start': ('reptile',), 'reptile_lr': ('reptile',),
       'mocha_lambda': ('mocha',)}
# Each algorithm's client-side setting that a policy may choose per client
# (`ClientHParams.tuned`): searched over `algorithm_values`, else its value.
TUNED = {'ditto': 'ditto_lambda', 'fedrep': 'body_steps',
         'fedmeta': 'query_fraction', 'per_fedavg': 'meta_lr',
         'pfedhn': 'embed_lr'}
# What a tuned setting's every value must be: (test, what it says).
VALID = {'ditto_lambda': (lambda v: v >= 0, '>= 0'),
         'body_steps': (lambda v: v == int(v) and v >= 1, 'an integer >= 1'),
         'query_fraction': (lambda v: 0 < v < 1, 'in (0, 1)'),
         'meta_lr': (lambda v: v > 0, '> 0'),
         'embed_lr': (lambda v: v > 0, '> 0')}


@dataclasses.dataclass(frozen=True)
class AlgorithmConfig:
  algorithm: str = setting('fedavg', ', '.join(ALGORITHMS) + ' (the client '
                           'side of the round; pfhpo.algorithms)')
  ditto_lambda: float = setting(
      0.1, "Ditto's pull of each personal model towards the global one")
  body_steps: int = setting(
      10, "FedRep's local steps on the body after the head's")
  meta_learner: str = setting(
      'maml', "FedMeta's inner learner: 'maml' (the meta-gradient through "
      "the inner loop), 'fomaml' (first order) or 'metasgd' (MAML with a "
      "learned per-parameter inner rate); Per-FedAvg's: 'maml' (its HF) or "
      "'fomaml' (its FO)")
  query_fraction: float = setting(
      0.5, "FedMeta: the fraction of a client's training examples in its "
      'query set')
  meta_lr: float = setting(
      0.1, "Per-FedAvg's outer step beta (its inner step is the client's "
      'learning rate)')
  embed_dim: int = setting(
      16, "pFedHN: the size of each client's embedding")
  embed_lr: float = setting(
      0.01, "pFedHN: the step of each client's embedding (the hypernetwork's "
      "is the server optimizer's)")
  reptile_start: int = setting(
      50, 'Personalised FedAvg: the server steps of FedAvg (weighted by '
      'examples, `server_opt`) before Reptile (uniform weights, Adam)')
  reptile_lr: float = setting(
      0.003, "Personalised FedAvg: the server's Adam step in its Reptile "
      'phase')
  mocha_lambda: float = setting(
      0.01, "MOCHA: the strength of the task-relationship coupling (an L2 "
      'penalty while the tasks look independent)')
  algorithm_values: tuple[float, ...] | None = setting(
      None, "values of the algorithm's own client setting for the policy to "
      'choose among per client, an axis of the search space: ' + ', '.join(
          f'{a}: {n}' for a, n in TUNED.items()) + ' (unset: that setting)')

  def __post_init__(self):
    check_choice('algorithm', self.algorithm, ALGORITHMS)
    for name, owners in OWN.items():
      field = self.__dataclass_fields__[name]
      require(self.algorithm in owners or getattr(self, name) == field.default,
              f'`{name}` applies only to `algorithm`={" or ".join(owners)}, '
              f'not {self.algorithm}; drop it.')
    for name, (valid, says) in VALID.items():
      require(valid(getattr(self, name)),
              f'`{name}` must be {says}, got {getattr(self, name)}')
    if self.algorithm_values is not None:
      name = TUNED.get(self.algorithm)
      require(name is not None, f'`algorithm`={self.algorithm} has no '
              'client setting to search (those that do: ' + ', '.join(
                  f'{a} ({n})' for a, n in TUNED.items()) +
              '); drop `algorithm_values`.')
      field = self.__dataclass_fields__[name]
      require(getattr(self, name) == field.default, f'give `{name}` or '
              f'`algorithm_values` (its values to search), not both.')
      values = self.algorithm_values
      require(len(values) > 0 and len(set(values)) == len(values),
              f'`algorithm_values` must list distinct values, got {values}')
      valid, says = VALID[name]
      require(all(valid(v) for v in values),
              f'`algorithm_values` are values of `{name}`, which must be '
              f'{says}; got {values}')
    check_choice('meta_learner', self.meta_learner,
                 LEARNERS if self.algorithm != 'per_fedavg' else LEARNERS[:2])
    require(self.embed_dim >= 1,
            f'`embed_dim` must be >= 1, got {self.embed_dim}')
    require(self.reptile_start >= 0,
            f'`reptile_start` must be >= 0, got {self.reptile_start}')
    require(self.mocha_lambda > 0,
            f'`mocha_lambda` must be > 0, got {self.mocha_lambda}')
    require(self.reptile_lr > 0,
            f'`reptile_lr` must be > 0, got {self.reptile_lr}')

  def tuned(self) -> tuple[tuple[float, ...], str]:
    """(values, name) of the search space's tuned axis (`make_space`):
    `algorithm_values` and its setting's name where searched, else the
    setting's one value (0 for an algorithm without one) and ''."""
    name = TUNED.get(self.algorithm)
    if self.algorithm_values is not None:
      return tuple(self.algorithm_values), name
    return (float(getattr(self, name)) if name else 0.0,), ''


def create(config: AlgorithmConfig, model: Model, features: Callable,
           max_steps: int, max_batch: int, momentum: float = 0.0,
           unroll: bool = False, track_alignment: bool = False,
           num_clients: int | None = None,
           clients_per_round: int | None = None) -> ClientAlgorithm:
  """The client side of `config.algorithm`, its local SGD compiled for
  `max_steps` steps of `max_batch` examples (`make_local_update`); MOCHA,
  whose server holds a row per client, needs the federation's
  `num_clients` and the round's `clients_per_round`."""
  sgd = functools.partial(make_local_update, model, features, max_steps,
                          max_batch, momentum, unroll, track_alignment)
  name = config.algorithm
  if name == 'ditto':
    return ditto(sgd)
  if name == 'mocha':
    return mocha(sgd, jax.eval_shape(model.init, jax.random.PRNGKey(0)),
                 config.mocha_lambda, num_clients, clients_per_round)
  if name == 'fedrep':
    most = int(max(config.tuned()[0]))
    require(most <= max_steps,
            f"FedRep's {most} body steps (`body_steps`) exceed the "
            f'{max_steps} local steps the round is compiled for; raise '
            '`max_local_steps`.')
    return fedrep(sgd, model.head)
  if name == 'fedmeta':
    return fedmeta(sgd, make_masked_loss(model, features), config.meta_learner)
  if name == 'pfedhn':
    return pfedhn(sgd, jax.eval_shape(model.init, jax.random.PRNGKey(0)),
                  config.embed_dim)
  if name == 'reptile':
    return reptile(sgd, config.reptile_start)
  if name == 'per_fedavg':
    return per_fedavg(sgd, make_meta_steps(
        model, features, max_steps, max_batch, config.meta_learner))
  return fedavg(sgd)


def server_optimizer(config: AlgorithmConfig,
                     server_opt: optax.GradientTransformation,
                     clients_per_round: int | None = None
                     ) -> optax.GradientTransformation:
  """The server optimizer of `config.algorithm`, given the run's
  `server_opt`: Reptile's phases (`reptile_server`), MOCHA's closed-form
  step (`mocha_server`), else `server_opt`."""
  if config.algorithm == 'mocha':
    return mocha_server(clients_per_round)
  if config.algorithm == 'reptile':
    return reptile_server(server_opt, config.reptile_start, config.reptile_lr)
  return server_opt


def server_model(config: AlgorithmConfig, params_like,
                 num_clients: int | None = None) -> ServerModel:
  """What the server of `config.algorithm` learns (`ServerModel`) for a
  model shaped like `params_like` (and a federation of `num_clients`, for
  MOCHA), without building the algorithm (a policy that needs its shapes
  is built first)."""
  if config.algorithm == 'mocha':
    return mocha_server_model(params_like, num_clients)
  if config.algorithm == 'pfedhn':
    return pfedhn_server(params_like, config.embed_dim)
  is_meta_sgd = config.algorithm == 'fedmeta' and config.meta_learner == 'metasgd'
  return META_SGD if is_meta_sgd else ServerModel()


__all__ = ['ALGORITHMS', 'TUNED', 'AlgorithmConfig', 'ClientAlgorithm', 'ServerModel',
           'create', 'server_model', 'server_optimizer', 'pfedhn', 'reptile',
           'mocha',
           'ditto', 'fedavg', 'fedmeta', 'fedrep', 'per_fedavg', 'repeat_rows']
