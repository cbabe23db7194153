"""FedAvg's client, and fine-tuning as its personalisation.

Communication-Efficient Learning of Deep Networks from Decentralized Data.
  H. B. McMahan et al. AISTATS 2017. https://arxiv.org/abs/1602.05629

    theta_i = LocalSGD(theta; lr_i, steps_i, batch_i)

and a client's personal model is the final global model fine-tuned on its
own training data with the configuration its policy prefers (FedAvg + local
fine-tuning, Wang et al. 2019, "Federated Evaluation of On-device
Personalization"; the "refine" evaluation of Khodak et al., NeurIPS 2021).
It keeps no per-client state.
"""
from __future__ import annotations

from typing import Callable

from pfhpo.algorithms.base import ClientAlgorithm
from pfhpo.types import ClientHParams


def fedavg(sgd: Callable) -> ClientAlgorithm:
  """`sgd(trainable=None)` -> `make_local_update`'s local update."""
  train = sgd()

  def personal(theta, row, x, y, count, hp: ClientHParams, key):
    return train(theta, x, y, count, *hp.sgd, key)[0]

  def local(theta, row, x, y, count, hp: ClientHParams, key):
    params, stats = train(theta, x, y, count, *hp.sgd, key)
    return params, row, stats, params

  return ClientAlgorithm('fedavg', lambda params, num_clients: (), local,
                         personal)
