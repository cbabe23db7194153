"""The run loop: configuration, one compiled round, metrics as they come.

A run writes, in `out_dir`:

* `config.json`: the configuration and what it resolved to (device, conv
  implementation, client count), written before the first round;
* `metrics.jsonl`: one JSON line per evaluated round (`round`, `global_acc`,
  `global_loss`, `client_acc_mean`, `train_loss`, `val_loss`,
  `policy_entropy`, the round's mean `lr`, `local_steps` and `batch_size`,
  `local_steps_total`, `dropped_clients` (diverged, left out of that
  round's aggregate) and `dropped_clients_total`, `seconds`), flushed at once;
* `choices.jsonl`: every round's clients and the configuration each used;
* `summary.json`: final figures, timing and the number of compilations of
  the round function (one per run; more is a bug);
* `accuracy.png`: the accuracy curves; `policy.png`: the final policy as a
  clients x configurations heat map; `choices.png`: the share of each
  round's clients using each configuration.

Every check on the input runs before anything is written, and an `out_dir`
that already holds a run's files is refused, so a bad invocation never
touches earlier results.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from pfhpo import data as datasets
from pfhpo import models
from pfhpo import policies
from pfhpo.checkpoint import RunCheckpoints
from pfhpo.algorithms.fedavg import RoundBatch, ServerState
from pfhpo.client import default_client_chunk, make_local_update
from pfhpo.errors import ConfigError
from pfhpo.evaluate import (make_eval_set, make_evaluate,
                            make_personalized_evaluate, summarize_personal)
from pfhpo.plots import plot_accuracy, plot_choices, plot_policy
from pfhpo.policies import POLICIES, SCOPES
from pfhpo.policies.fathom import hyperparameters as fathom_hyperparameters
from pfhpo.round import (CREDITS, federated_val_batch, make_round,
                         server_val_batch)
from pfhpo.sharding import client_mesh, replicate
from pfhpo.space import make_space

SERVER_OPTS = ('sgd', 'momentum', 'adam')
RUN_FILES = ('config.json', 'metrics.jsonl', 'summary.json', 'choices.jsonl')
# Per-client values of each round recorded in choices.jsonl.
CHOICE_KEYS = ('choices', 'lr', 'local_steps', 'batch_size')
POLICY_OPTS = ('sgd', 'adam')
VAL_SOURCES = ('server', 'federated')


@dataclasses.dataclass(frozen=True)
class Config:
  """Everything a run depends on. Defaults: the embedded offline demo."""
  dataset: str = 'fashion_mnist'
  data_dir: str | None = None
  max_clients: int | None = None
  model: str = 'conv'
  rounds: int = 30
  clients_per_round: int = 10
  lrs: tuple[float, ...] = (0.05,)
  local_steps: tuple[int, ...] = (5,)
  batch_sizes: tuple[int, ...] = (16,)
  max_local_steps: int | None = None  # compiled bounds (None: the largest
  max_batch_size: int | None = None  # of --local_steps / --batch_sizes)
  momentum: float = 0.0
  server_opt: str = 'sgd'
  server_lr: float = 1.0
  policy: str = 'static'
  static_index: int = 0
  policy_opt: str | None = None  # None: the policy's default
  policy_lr: float | None = None
  policy_scope: str = 'client'
  credit: str = 'delta'
  credit_normalize: bool = True
  baseline_decay: float | None = None
  fathom_epochs: float = 1.0
  val_source: str = 'server'
  val_size: int = 1000
  eval_every: int = 5
  eval_chunk: int = 512
  conv_impl: str | None = None
  unroll: bool | None = None
  client_chunk: int | None = None  # None: the backend's default
  seed: int = 0
  out_dir: str = 'runs/demo'
  checkpoint_every: int = 50  # rounds; 0: only the last round is saved
  resume: bool = False


# What may differ between a run and its resumption: the length, the
# checkpoint period, and where the data now live.
RESUMABLE_CHANGES = ('rounds', 'resume', 'checkpoint_every', 'data_dir')


def validate(cfg: Config) -> None:
  """Range checks that need no data; each failure names the flag to fix."""
  checks = [
      (cfg.model in models.MODELS,
       f'unknown --model={cfg.model!r}; choose one of {", ".join(models.MODELS)}'),
      (cfg.dataset in datasets.DATASETS,
       f'unknown --dataset={cfg.dataset!r}; choose one of '
       f'{", ".join(datasets.DATASETS)}'),
      (cfg.server_opt in SERVER_OPTS,
       f'unknown --server_opt={cfg.server_opt!r}; choose one of '
       f'{", ".join(SERVER_OPTS)}'),
      (cfg.rounds >= 1, f'--rounds must be >= 1, got {cfg.rounds}'),
      (cfg.clients_per_round >= 1,
       f'--clients_per_round must be >= 1, got {cfg.clients_per_round}'),
      (cfg.val_size >= 1, f'--val_size must be >= 1, got {cfg.val_size}'),
      (cfg.server_lr > 0, f'--server_lr must be > 0, got {cfg.server_lr}'),
      (0 <= cfg.momentum < 1, f'--momentum must be in [0, 1), got {cfg.momentum}'),
      (cfg.eval_every >= 1, f'--eval_every must be >= 1, got {cfg.eval_every}'),
      (cfg.max_clients is None or cfg.max_clients >= 1,
       f'--max_clients must be >= 1, got {cfg.max_clients}'),
      (cfg.checkpoint_every >= 0,
       f'--checkpoint_every must be >= 0, got {cfg.checkpoint_every}'),
  ]
  for ok, message in checks:
    if not ok:
      raise ConfigError(message)
  space = make_space(cfg.lrs, cfg.local_steps, cfg.batch_sizes,
                     cfg.max_local_steps, cfg.max_batch_size)
  if not 0 <= cfg.static_index < space.size:
    raise ConfigError(f'--static_index={cfg.static_index} is outside the '
                      f'{space.size} configurations of the search space')
  choices = [('--policy', cfg.policy, POLICIES),
             ('--policy_opt', cfg.policy_opt or 'sgd', POLICY_OPTS),
             ('--policy_scope', cfg.policy_scope, SCOPES),
             ('--credit', cfg.credit, CREDITS),
             ('--val_source', cfg.val_source, VAL_SOURCES)]
  for flag, value, allowed in choices:
    if value not in allowed:
      raise ConfigError(f'unknown {flag}={value!r}; choose one of '
                        f'{", ".join(allowed)}')
  if cfg.policy not in policies.OPTIMIZED and (
      cfg.policy_opt is not None or cfg.policy_lr is not None):
    raise ConfigError(
        f'--policy_opt/--policy_lr do not apply to --policy={cfg.policy} '
        f'(only to {", ".join(policies.OPTIMIZED)}); drop them.')
  if cfg.policy_lr is not None and not cfg.policy_lr > 0:
    raise ConfigError(f'--policy_lr must be > 0, got {cfg.policy_lr}')
  if not cfg.fathom_epochs > 0:
    raise ConfigError(f'--fathom_epochs must be > 0, got {cfg.fathom_epochs}')
  if cfg.baseline_decay is not None:
    # FedEx's discount may be 1 (the plain mean); a running mean's may not.
    closed = cfg.policy in ('fedex', 'pfedex')
    b = cfg.baseline_decay
    if not (0 <= b <= 1 if closed else 0 <= b < 1):
      raise ConfigError(f'--baseline_decay must be in [0, 1{"]" if closed else ")"}'
                        f' for --policy={cfg.policy}, got {b}')
  existing = [f for f in RUN_FILES if (Path(cfg.out_dir) / f).exists()]
  if cfg.resume:
    if not (Path(cfg.out_dir) / 'config.json').exists():
      raise ConfigError(f'--resume: {cfg.out_dir} holds no run to resume; '
                        f'drop --resume to start one there.')
  elif existing:
    raise ConfigError(
        f'--out_dir={cfg.out_dir} already holds a run ({existing[0]}); pass a '
        f'new --out_dir, --resume to continue it, or remove the old one.')


def server_optimizer(name: str, lr: float) -> optax.GradientTransformation:
  """The server optimizer of Reddi et al. (ICLR 2021): FedAvg(M)/FedAdam."""
  if name == 'sgd':
    return optax.sgd(lr)
  if name == 'momentum':
    return optax.sgd(lr, momentum=0.9)
  return optax.adam(lr, b1=0.9, b2=0.99, eps=1e-3)


def _write_json(path: Path, obj) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  tmp = path.with_suffix(path.suffix + '.tmp')
  tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
  os.replace(tmp, path)


def run(cfg: Config) -> dict:
  """Runs the configured policy; returns the summary (also written to disk)."""
  validate(cfg)
  data = datasets.load(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed,
                       max_clients=cfg.max_clients)
  if cfg.clients_per_round > data.num_clients:
    raise ConfigError(
        f'--clients_per_round={cfg.clients_per_round} exceeds the '
        f'{data.num_clients} clients of {cfg.dataset}; lower it.')
  mesh = client_mesh()
  if mesh is not None and cfg.clients_per_round % mesh.size:
    raise ConfigError(
        f'--clients_per_round={cfg.clients_per_round} must be a multiple of '
        f'the {mesh.size} devices the clients are sharded over; use '
        f'{mesh.size * max(1, cfg.clients_per_round // mesh.size)}.')
  backend = jax.default_backend()
  conv_impl = cfg.conv_impl or models.default_conv_impl(backend)
  # XLA:CPU runs a lax convolution's backward pass ~14x slower inside a while
  # loop, so only that combination unrolls the step loop; patches are dots.
  unroll = (backend == 'cpu' and conv_impl == 'lax' and cfg.model != 'mlp'
            if cfg.unroll is None else cfg.unroll)
  client_chunk = cfg.client_chunk or default_client_chunk(backend)
  model = models.create(cfg.model, data.feature_shape, data.num_classes,
                        conv_impl=conv_impl)
  space = make_space(cfg.lrs, cfg.local_steps, cfg.batch_sizes,
                     cfg.max_local_steps, cfg.max_batch_size)
  key = jax.random.PRNGKey(cfg.seed)
  init_key, policy_key, round_key = jax.random.split(key, 3)
  policy = policies.create(
      cfg.policy, space,
      (policies.default_optimizer(cfg.policy, cfg.policy_opt, cfg.policy_lr)
       if cfg.policy in policies.OPTIMIZED else None),
      cfg.policy_scope, cfg.static_index, cfg.baseline_decay,
      cfg.credit_normalize, train_counts=data.train.counts,
      params_like=jax.eval_shape(model.init, init_key),
      fathom_epochs=cfg.fathom_epochs)

  out = Path(cfg.out_dir)
  # Not an error: FEMNIST has writers with a handful of examples. Their
  # batches wrap around their examples, as fedjax's do (client.py).
  small = int(np.sum(data.train.counts < max(cfg.batch_sizes)))
  if small:
    print(f'note: {small} of {data.num_clients} clients hold fewer training '
          f'examples than the largest batch ({max(cfg.batch_sizes)}); their '
          f'batches repeat examples.', file=sys.stderr)
  record = {  # config.json: the flags and what they resolved to
      **dataclasses.asdict(cfg), 'backend': backend,
      'devices': [str(d) for d in jax.devices()], 'conv_impl': conv_impl,
      'unroll': unroll, 'client_chunk': client_chunk,
      'num_clients': data.num_clients, 'feature_shape': data.feature_shape,
      'num_classes': data.num_classes, 'clients_below_batch': small}
  if cfg.resume:
    check_resumable(cfg.out_dir, record,
                    json.loads((out / 'config.json').read_text()))
  params = model.init(init_key)
  server_opt = server_optimizer(cfg.server_opt, cfg.server_lr)
  state = {'server': ServerState(params, server_opt.init(params)),
           'policy': policy.init(policy_key, data.num_clients)}
  checkpoints, resumed = None, None
  if cfg.resume:  # read before anything is written: a bad one changes nothing
    checkpoints = RunCheckpoints(out)
    resumed = checkpoints.restore(state)
    if resumed[0] > cfg.rounds:
      raise ConfigError(
          f'--resume: the checkpoint is at round {resumed[0]}, past '
          f'--rounds={cfg.rounds}; pass --rounds >= {resumed[0]}.')
  out.mkdir(parents=True, exist_ok=True)
  _write_json(out / 'config.json', record)
  checkpoints = checkpoints or RunCheckpoints(out)

  round_fn = make_round(model, data.features, server_opt, space, policy,
                        cfg.momentum, unroll, client_chunk, mesh, cfg.credit)
  traces = []

  def traced_round(*args):
    traces.append(1)  # runs once per compilation, never per call
    return round_fn(*args)

  round_step = jax.jit(traced_round, donate_argnums=(0, 1))
  evaluate = jax.jit(make_evaluate(model, data.features, data.num_clients,
                                   cfg.eval_chunk))
  eval_set = jax.device_put(make_eval_set(data.test, cfg.eval_chunk))
  personal_eval = jax.jit(make_personalized_evaluate(
      model, data.features,
      make_local_update(model, data.features, space.max_steps,
                        space.max_batch, cfg.momentum, unroll),
      client_chunk or data.num_clients))

  all_clients = jnp.arange(data.num_clients, dtype=jnp.int32)

  def personal_metrics(server, pstate) -> dict:
    """Every client fine-tunes with its policy's preferred configuration."""
    prefer_key, tune_key = jax.random.split(jax.random.fold_in(round_key, 0))
    preferred, _ = policy.prefer(pstate, all_clients, prefer_key)
    return summarize_personal(personal_eval(
        server.params, data.train.x, data.train.y, counts, preferred,
        jax.random.split(tune_key, data.num_clients),
        data.test.x, data.test.y, data.test.mask), data.test.counts)

  server_val = (server_val_batch(data.val, cfg.val_size, cfg.seed)
                if cfg.val_source == 'server' else None)
  val_counts = data.val.counts

  def local_val(clients) -> tuple:
    """The round's clients' own validation splits, if the policy reads them."""
    if 'local_val' not in policy.needs:
      return ()
    return data.val.x[clients], data.val.y[clients], val_counts[clients]

  categorical = policy.probabilities is not None

  sampler = np.random.default_rng(cfg.seed)
  k = cfg.clients_per_round
  counts = data.train.counts
  rows, pending, choice_counts = [], [], []
  steps_total = dropped_total = 0
  first_round_s, elapsed, start_round = None, 0.0, 1
  if resumed is not None:
    start_round, state, meta = resumed
    start_round += 1
    sampler.bit_generator.state = meta['sampler']
    rows, choice_counts = meta['rows'], meta['choice_counts']
    steps_total, dropped_total = meta['local_steps_total'], meta['dropped_total']
    first_round_s, elapsed = meta['first_round_seconds'], meta['seconds']
    truncate_logs(out, start_round - 1, rows)
  server, pstate = (replicate(state['server'], mesh),
                    replicate(state['policy'], mesh))
  last = rows[-1] if rows else {}
  start = time.perf_counter() - elapsed
  with open(out / 'metrics.jsonl', 'a') as log, \
      open(out / 'choices.jsonl', 'a') as choices_log, tqdm(
          total=cfg.rounds, initial=start_round - 1,
          desc=f'{cfg.policy} {cfg.dataset}/{cfg.model}', unit='round',
          mininterval=2.0) as bar:

    def flush_choices():
      for rr, cl, ch in pending:
        ch = {key: np.asarray(v).tolist() for key, v in ch.items()}
        if categorical:
          choice_counts.append(np.bincount(
              ch['choices'], minlength=space.size).tolist())
        choices_log.write(json.dumps({'round': rr, 'clients': cl.tolist(),
                                      **ch}) + '\n')
      pending.clear()
      choices_log.flush()

    for r in range(start_round, cfg.rounds + 1):
      clients = np.sort(sampler.choice(data.num_clients, k, replace=False))
      batch = RoundBatch(data.train.x[clients], data.train.y[clients],
                         counts[clients], *local_val(clients))
      val = server_val or federated_val_batch(data.val, clients,
                                              counts[clients])
      server, pstate, metrics = round_step(
          server, pstate, clients.astype(np.int32), batch, val,
          jax.random.fold_in(round_key, r))
      # Device-side sums: no host sync between rounds.
      steps_total = steps_total + metrics['local_steps_total']
      dropped_total = dropped_total + metrics['dropped_clients']
      pending.append((r, clients, {key: metrics[key] for key in CHOICE_KEYS}))
      if first_round_s is None:
        jax.block_until_ready(server)
        first_round_s = time.perf_counter() - start
      if r % cfg.eval_every == 0 or r == cfg.rounds:
        flush_choices()
        ev = evaluate(server.params, eval_set)
        last = {
            'round': r,
            'global_acc': float(ev['acc']),
            'global_loss': float(ev['loss']),
            'client_acc_mean': float(ev['client_acc_mean']),
            'train_loss': float(metrics['train_loss']),
            'val_loss': float(metrics['val_loss']),
            **{f'mean_{key}': float(jnp.mean(metrics[key]))
               for key in ('lr', 'local_steps', 'batch_size')},
            'local_steps_total': int(steps_total),
            'dropped_clients': int(metrics['dropped_clients']),
            'dropped_clients_total': int(dropped_total),
        }
        if categorical:
          last['policy_entropy'] = float(metrics['policy_entropy'])
        if r == cfg.rounds:  # one fine-tuning pass over every client
          last.update(personal_metrics(server, pstate))
        last['seconds'] = round(time.perf_counter() - start, 3)
        rows.append(last)
        log.write(json.dumps(last) + '\n')
        log.flush()
        bar.set_postfix(acc=f'{last["global_acc"]:.3f}',
                        loss=f'{last["global_loss"]:.3f}')
      if r == cfg.rounds or (cfg.checkpoint_every and
                             r % cfg.checkpoint_every == 0):
        flush_choices()
        checkpoints.save(r, {'server': server, 'policy': pstate}, {
            'round': r, 'sampler': sampler.bit_generator.state, 'rows': rows,
            'choice_counts': choice_counts,
            'local_steps_total': int(steps_total),
            'dropped_total': int(dropped_total),
            'first_round_seconds': first_round_s,
            'seconds': time.perf_counter() - start})
      bar.update(1)
  checkpoints.close()
  total = time.perf_counter() - start
  summary = {
      **last,
      'best_global_acc': max(row['global_acc'] for row in rows),
      # Khodak et al.'s two figures: the global model's test error and the
      # error after each client fine-tunes it ("refine"), both pooled.
      'global_error': 1.0 - last['global_acc'],
      'refine_error': 1.0 - last['personal_acc_pooled'],
      'rounds': cfg.rounds,
      'total_seconds': round(total, 3),
      'first_round_seconds': round(first_round_s, 3),
      'resumed_from_round': None if resumed is None else resumed[0],
      'round_compilations': len(traces),
      'configurations': [space.describe(z) for z in range(space.size)],
  }
  if categorical:
    probs = np.asarray(policy.probabilities(pstate, all_clients))  # f32[C, H]
    summary['policy_mean_probabilities'] = probs.mean(0).round(4).tolist()
  else:  # fathom: where the hypergradients took (E, eta, B)
    summary['fathom'] = fathom_hyperparameters(pstate)
  _write_json(out / 'summary.json', summary)
  plot_accuracy(rows, out / 'accuracy.png',
                title=f'{cfg.policy} on {cfg.dataset} ({cfg.model})')
  if categorical:
    plot_policy(probs, summary['configurations'], out / 'policy.png',
                title=f'{cfg.policy}: final policy')
    plot_choices(np.stack(choice_counts), summary['configurations'],
                 out / 'choices.png',
                 title=f'{cfg.policy}: configurations used')
  return summary


def check_resumable(out_dir: str, record: dict, stored: dict) -> None:
  """A resumed run must be the run it continues: its config.json `record`
  equal to the `stored` one but for RESUMABLE_CHANGES and the devices."""
  for name, now in record.items():
    if name in RESUMABLE_CHANGES or name == 'devices' or name not in stored:
      continue  # (a key an older version did not record cannot be checked)
    then, now = stored.get(name), json.loads(json.dumps(now))  # JSON forms
    if now != then:
      raise ConfigError(
          f'--resume: the run in {out_dir} used --{name}={then!r}, not '
          f'{now!r}; pass the same flags to continue it, or a new --out_dir.')


def truncate_logs(out: Path, last_round: int, rows: list) -> None:
  """Drops what a killed run logged after its last checkpoint (the resumed
  run writes those rounds again, identically): metrics.jsonl becomes the
  checkpoint's rows, choices.jsonl keeps its rounds <= last_round."""
  lines = (out / 'choices.jsonl').read_text().splitlines()
  kept = [l for l in lines if l and json.loads(l)['round'] <= last_round]
  for name, text in (('choices.jsonl', kept),
                     ('metrics.jsonl', [json.dumps(row) for row in rows])):
    tmp = out / (name + '.tmp')
    tmp.write_text(''.join(t + '\n' for t in text))
    os.replace(tmp, out / name)


def parse_list(text: str, kind: type, flag: str) -> tuple:
  """'0.01,0.1' -> (0.01, 0.1); an empty or malformed list is a ConfigError."""
  try:
    values = tuple(kind(v) for v in text.split(',') if v.strip())
  except ValueError:
    raise ConfigError(
        f'{flag}={text!r} is not a comma-separated list of '
        f'{kind.__name__}s, e.g. {flag}=1,5,10') from None
  if not values:
    raise ConfigError(f'{flag} is empty; give at least one value')
  return values


def config_from_args(argv: Sequence[str] | None = None) -> Config:
  """Parses `experiments/femnist.py`'s flags into a Config."""
  import argparse

  class Parser(argparse.ArgumentParser):

    def error(self, message):  # one line, exit 2, like every ConfigError
      raise ConfigError(message)

  d = Config()
  p = Parser(description='Federated training with per-client hyper-parameters.')
  p.add_argument('--dataset', default=d.dataset,
                 help=f'one of {", ".join(datasets.DATASETS)}')
  p.add_argument('--data_dir', default=d.data_dir,
                 help='directory that already holds the data set files')
  p.add_argument('--max_clients', type=int, default=d.max_clients,
                 help='keep only the first N clients (quick runs)')
  p.add_argument('--model', default=d.model, help=', '.join(models.MODELS))
  p.add_argument('--rounds', type=int, default=d.rounds)
  p.add_argument('--clients_per_round', type=int, default=d.clients_per_round)
  p.add_argument('--lrs', default=','.join(map(str, d.lrs)),
                 help='client learning rate(s), comma-separated')
  p.add_argument('--local_steps', default=','.join(map(str, d.local_steps)))
  p.add_argument('--batch_sizes', default=','.join(map(str, d.batch_sizes)))
  p.add_argument('--max_local_steps', type=int, default=d.max_local_steps,
                 help='the most local steps the round is compiled for '
                 '(default: the largest --local_steps)')
  p.add_argument('--max_batch_size', type=int, default=d.max_batch_size,
                 help='the largest batch the round is compiled for '
                 '(default: the largest --batch_sizes)')
  p.add_argument('--momentum', type=float, default=d.momentum,
                 help='client SGD momentum')
  p.add_argument('--server_opt', default=d.server_opt,
                 help=', '.join(SERVER_OPTS))
  p.add_argument('--server_lr', type=float, default=d.server_lr)
  p.add_argument('--policy', default=d.policy, help=', '.join(POLICIES))
  p.add_argument('--static_index', type=int, default=d.static_index,
                 help='configuration index the static policy uses')
  p.add_argument('--policy_opt', default=d.policy_opt,
                 help=f'{", ".join(POLICY_OPTS)} (reinforce, gumbel: sgd; '
                 'pfedex: adam)')
  p.add_argument('--policy_lr', type=float, default=d.policy_lr,
                 help='reinforce, gumbel: 0.5; pfedex: 0.01')
  p.add_argument('--fathom_epochs', type=float, default=d.fathom_epochs,
                 help='fathom: epochs E_0 to start from (lr and batch come '
                 'from configuration --static_index; --max_local_steps and '
                 '--max_batch_size bound it)')
  p.add_argument('--policy_scope', default=d.policy_scope,
                 help="reinforce, gumbel: 'client' (personalised) or "
                 "'global' (shared) logits")
  p.add_argument('--credit', default=d.credit,
                 help="gumbel: differentiate theta_g through 'delta' or 'params'")
  p.add_argument('--credit_normalize', type=int, default=int(d.credit_normalize),
                 help='gumbel: 1 divides the round\'s credits by their std')
  p.add_argument('--baseline_decay', type=float, default=d.baseline_decay,
                 help='reinforce, gumbel: running-mean baseline decay (unset: '
                 'none); fedex, pfedex: the discount gamma of their baseline '
                 '(unset: 0, the previous round)')
  p.add_argument('--val_source', default=d.val_source,
                 help=', '.join(VAL_SOURCES))
  p.add_argument('--val_size', type=int, default=d.val_size,
                 help='examples in the server validation set')
  p.add_argument('--eval_every', type=int, default=d.eval_every)
  p.add_argument('--conv_impl', default=d.conv_impl,
                 help="'patches' or 'lax' (default: patches on CPU, lax elsewhere)")
  p.add_argument('--seed', type=int, default=d.seed)
  p.add_argument('--out_dir', default=d.out_dir)
  p.add_argument('--checkpoint_every', type=int, default=d.checkpoint_every,
                 help='save the whole run state every N rounds (0: only at '
                 'the end)')
  p.add_argument('--resume', action='store_true',
                 help='continue the run in --out_dir from its last checkpoint')
  a = p.parse_args(argv)
  return dataclasses.replace(
      d, dataset=a.dataset, data_dir=a.data_dir, max_clients=a.max_clients,
      model=a.model, rounds=a.rounds, clients_per_round=a.clients_per_round,
      lrs=parse_list(a.lrs, float, '--lrs'),
      local_steps=parse_list(a.local_steps, int, '--local_steps'),
      batch_sizes=parse_list(a.batch_sizes, int, '--batch_sizes'),
      max_local_steps=a.max_local_steps, max_batch_size=a.max_batch_size,
      momentum=a.momentum, server_opt=a.server_opt, server_lr=a.server_lr,
      policy=a.policy, static_index=a.static_index, policy_opt=a.policy_opt,
      policy_lr=a.policy_lr, policy_scope=a.policy_scope, credit=a.credit,
      credit_normalize=bool(a.credit_normalize),
      baseline_decay=a.baseline_decay, fathom_epochs=a.fathom_epochs,
      val_source=a.val_source,
      val_size=a.val_size, eval_every=a.eval_every, conv_impl=a.conv_impl,
      seed=a.seed, out_dir=a.out_dir, checkpoint_every=a.checkpoint_every,
      resume=a.resume)
