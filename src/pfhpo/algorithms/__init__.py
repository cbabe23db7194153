"""Federated algorithms on the one round: FedAvg and the personalisation
algorithms, each a `ClientAlgorithm` (the client's side and its per-client
rows; `pfhpo.federated.client`) registered by name with its own config
(`registry.py`); the run chooses one with `--algorithm`."""
# Imported in the order the registry lists them (help, error messages).
from pfhpo.algorithms.fedavg import FedAvgConfig, fedavg
from pfhpo.algorithms.reptile import ReptileConfig, reptile, reptile_server
from pfhpo.algorithms.ditto import DittoConfig, ditto
from pfhpo.algorithms.fedrep import FedRepConfig, fedrep
from pfhpo.algorithms.fedmeta import FedMetaConfig, fedmeta
from pfhpo.algorithms.per_fedavg import PerFedAvgConfig, per_fedavg
from pfhpo.algorithms.pfedhn import PFedHNConfig, pfedhn
from pfhpo.algorithms.mocha import MochaConfig, mocha
from pfhpo.algorithms.registry import (REGISTRY, AlgorithmContext, create,
                                       entry, server_model, server_optimizer)

__all__ = [
    'REGISTRY', 'AlgorithmContext', 'DittoConfig', 'FedAvgConfig',
    'FedMetaConfig', 'FedRepConfig', 'MochaConfig', 'PFedHNConfig',
    'PerFedAvgConfig', 'ReptileConfig', 'create', 'ditto', 'entry', 'fedavg', 'fedmeta',
    'fedrep', 'mocha', 'per_fedavg', 'pfedhn', 'reptile', 'reptile_server',
    'server_model', 'server_optimizer']
