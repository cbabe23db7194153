"""The evaluations behind the reported figures, against plain loops over
clients: the global model's (`global_acc`, `global_loss`,
`client_acc_mean`) and the personalised one (`personal_acc`,
`personal_acc_p10` and the pooled figure).

A small federation whose clients differ in their train and test counts
(two have no test examples), each fine-tuned with its own configuration.
With the batch set to the client's count, FedAvg's fine-tuning is full-batch
gradient descent, which the reference writes with nothing of the library's
local update: the compiled, blocked, chunked evaluation must give every
client the accuracy of its own fine-tuned model, NaN where it has no test
data, and the summary must be the mean, the tenth percentile and the
test-count-weighted mean over the clients with test data.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pfhpo import models
from pfhpo.data.federated import ClientSplit
from pfhpo.evaluate import (group_means, make_eval_set, make_evaluate,
                            make_personalized_evaluate, summarize_personal)
from pfhpo.federated.client import sgd_client
from pfhpo.federated.local_update import make_local_update
from pfhpo.types import ClientHParams

FEATURES, CLASSES = 4, 3
TRAIN = np.array([3, 5, 8, 2, 6, 4, 7])
TEST = np.array([9, 0, 12, 7, 0, 11, 13])  # clients 1 and 4: no test data
C = len(TRAIN)
# Each client's own configuration: client 3 does not move (lr 0), so its
# personal model is the global one.
LR = np.array([0.5, 1.0, 0.2, 0.0, 0.8, 1.5, 0.3], np.float32)
STEPS = np.array([3, 1, 5, 2, 4, 6, 2], np.int32)


def _split(counts, rng) -> ClientSplit:
  n = int(counts.sum())
  # Each client's labels follow its own rule of the features, so that
  # fine-tuning moves each client's accuracy its own way.
  x = rng.normal(size=(n, FEATURES)).astype(np.float32)
  owner = np.repeat(np.arange(C), counts)
  y = (np.argmax(x[:, :CLASSES] * (1 + owner[:, None] % 3), 1) + owner) % CLASSES
  return ClientSplit(x, y.astype(np.int32),
                     np.concatenate([[0], np.cumsum(counts)]),
                     int(max(counts.max(), 1)))


def _reference(params, model, train: ClientSplit, test: ClientSplit):
  """Client by client: full-batch gradient descent on its train examples
  with its own lr and steps, then the accuracy on its own test examples."""

  def loss(p, x, y):
    logits = model.apply(p, x)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])

  acc = np.full(C, np.nan)
  for i in range(C):
    p = params
    x, y = train.client(i)
    for _ in range(STEPS[i]):
      g = jax.grad(loss)(p, jnp.asarray(x), jnp.asarray(y))
      p = jax.tree_util.tree_map(lambda a, b: a - LR[i] * b, p, g)
    tx, ty = test.client(i)
    if len(ty):
      pred = np.argmax(np.asarray(model.apply(p, jnp.asarray(tx))), 1)
      acc[i] = np.mean(pred == ty)
  return acc


def test_the_global_models_figures_are_a_plain_loop_over_clients():
  """The global model on every client's test split, its examples end to end
  in chunks of 5 (the last padded): each client's accuracy on its own
  examples; the accuracy and the loss pooled over every example (client i
  weighs n_i); the accuracy's mean over the clients with examples only."""
  rng = np.random.default_rng(0)
  test = _split(TEST, rng)
  model = models.create('logreg', (FEATURES,), CLASSES)
  params = jax.tree_util.tree_map(  # a model whose clients' accuracies differ
      lambda a: jnp.asarray(rng.normal(size=a.shape), a.dtype),
      model.init(jax.random.PRNGKey(0)))
  assert TEST.sum() % 5
  got = jax.jit(make_evaluate(model, lambda x: x, C, 5))(
      params, make_eval_set(test, 5))
  right, loss = [], []
  for i in np.flatnonzero(TEST):
    x, y = test.client(i)
    logits = np.asarray(model.apply(params, jnp.asarray(x)), np.float64)
    right.append(np.argmax(logits, 1) == y)
    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    loss.append(-log_p[np.arange(len(y)), y])
  acc = np.array([r.mean() for r in right])
  assert np.ptp(acc) > 0.2  # a pooled figure differs from a mean
  np.testing.assert_allclose(np.asarray(got.client_acc)[TEST > 0], acc,
                             atol=1e-6)
  assert float(got.acc) == pytest.approx(np.concatenate(right).mean())
  assert float(got.loss) == pytest.approx(np.concatenate(loss).mean(),
                                          rel=1e-5)
  assert float(got.client_acc_mean) == pytest.approx(acc.mean())
  assert abs(acc.mean() - np.concatenate(right).mean()) > 0.01


@pytest.mark.parametrize('block,chunk', [(3, 2), (7, 7)])
def test_each_client_is_tested_with_its_own_fine_tuned_model(block, chunk):
  """Blocks of 3 clients (the last padded) with 2 side by side, and all
  at once: the same per-client accuracies as the loop, NaN exactly where a
  client has no test examples; the summary's mean, p10 and pooled figures
  are those of the clients with test data (p10 by linear interpolation,
  numpy's default, written out here), and the unseen clients' mean is
  over the unseen ones among them."""
  rng = np.random.default_rng(0)
  train, test = _split(TRAIN, rng), _split(TEST, rng)
  model = models.create('logreg', (FEATURES,), CLASSES)
  params = model.init(jax.random.PRNGKey(0))
  local = make_local_update(model, lambda x: x, int(STEPS.max()),
                            int(TRAIN.max()))
  evaluate = make_personalized_evaluate(
      model, lambda x: x, sgd_client(local).personalize, chunk, block)
  hparams = ClientHParams(LR, STEPS, TRAIN.astype(np.int32),
                          np.zeros(C, np.float32))
  got = evaluate(params, (), train, hparams, jax.random.split(
      jax.random.PRNGKey(1), C), test)
  want = _reference(params, model, train, test)
  np.testing.assert_array_equal(np.isnan(got), TEST == 0)
  np.testing.assert_allclose(got, want, atol=1e-6)
  # the clients really differ, and fine-tuning really changed some
  has = TEST > 0
  untuned = np.argmax(np.asarray(model.apply(params, jnp.asarray(
      test.client(3)[0]))), 1)
  assert got[3] == pytest.approx(np.mean(untuned == test.client(3)[1]))

  # clients 2, 4 and 5 never in a round; 4 has no test data, so it is not
  # among the unseen clients the summary counts
  seen = np.array([1, 1, 0, 1, 0, 0, 1], bool)
  summary = summarize_personal(got, test.counts, seen)
  acc = want[has]  # clients 0, 2, 3, 5, 6
  ordered = np.sort(acc)
  assert len(set(ordered)) == 5  # no ties: a wrong percentile shows
  rank = 0.1 * (len(acc) - 1)  # between the lowest and the next
  lo = int(np.floor(rank))
  p10 = ordered[lo] + (rank - lo) * (ordered[lo + 1] - ordered[lo])
  assert summary.mean == pytest.approx(acc.sum() / 5)
  assert summary.p10 == pytest.approx(p10)
  assert summary.pooled == pytest.approx(
      float((TEST[has] * acc).sum() / TEST.sum()))
  assert summary.unseen == 2
  assert summary.unseen_mean == pytest.approx((want[2] + want[5]) / 2)


@pytest.mark.parametrize('preferred,moves', [(1, False), (0, True)])
def test_a_run_fine_tunes_each_client_with_the_configuration_its_policy_prefers(
    preferred, moves):
  """A run's personalised figures (`Experiment.personalize`) fine-tune
  every client with the configuration its policy prefers: the static
  policy on configuration 1, whose learning rate is 1e-8, leaves each
  client's personal model the global one to float precision, so every
  client's personal accuracy is its global accuracy; on configuration 0
  (lr 0.3, 5 steps) fine-tuning moves them."""
  from pfhpo.experiment.flags import command_from_args
  from pfhpo.experiment.setup import build
  cfg = command_from_args([
      '--dataset=digits', '--model=mlp', '--policy=static',
      f'--static_index={preferred}', '--lrs=0.3,1e-8', '--local_steps=5',
      '--batch_sizes=16', '--clients_per_round=4']).config
  exp = build(cfg)
  state, table = exp.algorithm.init(jax.random.PRNGKey(0),
                                    exp.data.num_clients)
  personal = exp.personalize(state, table,
                             np.ones(exp.data.num_clients, bool))
  global_acc = np.asarray(exp.evaluate(state.server.params).client_acc)
  has = exp.data.test.counts > 0
  assert has.all()
  if moves:
    assert np.abs(personal.client_acc - global_acc).max() > 0.05
  else:
    np.testing.assert_array_equal(personal.client_acc, global_acc)
  # configurations given instead of the preferred: lr 1e-8 for every
  # client leaves each personal model the global one
  still = exp.personalize(state, table, np.ones(exp.data.num_clients, bool),
                          np.ones(exp.data.num_clients, np.int32))
  np.testing.assert_array_equal(still.client_acc, global_acc)


def test_a_finished_runs_personal_figures_come_back_from_its_checkpoint(
    tmp_path):
  """experiments/personal_configs.py restores a finished run's last
  checkpoint and fine-tunes every client with each configuration: at the
  preferred one it gives the run's own summary figure exactly, and a
  static run's preferred configuration is its own."""
  import json
  import sys
  from pathlib import Path
  sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'experiments'))
  import femnist  # noqa: E402  (experiments/femnist.py)
  import personal_configs  # noqa: E402
  out = tmp_path / 'run'
  assert femnist.main([
      '--dataset=digits', '--model=mlp', '--policy=static',
      '--static_index=1', '--lrs=0.3,0.05', '--local_steps=5',
      '--batch_sizes=16', '--clients_per_round=4', '--max_clients=6',
      '--rounds=2', f'--out_dir={out}']) == 0
  summary = json.loads((out / 'summary.json').read_text())
  row = personal_configs.diagnose(out)
  assert row['round'] == 2
  assert row['preferred'] == round(summary['personal_acc'], 4)
  assert row['preferred_p10'] == round(summary['personal_acc_p10'], 4)
  assert row['preferred_configs'] == [0, 6]
  assert row['per_config'][1] == round(row['preferred'], 3)
  assert row['per_config'][0] != round(row['preferred'], 3)
  # a directory that holds no run is one line, exit 2
  assert personal_configs.main([str(tmp_path / 'nowhere')]) == 2


def test_a_groups_figure_weighs_its_clients_by_their_examples():
  """group_means: per group, sum n_i v_i / sum n_i over its clients with
  examples and a value; a client with no examples or a NaN value is left
  out, and a group left with none is NaN."""
  values = np.array([0.2, 0.9, 0.5, np.nan, 0.7, 0.1, 0.4])
  weights = np.array([3, 1, 0, 5, 2, 4, 6])
  group = np.array([0, 0, 1, 0, 2, 2, 0])
  got = group_means(values, weights, group, 4)
  want = [(3 * 0.2 + 1 * 0.9 + 6 * 0.4) / 10, np.nan,
          (2 * 0.7 + 4 * 0.1) / 6, np.nan]
  np.testing.assert_allclose(got, want, rtol=1e-12)
