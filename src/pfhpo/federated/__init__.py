"""Federated training: the local update, the aggregation with coefficients,
the sharded client axis, and the one compiled round (`make_round`; FedAvg
as `pfhpo.algorithms.fedavg`)."""
from pfhpo.federated.client_rows import put_rows, take_rows
from pfhpo.federated.round import Execution, FederatedAlgorithm, make_round
from pfhpo.federated.server import SERVER_OPTS, server_optimizer
from pfhpo.federated.sharding import client_mesh

__all__ = ['SERVER_OPTS', 'Execution', 'FederatedAlgorithm', 'client_mesh',
           'make_round', 'put_rows', 'server_optimizer', 'take_rows']
