"""Shakespeare by speaking role and the character LSTM: the parser, the
partition's coverage and determinism, fedjax's SQLite files, the sequences'
layout, and that padding changes no loss."""
from __future__ import annotations

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pfhpo import models
from pfhpo.data import shakespeare
from pfhpo.data.federated import ClientSplit, write_sqlite
from pfhpo.errors import ConfigError
from pfhpo.policies.features import client_features

BOS, EOS, PAD = shakespeare.BOS, shakespeare.EOS, models.PAD

PLAY = """THE TRAGEDY OF A TEST

PERSONS REPRESENTED.

A Priest.
Marcellus, Officer.


ACT I.

Scene I. A platform.

[Enter Bernardo and
Francisco.]

Ber.
Who's there?

Fran.
Nay, answer me: stand.
Say.

Ber.
Long live the king!
[Aside.]
And the queen.

PROLOGUE.

Fran.

For this relief much thanks.

[Exeunt.]
"""

SHOUTED = """ACT 1

CHORUS.
O for a Muse of fire.

FIRST CITIZEN.
Peace, ho!

CHORUS.
Once more.
"""


def test_parser_reads_speeches_in_each_style():
  assert shakespeare.parse_play(PLAY, 'TEST') == [
      ('TEST_BER', ["Who's there?", 'Long live the king!\nAnd the queen.']),
      ('TEST_FRAN', ['Nay, answer me: stand.\nSay.',
                     'For this relief much thanks.'])]
  assert shakespeare.parse_play(SHOUTED, 'P') == [
      ('P_CHORUS', ['O for a Muse of fire.', 'Once more.']),
      ('P_FIRST CITIZEN', ['Peace, ho!'])]
  bare = SHOUTED.replace('CHORUS.', 'CHORUS').replace('CITIZEN.', 'CITIZEN')
  assert shakespeare.parse_play(bare, 'P') == shakespeare.parse_play(
      SHOUTED, 'P')


def test_sequences_are_fedjax_layout():
  """fedjax's preprocess_client example: ['ABCD', 'E'] at length 3."""
  x, y = shakespeare.to_sequences(['ABCD', 'E'], 3)
  a, b, c, d, e = (int(shakespeare.TABLE[ord(ch)]) for ch in 'ABCDE')
  np.testing.assert_array_equal(x, [[BOS, a, b], [c, d, EOS], [BOS, e, PAD]])
  np.testing.assert_array_equal(y, [[a, b, c], [d, EOS, BOS], [e, EOS, PAD]])
  assert x.dtype == np.uint8 and y.dtype == np.int32
  assert shakespeare.TABLE[ord('~')] == shakespeare.OOV  # not LEAF's
  assert len(set(shakespeare.TABLE[[ord(ch) for ch in shakespeare.LETTERS]])
             ) == 80


def speeches_of(split: ClientSplit, i: int) -> list[tuple[int, ...]]:
  """Client i's speeches back from its sequences, as token tuples."""
  x, y = split.client(i)
  real = y.reshape(-1) != PAD
  if not real.any():
    return []
  stream = np.append(x.reshape(-1)[real], y.reshape(-1)[real][-1])
  assert stream[0] == BOS and stream[-1] == EOS
  out, current = [], None
  for t in stream.tolist():
    if t == BOS:
      current = []
    elif t == EOS:
      out.append(tuple(current))
    else:
      current.append(t)
  return out


def tokens(speech: str) -> tuple[int, ...]:
  return tuple(shakespeare.TABLE[np.frombuffer(
      speech.encode('latin-1', 'replace'), np.uint8)].tolist())


def test_plays_partition_covers_each_kept_role_once_and_is_seeded():
  data = shakespeare.load(seed=0, max_clients=60)
  roles = dict(shakespeare.read_plays(shakespeare.text_dir()))
  assert data.num_clients == 60 and data.sequences
  assert data.train.x.shape[1:] == data.train.y.shape[1:] == (80,)
  assert data.num_classes == 84
  for i, cid in enumerate(data.client_ids):
    assert sum(map(len, roles[cid])) >= shakespeare.MIN_CHARS
    got = [s for split in (data.train, data.val, data.test)
           for s in speeches_of(split, i)]
    assert collections.Counter(got) == collections.Counter(
        map(tokens, roles[cid])), cid
  total = sum(map(len, (data.train.y, data.val.y, data.test.y)))
  assert 0.05 < len(data.val.y) / total < 0.15  # ~ val_fraction 0.1
  again = shakespeare.load(seed=0, max_clients=60)
  other = shakespeare.load(seed=1, max_clients=60)
  np.testing.assert_array_equal(again.train.x, data.train.x)
  np.testing.assert_array_equal(again.val.y, data.val.y)
  assert other.client_ids == data.client_ids
  assert not np.array_equal(other.val.y[:50], data.val.y[:50])


def test_every_play_yields_roles():
  roles = shakespeare.read_plays(shakespeare.text_dir())
  plays = {cid.rsplit('_', 1)[0] for cid, _ in roles}
  assert len(plays) == 37
  kept = [cid for cid, s in roles
          if sum(map(len, s)) >= shakespeare.MIN_CHARS]
  assert 300 < len(kept) < 600
  assert 'HAMLET_HAM' in kept and 'OTHELLO_IAGO' in kept


def test_fedjax_sqlite_files(tmp_path):
  """fedjax's format: train speeches to train/val, the test file's to test."""
  rng = np.random.default_rng(0)
  words = ['to be', 'or not', 'that is', 'the question', 'whether',
           "'tis nobler"]
  snippets = lambda n: np.array(
      [' '.join(rng.choice(words, 12)).encode() for _ in range(n)],
      dtype=object)
  train = {'HAMLET_HAMLET': {'snippets': snippets(40)},
           'HAMLET_OPHELIA': {'snippets': snippets(30)},
           'HAMLET_GHOST': {'snippets': snippets(2)}}  # below min_chars
  test = {'HAMLET_HAMLET': {'snippets': snippets(5)}}
  write_sqlite(tmp_path / 'shakespeare_train.sqlite', train)
  write_sqlite(tmp_path / 'shakespeare_test.sqlite', test)
  data = shakespeare.load(data_dir=str(tmp_path), min_chars=500)
  assert data.client_ids == ('HAMLET_HAMLET', 'HAMLET_OPHELIA')
  for i, cid in enumerate(data.client_ids):
    mine = [s.decode() for s in train[cid]['snippets']]
    got = speeches_of(data.train, i) + speeches_of(data.val, i)
    assert collections.Counter(got) == collections.Counter(map(tokens, mine))
  assert speeches_of(data.test, 0) == [
      tokens(s.decode()) for s in test['HAMLET_HAMLET']['snippets']]
  assert data.test.counts[1] == 0
  with pytest.raises(ConfigError, match='shakespeare_test.sqlite'):
    shakespeare.load(data_dir=str(tmp_path / 'nowhere'))
  (tmp_path / 'shakespeare_test.sqlite').write_bytes(b'not sqlite')
  with pytest.raises(ConfigError, match='not a valid fedjax Shakespeare'):
    shakespeare.load(data_dir=str(tmp_path))


def test_lstm_size_and_padding_changes_no_loss():
  model = models.create('lstm', (80,), 84)
  params = model.init(jax.random.PRNGKey(0))
  n = sum(a.size for a in jax.tree_util.tree_leaves(params))
  lstm = lambda i, h: 4 * i * h + 4 * (h * h + h)  # input, hidden + bias
  assert n == 84 * 8 + lstm(8, 256) + lstm(256, 256) + 256 * 84 + 84
  rng = np.random.default_rng(0)
  x = rng.integers(3, 84, (3, 80)).astype(np.int32)
  y = rng.integers(3, 84, (3, 80)).astype(np.int32)
  length = np.array([80, 37, 5])
  pad = np.arange(80) >= length[:, None]
  x[pad], y[pad] = PAD, PAD
  logits = model.apply(params, jnp.asarray(x))
  assert logits.shape == (3, 80, 84)
  loss = models.cross_entropy(logits, jnp.asarray(y))
  acc = models.accuracy(logits, jnp.asarray(y))
  for i, t in enumerate(length):  # the sequence alone, unpadded
    alone = model.apply(params, jnp.asarray(x[i:i + 1, :t]))[0]  # [t, 84]
    nll = -jax.nn.log_softmax(alone)[np.arange(t), y[i, :t]]
    np.testing.assert_allclose(loss[i], nll.mean(), rtol=1e-5)
    np.testing.assert_allclose(acc[i], np.mean(
        np.asarray(alone.argmax(-1)) == y[i, :t]), rtol=1e-6)
  # A different padding token value would change nothing either: the
  # positions after a sequence's end never reach an earlier output.
  x2 = np.where(pad, 7, x)
  np.testing.assert_allclose(models.cross_entropy(
      model.apply(params, jnp.asarray(x2)), jnp.asarray(y)), loss, rtol=1e-6)


def test_client_features_count_tokens_but_padding():
  """The policies' view of a client (its token histogram's entropy, by
  `features.client_features`) ignores PAD: a pure client with padding is
  as pure as one without."""
  y = np.array([[3, 3, PAD, PAD], [3, 3, 3, 3], [3, 4, 5, 6]])  # i32[N, T]
  phi = client_features(y, np.arange(3), 3, 10)  # [C, 2 + classes]
  entropy, pad_share = phi[:, -1], phi[:, 1 + PAD]
  assert entropy[0] == entropy[1] < entropy[2]
  np.testing.assert_array_equal(pad_share, 0.0)
