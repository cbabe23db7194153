"""Everything a run is made of, built and checked before anything is written.

`build(cfg)` loads the data, makes the model, the search space, the policy
and the one compiled round, and checks what needs the data: the clients per
round against the federation and the devices, the batch sizes against the
clients' sizes. The client sampler and the round keys are functions of
(seed, round), so a resumed run needs no sampler state.
"""
from __future__ import annotations

import sys
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from pfhpo import algorithms
from pfhpo import data as datasets
from pfhpo import convolution, models
from pfhpo.data.batches import round_batch, server_val_batch
from pfhpo.data.federated import ClientSplit, FederatedData
from pfhpo.data.groups import with_groups
from pfhpo.evaluate import (PERSONAL_BLOCK, PersonalMetrics, by_blocks,
                            make_eval_set, make_evaluate,
                            make_personalized_evaluate, make_val_loss,
                            make_validate, summarize_personal)
from pfhpo.experiment.config import Config
from pfhpo.federated import (Execution, FederatedAlgorithm, client_mesh,
                             make_round)
from pfhpo.federated.credit import make_credit
from pfhpo.federated.sharding import replicated
from pfhpo.federated.local_update import (default_client_chunk, default_unroll,
                                          make_masked_loss)
from pfhpo.policies import Policy, SearchSpace, create, hparams_for
from pfhpo.policies.registry import credit_of
from pfhpo.policies.base import CREDIT
from pfhpo.policies.features import client_features
from pfhpo.settings import require
from pfhpo.federated.population import check_population, population_round
from pfhpo.types import RoundBatch, RoundState


class Experiment(NamedTuple):
  cfg: Config
  data: FederatedData
  space: SearchSpace
  policy: Policy
  algorithm: FederatedAlgorithm
  step: Callable  # the jitted `algorithm.apply`
  evaluate: Callable  # the server's params -> GlobalMetrics, jitted
  # (the server's params, ValBatch) -> f32[] its weighted validation
  # accuracy, jitted: what a tuner chooses the evaluated model on
  validate: Callable
  # (state, the per-client table, bool[C] the clients that were in a
  # round[, i32[C] configurations instead of the policy's preferred, a
  # ClientSplit instead of the test split]) -> PersonalMetrics
  personalize: Callable[..., PersonalMetrics]
  # state -> state: the policy observes every client's loss before
  # training under the server model (for the 'pre_loss' measurement; the
  # same state for a policy without it), before the final figures
  observe_all: Callable[[RoundState], RoundState]
  batch: Callable[[np.ndarray], RoundBatch]  # the round of these clients
  mesh: Mesh | None  # the devices (of every process) the clients split over
  pool: np.ndarray  # i32[C'] the clients rounds sample from (not held out)
  resolved: dict  # what the config resolved to, for config.json
  traces: list  # one entry per compilation of the round


def build(cfg: Config) -> Experiment:
  run = cfg.run
  data = with_groups(
      datasets.load(cfg.data.dataset, data_dir=cfg.data.data_dir,
                    seed=run.seed, max_clients=cfg.data.max_clients,
                    alpha=cfg.data.alpha),
      cfg.data.noisy_fraction, cfg.data.noise_rate, cfg.data.few_fraction,
      cfg.data.few_examples, run.seed, cfg.data.noise_kind)
  pool = trained_clients(run.seed, data.num_clients, run.holdout_fraction)
  require(run.clients_per_round <= len(pool),
          f'`clients_per_round`={run.clients_per_round} exceeds the '
          f'{len(pool)} clients of {cfg.data.dataset}'
          + (f' not held out (`holdout_fraction`={run.holdout_fraction})'
             if len(pool) < data.num_clients else '') + '; lower it.')
  mesh = client_mesh()
  if mesh is not None:
    require(run.clients_per_round % mesh.size == 0,
            f'`clients_per_round`={run.clients_per_round} must be a multiple '
            f'of the {mesh.size} devices the clients are sharded over; use '
            f'{mesh.size * max(1, run.clients_per_round // mesh.size)}.')
  space = cfg.search_space()
  counts = data.train.counts
  largest = int(counts.max())
  require(space.max_batch <= largest,
          f'a batch of {space.max_batch} (`batch_sizes`, `max_batch_size`) is '
          f'more than the {largest} training examples of the largest client; '
          f'use batches of at most {largest}.')
  small = int(np.sum(counts < max(cfg.space.batch_sizes)))
  if small:  # Not an error: FEMNIST has writers with a handful of examples.
    _note(f'{small} of {data.num_clients} clients hold fewer training '
          f'examples than the largest batch ({max(cfg.space.batch_sizes)}); '
          f'their batches repeat examples.')
  backend = jax.default_backend()
  conv_impl = cfg.model.conv_impl or convolution.default_conv_impl(backend)
  unroll = (default_unroll(cfg.model.model, conv_impl, backend)
            if run.unroll is None else run.unroll)
  chunk = run.client_chunk or default_client_chunk(cfg.model.model, backend)
  model = models.create(cfg.model.model, data.feature_shape, data.num_classes,
                        conv_impl=conv_impl)
  init_key, round_key = keys(run.seed)
  name, options = cfg.algorithm.algorithm, cfg.algorithm.options
  params_like = jax.eval_shape(lambda key: algorithms.server_model(
      name, options, model.init(key), data.num_clients).init(
          key, model.init(key)), init_key)
  policy = create(cfg.policy.policy, space, cfg.policy.options,
                  train_counts=counts, groups=data.groups,
                  client_group=data.group_of,
                  client_features=client_features(
                      data.train.y, data.train.client_of, data.num_clients,
                      data.num_classes),
                  params_like=params_like,
                  server_opt=cfg.server.server_opt)
  check_population(policy, cfg.policy.policy, name, mesh)
  searches_server = policy.server_axis is not None or (
      policy.population is not None and policy.population.server is not None)
  client = algorithms.create(
      name, options, model, data.features, space.max_steps, space.max_batch,
      cfg.space.momentum, unroll, track_alignment='alignment' in policy.needs,
      tuned_values=cfg.algorithm.tuned()[0], num_clients=data.num_clients,
      clients_per_round=run.clients_per_round)
  server_opt = algorithms.server_optimizer(
      name, options, cfg.server.optimizer(injected=searches_server),
      run.clients_per_round)
  require(not searches_server or hasattr(
      jax.eval_shape(server_opt.init, params_like), 'hyperparams'),
          f'`algorithm`={name} steps its server with its own optimizer, '
          'whose learning rate and momentum a policy cannot set: drop '
          '`server_lrs` and `server_momenta`')
  recompute = recompute_clients(run, policy, chunk, params_like,
                                mesh.size if mesh is not None else 1)
  settings = credit_of(cfg.policy.policy, cfg.policy.options)
  credit = None if settings is None else make_credit(*settings)
  algorithm = make_round(
      model, data.features, server_opt, space, policy,
      credit, client,
      Execution(chunk, mesh, recompute))
  if policy.population is not None:
    algorithm = population_round(algorithm, policy.population,
                                 make_val_loss(model, data.features))
  traces = []

  def traced(*args):
    traces.append(1)  # runs once per compilation, never per call
    return algorithm.apply(*args)

  eval_set = jax.device_put(make_eval_set(data.test, run.eval_chunk))
  evaluate = jax.jit(make_evaluate(model, data.features, data.num_clients,
                                   run.eval_chunk))
  validate = jax.jit(make_validate(model, data.features))
  personal_eval = make_personalized_evaluate(
      model, data.features, client.personalize, chunk or data.num_clients)
  everyone = jnp.arange(data.num_clients, dtype=jnp.int32)

  def personalize(state: RoundState, table, seen: np.ndarray,
                  choices: np.ndarray | None = None,
                  split: ClientSplit | None = None) -> PersonalMetrics:
    """Every client's personal model (`ClientAlgorithm.personalize`: for
    FedAvg, fine-tuning) with its policy's preferred configuration (or
    `choices`, i32[C] configurations of the space), from its row of the
    per-client `table`, measured on its test split (or `split`); those
    never `seen` in a round are also summarised apart."""
    prefer_key, tune_key = jax.random.split(jax.random.fold_in(round_key, 0))
    hparams = (policy.prefer(state.policy, everyone, prefer_key)[0]
               if choices is None else hparams_for(space, choices))
    split = data.test if split is None else split
    return summarize_personal(personal_eval(
        state.server.params, table, data.train, hparams,
        jax.random.split(tune_key, data.num_clients), split),
        split.counts, seen)

  block_loss = jax.jit(lambda params, *clients: jax.lax.map(
      lambda a: make_masked_loss(model, data.features)(params, *a),
      clients, batch_size=chunk))

  def masked_loss(params) -> np.ndarray:  # f32[C]: each client's train loss
    train = data.train
    return by_blocks(data.num_clients, PERSONAL_BLOCK, lambda idx: block_loss(
        params, train.padded_x(idx), train.padded_y(idx), counts[idx]))

  def observe_all(state: RoundState) -> RoundState:
    if policy.observe is None:
      return state
    return state._replace(policy=policy.observe(
        state.policy, everyone,
        masked_loss(client.server.model(state.server.params))))

  server_val = (server_val_batch(data.val, cfg.data.val_size, run.seed)
                if cfg.data.val_source == 'server' else None)
  local_val = 'local_val' in policy.needs
  resolved = {
      'backend': backend, 'devices': [str(d) for d in jax.devices()],
      'processes': jax.process_count(),
      'conv_impl': conv_impl, 'unroll': unroll, 'client_chunk': chunk,
      'recompute_clients': recompute,
      'num_clients': data.num_clients, 'feature_shape': data.feature_shape,
      'num_classes': data.num_classes, 'clients_below_batch': small}
  return Experiment(
      cfg, data, space, policy, algorithm,
      # Over a mesh the outputs come back whole on every device, so that
      # every process reads the same state, rows and metrics.
      jax.jit(traced, donate_argnums=algorithm.donate,
              out_shardings=None if mesh is None else replicated(mesh)),
      lambda server_params: evaluate(client.server.model(server_params),
                                     eval_set),
      lambda server_params, val: validate(client.server.model(server_params),
                                          val),
      personalize, observe_all,
      lambda clients: round_batch(data, clients, server_val, local_val, mesh),
      mesh, pool, resolved, traces)


RECOMPUTE_ABOVE = 2**30  # bytes of kept client updates a device (1 GiB)


def recompute_clients(run, policy: Policy, chunk: int | None, params_like,
                      devices: int) -> bool:
  """Whether the round retrains its clients in the credit's backward pass
  (`aggregate_clients`'s `recompute`): as `run.recompute_clients` says, or,
  unset, when the updates it would keep, K / devices x the model's bytes,
  pass RECOMPUTE_ABOVE. Only a round that takes credits keeps them, and only
  a chunked one can retrain a group at a time."""
  takes_credit = CREDIT in policy.needs
  if run.recompute_clients is not None:
    require(not run.recompute_clients or chunk is not None,
            '`recompute_clients` retrains the clients a group at a time: '
            'pass `client_chunk` too.')
    return run.recompute_clients and takes_credit
  model_bytes = sum(a.size * a.dtype.itemsize
                    for a in jax.tree_util.tree_leaves(params_like))
  kept = run.clients_per_round / devices * model_bytes
  return takes_credit and chunk is not None and kept > RECOMPUTE_ABOVE


_NOTED: set[str] = set()  # notes already printed by this process


def _note(text: str) -> None:
  """Prints a note once per process (a comparison builds many runs)."""
  if text not in _NOTED:
    _NOTED.add(text)
    print(f'note: {text}', file=sys.stderr)


def keys(seed: int) -> tuple[jax.Array, jax.Array]:
  """(the initial state's key, the key round r folds in)."""
  return tuple(jax.random.split(jax.random.PRNGKey(seed)))


def trained_clients(seed: int, num_clients: int,
                    holdout_fraction: float) -> np.ndarray:
  """The clients rounds sample from, sorted: all but round(holdout_fraction
  C) held out at random (seeded). i32[C']."""
  held = round(holdout_fraction * num_clients)
  order = np.random.default_rng([seed, 2]).permutation(num_clients)
  return np.sort(order[held:]).astype(np.int32)


def sample_clients(seed: int, round_: int, pool: np.ndarray,
                   k: int) -> np.ndarray:
  """Round `round_`'s k clients of `pool`, sorted: a function of (seed,
  round) alone (and with no client held out, of (seed, round, C))."""
  rng = np.random.default_rng([seed, round_])
  return np.sort(rng.choice(pool, k, replace=False)).astype(np.int32)
