"""The federated algorithms by name, each with its own config.

An algorithm module registers how it builds its client side for its name:

    @register('ditto', DittoConfig, tuned='ditto_lambda')
    def _build(config: DittoConfig, context: AlgorithmContext
               ) -> ClientAlgorithm: ...

`DittoConfig` is a frozen dataclass holding that algorithm's settings, with
their defaults and a `help` line each; it checks its values in
`__post_init__`. The command line offers every registered config's fields
as flags (`pfhpo.experiment.flags`), so a new algorithm touches one file.
Where the algorithm's server differs from FedAvg's, it registers what the
server learns (`server_model`: a `ServerModel`, built before the client so
that a policy may read its shapes) and its step (`server_optimizer`, given
the run's); `check` says what the algorithm asks of the rest of the run
(its model, the run's server settings). `tuned` names the one setting a
policy may choose per client (`ClientHParams.tuned`); the run's
`algorithm_values` lists its values to search (`pfhpo.experiment.config`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import optax

from pfhpo.federated.client import ClientAlgorithm, ServerModel
from pfhpo.federated.local_update import make_local_update
from pfhpo.models import Model
from pfhpo.settings import check_choice


class AlgorithmContext(NamedTuple):
  """What a run knows that an algorithm's client side is built from."""
  model: Model
  features: Callable  # x -> the model's input
  sgd: Callable  # (trainable=None) -> `make_local_update`'s local update
  max_steps: int  # the local steps the round is compiled for
  max_batch: int
  tuned_values: tuple[float, ...]  # its tuned setting's values searched
  num_clients: int | None = None  # the federation's C
  clients_per_round: int | None = None  # the round's K

  @property
  def params_like(self):
    """The model's parameter shapes (`jax.ShapeDtypeStruct`s)."""
    return jax.eval_shape(self.model.init, jax.random.PRNGKey(0))


def _fedavg_server(config, params_like, num_clients):
  return ServerModel()


def _run_server(config, server_opt, clients_per_round):
  return server_opt


def _fits_any_run(config, model: str, default_server: bool) -> None:
  pass


class AlgorithmEntry(NamedTuple):
  config: type  # the algorithm's settings: a frozen dataclass
  build: Callable[[Any, AlgorithmContext], ClientAlgorithm]
  tuned: str | None  # its setting a policy may choose per client
  # (config, params_like, num_clients) -> ServerModel
  server_model: Callable[..., ServerModel]
  # (config, the run's server optimizer, clients_per_round) -> its own
  server_optimizer: Callable[..., optax.GradientTransformation]
  # (config, model name, whether the run's server settings are defaults):
  # a ConfigError where the algorithm does not fit the run
  check: Callable[[Any, str, bool], None]


REGISTRY: dict[str, AlgorithmEntry] = {}


def register(name: str, config: type, tuned: str | None = None,
             server_model: Callable = _fedavg_server,
             server_optimizer: Callable = _run_server,
             check: Callable = _fits_any_run) -> Callable:
  """Registers the decorated `build(config, context) -> ClientAlgorithm`
  as `name`."""

  def decorate(build):
    REGISTRY[name] = AlgorithmEntry(config, build, tuned, server_model,
                                    server_optimizer, check)
    return build

  return decorate


def entry(name: str) -> AlgorithmEntry:
  check_choice('algorithm', name, tuple(REGISTRY))
  return REGISTRY[name]


def create(name: str, config: Any, model: Model, features: Callable,
           max_steps: int, max_batch: int, momentum: float = 0.0,
           unroll: bool = False, track_alignment: bool = False,
           tuned_values: tuple[float, ...] = (),
           num_clients: int | None = None,
           clients_per_round: int | None = None) -> ClientAlgorithm:
  """The client side of algorithm `name` with its `config` (None: its
  defaults), its local SGD compiled for `max_steps` steps of `max_batch`
  examples (`make_local_update`); `tuned_values` are its tuned setting's
  values the space searches (those it must be compiled for), and an
  algorithm whose server holds a row per client (MOCHA) needs the
  federation's `num_clients` and the round's `clients_per_round`."""
  spec = entry(name)
  sgd = functools.partial(make_local_update, model, features, max_steps,
                          max_batch, momentum, unroll, track_alignment)
  context = AlgorithmContext(model, features, sgd, max_steps, max_batch,
                             tuple(tuned_values), num_clients,
                             clients_per_round)
  return spec.build(_own(spec, config), context)


def server_optimizer(name: str, config: Any,
                     server_opt: optax.GradientTransformation,
                     clients_per_round: int | None = None
                     ) -> optax.GradientTransformation:
  """The server optimizer of algorithm `name`, given the run's
  `server_opt` (most algorithms take it as it is)."""
  spec = entry(name)
  return spec.server_optimizer(_own(spec, config), server_opt,
                               clients_per_round)


def server_model(name: str, config: Any, params_like,
                 num_clients: int | None = None) -> ServerModel:
  """What the server of algorithm `name` learns (`ServerModel`) for a model
  shaped like `params_like` (and a federation of `num_clients`), without
  building the algorithm (a policy that needs its shapes is built first)."""
  spec = entry(name)
  return spec.server_model(_own(spec, config), params_like, num_clients)


def _own(spec: AlgorithmEntry, config: Any) -> Any:
  """`config`, or the algorithm's defaults for None; another algorithm's
  config is a TypeError (a caller's mistake, not the user's)."""
  config = spec.config() if config is None else config
  if not isinstance(config, spec.config):
    raise TypeError(f'the algorithm takes a {spec.config.__name__}, got '
                    f'{type(config).__name__}')
  return config
