"""FedPop (`pfhpo.fedpop`): the exploit step
copies the best members into the worst, explore moves only the copies, a
population of one without perturbation is a static run, and the round's
cost is every member's."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.evaluate import make_val_loss
from pfhpo.federated import make_round
from pfhpo.federated.server import server_optimizer
from pfhpo.policies.space import server_space
from pfhpo.models import Model
from pfhpo.policies import fedpop, static
from pfhpo.policies.space import make_space
from pfhpo.fedpop.members import DISCOUNT, axis_sizes
from pfhpo.federated.population import exploit, explore, population_round
from pfhpo.types import ClientBatch, Feedback, RoundBatch, ValBatch

C, N, D = 6, 24, 5
SPACE = make_space([0.01, 0.1, 0.3], [1, 4], [8])  # a 3 x 2 grid
SERVERS = server_space((0.5, 1.0), (0.0, 0.9), 'sgd')


def model():
  def init(key):
    return {'w': 0.1 * jax.random.normal(key, (D, 2)), 'b': jnp.zeros(2)}

  return Model(init, lambda params, x, train=False, rng=None:
               x @ params['w'] + params['b'], 'linear', 2)


def problem(seed=0):
  rng = np.random.default_rng(seed)
  w = rng.normal(size=D)

  def split(n):
    x = rng.normal(size=(C, n, D)).astype(np.float32)
    return x, (x @ w > 0).astype(np.int32)

  x, y = split(N)
  xv, yv = split(8)
  xs = rng.normal(size=(64, D)).astype(np.float32)
  return RoundBatch(np.arange(C), ClientBatch(x, y, np.full(C, N, np.int32)),
                    ValBatch(xs, (xs @ w > 0).astype(np.int32),
                             np.full(64, 1 / 64, np.float32)),
                    ClientBatch(xv, yv, np.full(C, 8, np.int32)))


def population(size, local_every=5, exploit_every=3, servers=SERVERS,
               resample=0.0):
  policy = fedpop(SPACE, size, exploit_every, local_every, 0.25, resample,
                  servers)
  member = make_round(model(), lambda x: x, server_optimizer(
      'sgd', 1.0, injected=servers is not None), SPACE, policy)
  return policy, population_round(member, policy.population,
                                  make_val_loss(model(), lambda x: x))


def leaves_equal(a, b):
  return all(np.array_equal(x, y) for x, y in zip(
      jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def member(tree, m):
  return jax.tree_util.tree_map(lambda a: a[m], tree)


def trained(size, rounds=2, **kwargs):
  policy, algorithm = population(size, **kwargs)
  state, rows = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  for r in range(rounds):
    state, rows, metrics = step(state, rows, problem(), jax.random.PRNGKey(r))
  return policy, state, metrics


def test_exploit_copies_the_best_members_weights_and_hyperparameters():
  _, state, _ = trained(8, exploit_every=100)
  members, server = state.population.members, state.population.server
  loss = jnp.array([3.0, 1.0, 2.0, 8.0, 4.0, 0.5, 7.0, 5.0])
  copied, copied_server, replaced = exploit(
      members, server, loss, jax.random.PRNGKey(1), 0.25)
  # k = 2 of 8: the worst (3, 6) each take one of the best (5, 1)
  np.testing.assert_array_equal(replaced, np.isin(np.arange(8), [3, 6]))
  for m in range(8):
    source = m
    if m in (3, 6):
      sources = [s for s in (5, 1) if leaves_equal(
          member(copied, m), member(members, s))]
      assert len(sources) == 1, m  # a whole copy of one of the best
      source = sources[0]
    else:
      assert leaves_equal(member(copied, m), member(members, m))
    assert int(copied_server[m]) == int(server[source])
    # the weights, the optimizer state with its learning rate and momentum,
    # the clients' slots and base
    hp = member(copied.server.opt_state.hyperparams, m)
    np.testing.assert_array_equal(
        [hp['learning_rate'], hp['momentum']],
        [SERVERS.values()[0][server[source]],
         SERVERS.values()[1][server[source]]])
    assert int(copied.policy.base[m]) == int(members.policy.base[source])
  # the members differ, so a copy is visible
  assert not leaves_equal(member(members, 5).server.params,
                          member(members, 3).server.params)


def test_explore_moves_only_the_copies_to_neighbours():
  policy, state, _ = trained(4, exploit_every=100)
  members, server = state.population.members, state.population.server
  replaced = jnp.array([False, True, False, True])
  moved, moved_server = explore(members, server, replaced,
                                jax.random.PRNGKey(2), policy.population)
  grid = axis_sizes(SPACE)
  for m in range(4):
    if not replaced[m]:
      assert leaves_equal(member(moved, m), member(members, m))
      assert int(moved_server[m]) == int(server[m])
      continue
    old = np.unravel_index(int(members.policy.base[m]), grid)
    new = np.unravel_index(int(moved.policy.base[m]), grid)
    assert np.all(np.abs(np.subtract(old, new)) <= 1)
    assert int(moved.policy.slots[m, 0]) == int(moved.policy.base[m])
    hp = member(moved.server.opt_state.hyperparams, m)
    s = int(moved_server[m])
    assert float(hp['learning_rate']) == SERVERS.values()[0][s]
    assert float(hp['momentum']) == SERVERS.values()[1][s]
    # the weights stay: explore moves hyper-parameters only
    assert leaves_equal(member(moved, m).server.params,
                        member(members, m).server.params)


def test_a_population_of_one_without_perturbation_is_a_static_run():
  rounds = 6
  policy, state, _ = trained(1, rounds=rounds, local_every=0, servers=None)
  base = int(state.policy.base)
  np.testing.assert_array_equal(state.policy.slots, base)
  single = make_round(model(), lambda x: x, optax.sgd(1.0), SPACE,
                      static(SPACE, base))
  alone, rows = single.init(jax.random.PRNGKey(0), C)
  step = jax.jit(single.apply)
  for r in range(rounds):
    alone, rows, _ = step(alone, rows, problem(), jax.random.PRNGKey(r))
  for a, b in zip(jax.tree_util.tree_leaves(state.server.params),
                  jax.tree_util.tree_leaves(alone.server.params)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert not leaves_equal(state.server.params,
                          model().init(jax.random.PRNGKey(0)))


def test_the_round_costs_every_members_local_steps_and_reports_the_best():
  _, state, metrics = trained(3, rounds=1, local_every=0, exploit_every=100)
  members = state.population.members
  steps = SPACE.local_steps[np.asarray(members.policy.base)]  # i32[P]
  assert int(metrics.local_steps_total) == C * int(steps.sum())
  best = int(np.argmin(state.population.val_loss))
  assert leaves_equal(state.server, member(members.server, best))
  np.testing.assert_array_equal(metrics.hparams.local_steps, steps[best])


def test_the_population_exploits_exactly_every_exploit_every_rounds():
  """exploit_every = 2, local_every = 3, seven rounds of 4 members (k =
  min(ceil(0.25 * 4), 4 // 2) = 1). After rounds 2, 4, 6 exactly one pair
  of members shares its weights: the worst of the round's validation
  losses, now a copy of the best; after rounds 1, 3, 5, 7 no two do and no
  member's server configuration moved. FedPop-L: all C clients train every
  round, so every slot is measured each round and its weight is
  den = sum_{i < t} 0.9^i, t the rounds since its scores last started
  again: at every third round (local_every) for all, and at an exploit for
  the copy (reseeded around its new base); a member's slots change only
  then."""
  size, every, local = 4, 2, 3
  _, algorithm = population(size, local_every=local, exploit_every=every)
  state, rows = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  reset = np.zeros(size, int)  # the round each member's scores restarted
  moved = 0
  for r in range(1, 8):
    before = state.population
    state, rows, _ = step(state, rows, problem(), jax.random.PRNGKey(r))
    pop = state.population
    assert int(pop.round) == r
    params = [member(pop.members.server.params, m) for m in range(size)]
    shared = [{a, b} for a in range(size) for b in range(a + 1, size)
              if leaves_equal(params[a], params[b])]
    order = np.argsort(np.asarray(pop.val_loss))
    copy = None
    if r % every == 0:
      copy = int(order[-1])
      assert shared == [{int(order[0]), copy}], r
    else:
      assert shared == [], r
      np.testing.assert_array_equal(pop.server, before.server)
    den = np.asarray(pop.members.policy.den)
    slots = np.asarray(pop.members.policy.slots)
    for m in range(size):
      if r % local == 0 or m == copy:
        reset[m] = r
      want = sum(DISCOUNT ** i for i in range(r - reset[m]))
      np.testing.assert_allclose(den[m], want, rtol=1e-6, err_msg=str((r, m)))
      if r % local and m != copy:
        np.testing.assert_array_equal(
            slots[m], before.members.policy.slots[m], err_msg=str((r, m)))
      elif r % local == 0:
        moved += int(np.sum(slots[m] != before.members.policy.slots[m]))
  assert moved > 0  # the local steps moved some slot


def test_a_member_with_a_non_finite_loss_is_ranked_worst_and_replaced():
  """exploit over 4 members (k = 1) with member 1's loss NaN or inf: member
  1 is the one replaced, by the best finite one (member 2, loss 0.5), and
  is never the source; the others are untouched."""
  _, state, _ = trained(4, rounds=1, exploit_every=100)
  members, server = state.population.members, state.population.server
  for bad in (np.nan, np.inf):
    loss = jnp.array([2.0, bad, 0.5, 1.0])
    copied, copied_server, replaced = exploit(
        members, server, loss, jax.random.PRNGKey(1), 0.25)
    np.testing.assert_array_equal(replaced, [False, True, False, False])
    assert leaves_equal(member(copied, 1), member(members, 2))
    assert int(copied_server[1]) == int(server[2])
    for m in (0, 2, 3):
      assert leaves_equal(member(copied, m), member(members, m))


def test_a_member_whose_model_is_nan_is_replaced_and_never_reported():
  """A population of 4 exploiting every round, member 1's server weights
  NaN: its clients diverge, its validation loss is recorded as inf, it is
  the member replaced, by a copy of the best finite member, and the run's
  model is that best member's, its metrics finite."""
  size = 4
  _, algorithm = population(size, exploit_every=1)
  state, rows = algorithm.init(jax.random.PRNGKey(0), C)
  pop = state.population
  params = jax.tree_util.tree_map(lambda a: a.at[1].set(jnp.nan),
                                  pop.members.server.params)
  pop = pop._replace(members=pop.members._replace(
      server=pop.members.server._replace(params=params)))
  state = state._replace(population=pop)
  state, _, metrics = jax.jit(algorithm.apply)(state, rows, problem(),
                                               jax.random.PRNGKey(3))
  loss = np.asarray(state.population.val_loss)
  assert np.isinf(loss[1]) and np.all(np.isfinite(np.delete(loss, 1)))
  best = int(np.argmin(loss))
  assert best != 1
  members = state.population.members
  assert leaves_equal(member(members.server.params, 1),
                      member(members.server.params, best))
  assert all(np.all(np.isfinite(a)) for a in
             jax.tree_util.tree_leaves(members.server.params))
  assert leaves_equal(state.server, member(members.server, best))
  assert np.isfinite(float(metrics.val_loss))
  assert np.isfinite(float(metrics.train_loss))


def test_the_round_counts_every_members_local_steps_exactly():
  """Three members with FedPop-L every round and an exploit every second
  round, four rounds: each round's local_steps_total is the sum, over the
  members and their C clients, of the local steps of the configuration
  each client drew (the member's proposal before the round), so a member
  left out, or the best counted P times, is a different number."""
  size = 3
  policy, algorithm = population(size, local_every=1, exploit_every=2)
  state, rows = algorithm.init(jax.random.PRNGKey(0), C)
  step = jax.jit(algorithm.apply)
  drew = jax.jit(jax.vmap(
      lambda s: policy.propose(s, jnp.arange(C), None)[1]))  # i32[P, C]
  differ = False
  for r in range(4):
    choices = np.asarray(drew(state.population.members.policy))
    drawn = [int(np.sum(np.asarray(SPACE.local_steps)[choices[m]]))
             for m in range(size)]
    differ |= len(set(drawn)) > 1
    state, rows, metrics = step(state, rows, problem(), jax.random.PRNGKey(r))
    assert int(metrics.local_steps_total) == sum(drawn), (r, drawn)
  assert differ  # some round's members drew different step counts


def test_fedpop_l_moves_the_worst_slots_next_to_the_best():
  policy = fedpop(SPACE, 1, 10, local_every=1, quantile=0.25, resample=0.0)
  state = policy.init(jax.random.PRNGKey(4), C)
  clients = jnp.arange(C)
  _, choices = policy.propose(state, clients, None)
  loss = jnp.array([0.9, 0.2, 0.5, 1.5, 0.1, 0.7])  # client c's
  moved = policy.update(state, Feedback(
      clients, choices, jnp.zeros(C), jnp.float32(0), jnp.float32(0),
      jnp.zeros(C), local_val_loss=loss))
  perm = np.asarray(jax.random.permutation(
      jax.random.fold_in(state.key, 0), C))
  slot_loss = np.empty(C)
  slot_loss[perm] = loss  # client c trained slot perm[c]
  order = np.argsort(slot_loss)
  best, worst = order[:2], order[-2:]  # k = ceil(0.25 * 6) = 2
  grid = axis_sizes(SPACE)
  for j in range(C):
    if j not in worst:
      assert int(moved.slots[j]) == int(state.slots[j])
      continue
    new = np.unravel_index(int(moved.slots[j]), grid)
    assert any(np.all(np.abs(np.subtract(new, np.unravel_index(
        int(state.slots[b]), grid))) <= 1) for b in best)
  assert int(moved.best) == int(order[0])
  _, preferred = policy.prefer(moved, clients, None)
  np.testing.assert_array_equal(preferred, moved.slots[order[0]])
  assert float(jnp.sum(moved.den)) == 0.0  # every score starts again


def test_fedpop_runs_from_the_cli_compiles_once_and_resumes_exactly(tmp_path):
  """A population of 3 over a client and a server axis on digits: one
  compilation, every member's steps counted, and a run stopped at round 4
  and resumed to 8 writes the straight run's rows."""
  import sys
  from pathlib import Path
  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'experiments'))
  import femnist  # noqa: E402  (experiments/femnist.py)
  argv = ['--dataset=digits', '--model=mlp', '--clients_per_round=4',
          '--max_clients=4', '--policy=fedpop', '--population=3',
          '--exploit_every=2', '--local_every=2', '--lrs=0.05,0.3',
          '--local_steps=2,10', '--batch_sizes=16', '--server_lrs=0.5,1',
          '--eval_every=2']
  straight, parts = tmp_path / 'straight', tmp_path / 'parts'
  assert femnist.main(argv + ['--rounds=8', f'--out_dir={straight}']) == 0
  assert femnist.main(argv + ['--rounds=4', f'--out_dir={parts}']) == 0
  assert femnist.main(argv + ['--rounds=8', '--resume',
                              f'--out_dir={parts}']) == 0
  import json
  rows = [[json.loads(line) for line in (out / 'metrics.jsonl')
           .read_text().splitlines()] for out in (straight, parts)]
  keys = ('round', 'global_acc', 'val_acc', 'val_loss', 'local_steps_total')
  assert [[r[k] for k in keys] for r in rows[0]] == \
      [[r[k] for k in keys] for r in rows[1]]
  summary = json.loads((straight / 'summary.json').read_text())
  assert summary['round_compilations'] == 1
  choices = [json.loads(line) for line in
             (straight / 'choices.jsonl').read_text().splitlines()]
  # the logged choices are the best member's; the steps are all three's
  assert rows[0][-1]['local_steps_total'] > sum(
      sum(c['local_steps']) for c in choices)


def test_a_members_slots_start_around_its_base_or_at_it():
  grid = (3, 2, 1, 1)
  spread = fedpop(SPACE, 1, local_every=5, resample=0.0).init(
      jax.random.PRNGKey(5), 40)
  base = np.unravel_index(int(spread.base), grid)
  offsets = np.array([np.subtract(np.unravel_index(int(z), grid), base)
                      for z in np.asarray(spread.slots)])
  assert np.all(np.abs(offsets) <= 1) and np.any(offsets != 0)
  assert int(spread.slots[0]) == int(spread.base)
  at_base = fedpop(SPACE, 1, local_every=0).init(jax.random.PRNGKey(5), 40)
  np.testing.assert_array_equal(at_base.slots, at_base.base)
