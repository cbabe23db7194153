"""FedAvg's client, and fine-tuning as its personalisation.

Communication-Efficient Learning of Deep Networks from Decentralized Data.
  H. B. McMahan et al. AISTATS 2017. https://arxiv.org/abs/1602.05629

    theta_i = LocalSGD(theta; lr_i, steps_i, batch_i)

and a client's personal model is the final global model fine-tuned on its
own training data with the configuration its policy prefers (FedAvg + local
fine-tuning, Wang et al. 2019, "Federated Evaluation of On-device
Personalization"; the "refine" evaluation of Khodak et al., NeurIPS 2021).
It keeps no per-client state. `fedavg` is the round with every client on
one configuration, the form that checks ours against fedjax's FedAvg.
"""
from __future__ import annotations

from typing import Callable

import optax

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm, sgd_client
from pfhpo.federated.local_update import make_local_update
from pfhpo.federated.round import Execution, FederatedAlgorithm, make_round
from pfhpo.models import Model
from pfhpo.policies.fixed import static
from pfhpo.policies.space import make_space
from pfhpo.settings import checked


@checked
class FedAvgConfig:
  """FedAvg has no settings of its own."""


@register('fedavg', FedAvgConfig)
def _build(config: FedAvgConfig, context: AlgorithmContext) -> ClientAlgorithm:
  return sgd_client(context.sgd())


def fedavg(model: Model, features: Callable,
           server_opt: optax.GradientTransformation, lr: float,
           local_steps: int, batch_size: int, momentum: float = 0.0,
           unroll: bool = False,
           execution: Execution = Execution()) -> FederatedAlgorithm:
  """FedAvg (FedAvgM, FedAdam with their server optimizers): the round with
  every client on one configuration, local SGD with heavy-ball `momentum`
  (its loop unrolled where `unroll`), run as `execution` says."""
  space = make_space([lr], [local_steps], [batch_size])
  return make_round(model, features, server_opt, space, static(space),
                    client=sgd_client(make_local_update(
                        model, features, local_steps, batch_size, momentum,
                        unroll)), execution=execution)
