"""What a federated algorithm does on a client, as pure functions: the
interface the round consumes, and its own client (local SGD, FedAvg's).

The one round (`pfhpo.federated.round`) trains the round's clients side by
side, aggregates theta_g(c) = theta + sum_i w_i c_i (theta_i - theta) and
takes the credit dL/dc through that aggregation for every algorithm. What
differs between FedAvg and the personalisation algorithms is the client's
side, and the per-client state it keeps between rounds (a row of the
host-resident table, `pfhpo.federated.client_rows`):

    init_rows(params, C)  -> table          numpy [C, ...] per leaf; () if none
    local(theta, row, x, y, count, hp, key)
                          -> (theta_i, row', LocalStats, own_i)
    personalize(theta, row, x, y, count, hp, key)
                          -> the client's personal model

`theta_i` is what the client sends: the round aggregates theta_i - theta
(a FedRep client sends the server's head back unchanged, so only its body
is averaged); `own_i` is the model the client holds after the round (its
personal model; theta_i for FedAvg), whose loss on the client's own
validation split is what FedEx learns from. `personalize` is the model a
client is tested with for personalised accuracy, given the configuration
its policy prefers. The hyper-parameters `hp` (a `ClientHParams` of
scalars: lr, steps, batch, and the algorithm's own tuned setting, such as
Ditto's lambda) are the client's configuration, chosen by the policy, so
every policy tunes every algorithm.

The round aggregates with weights w_i = D_i / D, or the algorithm's own
(`ClientAlgorithm.weights`: Reptile's are uniform once its FedAvg phase
is over). What the server learns is the model's parameters, or more
(`ServerModel`: Meta-SGD's server also learns per-parameter inner
learning rates); theta above is that pytree, and `ServerModel.model`
reads the global model out of it for validation and evaluation.

The algorithms (`pfhpo.algorithms`) implement this interface and register
themselves by name; the round needs no more than `sgd_client`, the client
of FedAvg, whose module adds its personalisation's reading and citation.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax

from pfhpo.federated.client_rows import ClientTable
from pfhpo.types import ClientHParams


def _same(params):
  return params


def _own(key, params):
  return params


class ServerModel(NamedTuple):
  """init: (key, the model's initial parameters) -> the server's; model:
  the server's -> the global model's parameters."""
  init: Callable[[jax.Array, Any], Any] = _own
  model: Callable[[Any], Any] = _same


class ClientAlgorithm(NamedTuple):
  name: str
  init_rows: Callable[[Any, int], ClientTable]
  local: Callable[..., tuple[Any, Any, Any, Any]]
  personalize: Callable[..., Any]
  server: ServerModel = ServerModel()
  # (count: i32[K], ServerState) -> f32[K] the aggregation weights w_i
  # (None: D_i / D, `example_weights`)
  weights: Callable[[jax.Array, Any], jax.Array] | None = None


def sgd_client(train: Callable, name: str = 'fedavg') -> ClientAlgorithm:
  """The client that trains the server model with its configuration,
  `theta_i = LocalSGD(theta; lr_i, steps_i, batch_i)` (`train`: a
  `make_local_update`), sends it, and keeps no per-client state; its
  personal model is the global one fine-tuned the same way."""

  def personal(theta, row, x, y, count, hp: ClientHParams, key):
    return train(theta, x, y, count, *hp.sgd, key)[0]

  def local(theta, row, x, y, count, hp: ClientHParams, key):
    params, stats = train(theta, x, y, count, *hp.sgd, key)
    return params, row, stats, params

  return ClientAlgorithm(name, lambda params, num_clients: (), local,
                         personal)
