"""The method at a budget of B runs (`gumbel_pop`: a population of B runs of
the method, `pfhpo.policies.gumbel.gumbel_population` on
`pfhpo.federated.population`): a population of one is the run alone; at
an exploit step the worst members take the whole state of one of the best
and then differ from it in their logits alone, every other member left
as its own round left it; the round costs every member's local steps; and
from the command line it compiles once and resumes exactly."""
import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.evaluate import make_val_loss
from pfhpo.federated import make_round
from pfhpo.federated.population import member_keys, population_round
from pfhpo.federated.server import server_optimizer
from pfhpo.policies import gumbel, gumbel_population
from pfhpo.policies.space import server_space

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_fedpop import (C, SPACE, leaves_equal, member, model,  # noqa: E402
                         problem)

SERVERS = server_space((0.5, 1.0), (), 'sgd')


def method(servers=None):
  """The shipped method's policy and its round (the shipped credit)."""
  policy = gumbel(SPACE, optax.sgd(0.5), server=servers)
  return policy, make_round(model(), lambda x: x, server_optimizer(
      'sgd', 1.0, injected=servers is not None), SPACE, policy)


def population(size, servers=None, **kwargs):
  policy, round_ = method(servers)
  policy = gumbel_population(policy, size, **kwargs)
  return policy, round_, population_round(round_, policy.population,
                                          make_val_loss(model(), lambda x: x))


def run(algorithm, rounds, key=0):
  state, rows = algorithm.init(jax.random.PRNGKey(key), C, problem())
  step = jax.jit(algorithm.apply)
  metrics = []
  for r in range(rounds):
    state, rows, m = step(state, rows, problem(), jax.random.PRNGKey(100 + r))
    metrics.append(m)
  return state, metrics


def test_a_population_of_one_is_the_method_run_alone():
  """Figure for figure: the server model, the logits and every round's
  metrics of a population of one equal the plain run's, bit for bit."""
  _, alone_round, pop_round = population(1)
  alone, alone_metrics = run(alone_round, 5)
  pop, pop_metrics = run(pop_round, 5)
  assert leaves_equal(pop.server, alone.server)
  assert leaves_equal(pop.policy, alone.policy)
  for a, b in zip(jax.tree_util.tree_leaves(pop_metrics),
                  jax.tree_util.tree_leaves(alone_metrics)):
    np.testing.assert_array_equal(a, b)  # NaN where both are NaN
  assert not leaves_equal(alone.policy.logits,
                          jnp.zeros_like(alone.policy.logits))


def test_members_after_the_first_start_from_perturbed_logits():
  """Member 0 starts as the run alone; members 1..3 from their own initial
  weights and from uniform logits moved by N(0, 0.5^2)."""
  _, alone_round, pop_round = population(4, explore_scale=0.5)
  alone, _ = alone_round.init(jax.random.PRNGKey(0), C, problem())
  pop, _ = pop_round.init(jax.random.PRNGKey(0), C, problem())
  members = pop.population.members
  assert leaves_equal(member(members, 0), alone)
  for m in range(1, 4):
    moved = member(members, m)
    step = np.asarray(moved.policy.logits - alone.policy.logits)
    assert np.all(step != 0) and 0.3 < step.std() < 0.7
    assert leaves_equal(moved.policy._replace(logits=alone.policy.logits),
                        alone.policy)


def test_the_exploit_step_copies_a_best_members_whole_state_into_the_worst():
  """Population of 4, exploiting after every round: the round's members,
  as each one's own round leaves them, are ranked on validation; the best
  three stay as they are, the worst takes every leaf of the best one's
  state (weights, server optimizer state with its learning rate, logits'
  optimizer state, baseline, server row, the credit's window) but its
  logits, which move from the best's by N(0, 0.5^2). The round costs
  every member's local steps."""
  size, scale = 4, 0.5
  policy, round_, pop_round = population(size, servers=SERVERS,
                                         exploit_every=1, explore_scale=scale)
  state, rows = pop_round.init(jax.random.PRNGKey(0), C, problem())
  batch = jax.tree_util.tree_map(jnp.asarray, problem())
  key = jax.random.PRNGKey(7)
  # each member's own round, outside the population
  own, each = jax.jit(jax.vmap(
      lambda s, k: round_.apply(s, (), batch, k)[::2]))(
          state.population.members, member_keys(key, size))
  loss = np.asarray(jax.vmap(make_val_loss(model(), lambda x: x),
                             in_axes=(0, None))(own.server.params, batch.val))
  after, _, metrics = jax.jit(pop_round.apply)(state, rows, batch, key)
  # the round costs every member's local steps
  steps = np.asarray(each.local_steps_total)  # i[P]
  assert len(set(steps.tolist())) > 1  # the members drew differently
  assert int(metrics.local_steps_total) == int(steps.sum())
  members = after.population.members
  np.testing.assert_allclose(after.population.val_loss, loss, rtol=1e-6)
  order = np.argsort(loss)
  worst, best = order[-1], order[0]  # k = min(ceil(0.25 * 4), 2) = 1
  for m in order[:-1]:
    assert leaves_equal(member(members, m), member(own, m)), m
  copy, source = member(members, worst), member(own, best)
  step = np.asarray(copy.policy.logits - source.policy.logits)
  assert np.all(step != 0) and 0.3 < step.std() < 0.7
  assert np.all(copy.policy.server.logits != source.policy.server.logits)
  unperturbed = copy._replace(policy=copy.policy._replace(
      logits=source.policy.logits, server=copy.policy.server._replace(
          logits=source.policy.server.logits)))
  assert leaves_equal(unperturbed, source)
  # the members differ before the copy, so the copy is visible
  assert not leaves_equal(member(own, worst).server.params,
                          source.server.params)
  # the run's model is the best member's
  assert leaves_equal(after.server, source.server)
  assert leaves_equal(after.policy, source.policy)


def test_gumbel_pop_runs_from_the_cli_as_gumbel_alone_compiles_once_and_resumes(
    tmp_path):
  """On digits: `--policy=gumbel_pop --population=1` writes the rows of
  `--policy=gumbel`; a population of 3 compiles its round once, and a run
  stopped at round 3 and resumed to 6 writes the straight run's rows."""
  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'experiments'))
  import femnist  # noqa: E402  (experiments/femnist.py)
  argv = ['--dataset=digits', '--model=mlp', '--clients_per_round=4',
          '--max_clients=4', '--lrs=0.05,0.3', '--local_steps=2,5',
          '--batch_sizes=16', '--eval_every=3']
  def rows(out, keys=('round', 'global_acc', 'val_acc', 'val_loss',
                       'local_steps_total')):
    return [[r.get(k) for k in keys] for r in map(
        json.loads, (out / 'metrics.jsonl').read_text().splitlines())]

  runs = {name: tmp_path / name for name in
          ('gumbel', 'one', 'straight', 'parts')}
  assert femnist.main(argv + ['--policy=gumbel', '--rounds=3',
                              f'--out_dir={runs["gumbel"]}']) == 0
  assert femnist.main(argv + ['--policy=gumbel_pop', '--population=1',
                              '--rounds=3', f'--out_dir={runs["one"]}']) == 0
  every = ('round', 'global_acc', 'val_acc', 'val_loss', 'local_steps_total',
           'personal_acc', 'personal_acc_p10', 'client_acc_mean')
  assert rows(runs['one'], every) == rows(runs['gumbel'], every)
  pop = argv + ['--policy=gumbel_pop', '--population=3', '--exploit_every=2']
  assert femnist.main(pop + ['--rounds=6',
                             f'--out_dir={runs["straight"]}']) == 0
  assert femnist.main(pop + ['--rounds=3', f'--out_dir={runs["parts"]}']) == 0
  assert femnist.main(pop + ['--rounds=6', '--resume',
                             f'--out_dir={runs["parts"]}']) == 0
  assert rows(runs['parts']) == rows(runs['straight'])
  summary = json.loads((runs['straight'] / 'summary.json').read_text())
  assert summary['round_compilations'] == 1
  # three members' steps: more than one member's clients drew
  choices = [json.loads(line) for line in
             (runs['straight'] / 'choices.jsonl').read_text().splitlines()]
  last = json.loads((runs['straight'] / 'metrics.jsonl').read_text()
                    .splitlines()[-1])
  assert last['local_steps_total'] > sum(sum(c['local_steps'])
                                         for c in choices)
