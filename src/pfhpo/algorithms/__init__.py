"""Federated algorithms on the one round: FedAvg and the personalisation
algorithms, each a `ClientAlgorithm` (the client's side and its per-client
rows; `base.py`), chosen with `AlgorithmConfig.algorithm`."""
from __future__ import annotations

import dataclasses
import functools

import jax
from typing import Callable

from pfhpo.algorithms.base import ClientAlgorithm, ServerModel, repeat_rows
from pfhpo.algorithms.ditto import ditto
from pfhpo.algorithms.fedavg import fedavg
from pfhpo.algorithms.fedmeta import LEARNERS, META_SGD, fedmeta
from pfhpo.algorithms.fedrep import fedrep
from pfhpo.algorithms.per_fedavg import make_meta_steps, per_fedavg
from pfhpo.algorithms.pfedhn import pfedhn, pfedhn_server
from pfhpo.federated.local_update import make_local_update, make_masked_loss
from pfhpo.models import Model
from pfhpo.settings import check_choice, require, setting

ALGORITHMS = ('fedavg', 'ditto', 'fedrep', 'fedmeta', 'per_fedavg', 'pfedhn')
# Each algorithm's own settings; given to another algorithm, an error.
OWN = {'ditto_lambda': ('ditto',), 'body_steps': ('fedrep',),
       'meta_learner': ('fedmeta', 'per_fedavg'),
       'query_fraction': ('fedmeta',), 'meta_lr': ('per_fedavg',),
       'embed_dim': ('pfedhn',), 'embed_lr': ('pfedhn',)}


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

  def __post_init__(self):
    check_choice('algorithm', self.algorithm, ALGORITHMS)
    for name, owners in OWN.items():
      field = self.__dataclass_fields__[name]
      require(self.algorithm in owners or getattr(self, name) == field.default,
              f'`{name}` applies only to `algorithm`={" or ".join(owners)}, '
              f'not {self.algorithm}; drop it.')
    require(self.ditto_lambda >= 0,
            f'`ditto_lambda` must be >= 0, got {self.ditto_lambda}')
    require(self.body_steps >= 1,
            f'`body_steps` must be >= 1, got {self.body_steps}')
    check_choice('meta_learner', self.meta_learner,
                 LEARNERS if self.algorithm != 'per_fedavg' else LEARNERS[:2])
    require(self.meta_lr > 0, f'`meta_lr` must be > 0, got {self.meta_lr}')
    require(self.embed_dim >= 1,
            f'`embed_dim` must be >= 1, got {self.embed_dim}')
    require(self.embed_lr > 0, f'`embed_lr` must be > 0, got {self.embed_lr}')
    require(0 < self.query_fraction < 1, '`query_fraction` must be in (0, 1), '
            f'got {self.query_fraction}')


def create(config: AlgorithmConfig, model: Model, features: Callable,
           max_steps: int, max_batch: int, momentum: float = 0.0,
           unroll: bool = False,
           track_alignment: bool = False) -> ClientAlgorithm:
  """The client side of `config.algorithm`, its local SGD compiled for
  `max_steps` steps of `max_batch` examples (`make_local_update`)."""
  sgd = functools.partial(make_local_update, model, features, max_steps,
                          max_batch, momentum, unroll, track_alignment)
  name = config.algorithm
  if name == 'ditto':
    return ditto(sgd, config.ditto_lambda)
  if name == 'fedrep':
    require(config.body_steps <= max_steps,
            f'`body_steps`={config.body_steps} exceeds the {max_steps} local '
            f'steps the round is compiled for; raise `max_local_steps`.')
    return fedrep(sgd, model.head, config.body_steps)
  if name == 'fedmeta':
    return fedmeta(sgd, make_masked_loss(model, features), config.meta_learner,
                   config.query_fraction)
  if name == 'pfedhn':
    return pfedhn(sgd, jax.eval_shape(model.init, jax.random.PRNGKey(0)),
                  config.embed_dim, config.embed_lr)
  if name == 'per_fedavg':
    return per_fedavg(sgd, make_meta_steps(
        model, features, max_steps, max_batch, config.meta_learner,
        config.meta_lr))
  return fedavg(sgd)


def server_model(config: AlgorithmConfig, params_like) -> ServerModel:
  """What the server of `config.algorithm` learns (`ServerModel`) for a
  model shaped like `params_like`, without building the algorithm (a
  policy that needs its shapes is built first)."""
  if config.algorithm == 'pfedhn':
    return pfedhn_server(params_like, config.embed_dim)
  is_meta_sgd = config.algorithm == 'fedmeta' and config.meta_learner == 'metasgd'
  return META_SGD if is_meta_sgd else ServerModel()


__all__ = ['ALGORITHMS', 'AlgorithmConfig', 'ClientAlgorithm', 'ServerModel',
           'create', 'server_model', 'pfedhn',
           'ditto', 'fedavg', 'fedmeta', 'fedrep', 'per_fedavg', 'repeat_rows']
