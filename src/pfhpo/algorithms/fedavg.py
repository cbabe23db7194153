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


def fedavg(sgd: Callable) -> ClientAlgorithm:
  """`sgd(trainable=None)` -> `make_local_update`'s local update."""
  train = sgd()

  def local(theta, row, *config):
    params, stats = train(theta, *config)
    return params, row, stats, params

  return ClientAlgorithm('fedavg', lambda params, num_clients: (), local,
                         lambda theta, row, *config: train(theta, *config)[0])
