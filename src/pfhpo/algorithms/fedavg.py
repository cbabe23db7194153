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

from pfhpo.algorithms.registry import AlgorithmContext, register
from pfhpo.federated.client import ClientAlgorithm, sgd_client
from pfhpo.settings import checked


@checked
class FedAvgConfig:
  """FedAvg has no settings of its own."""


@register('fedavg', FedAvgConfig)
def _build(config: FedAvgConfig, context: AlgorithmContext) -> ClientAlgorithm:
  return sgd_client(context.sgd())
