"""Client groups that need different configurations: a heterogeneous
federation made from a homogeneous one.

A fraction of the clients become `noisy` writers: each of their training
labels is, with probability `noise_rate`, replaced by another class: one
drawn uniformly (`noise_kind='symmetric'`) or the next one, c -> c + 1 mod
classes (`'pair'`, an annotator who confuses two neighbouring classes
consistently). Both are Han et al.'s (NeurIPS 2018, "Co-teaching"), as in
the noisy-client studies of federated learning (e.g. Xu et al., CVPR 2022,
"FedCorr"). Symmetric noise below 1 - 1/classes keeps the true class the
most frequent label, so averaging still recovers it; pair noise above 1/2
makes the wrong class the majority, and such a client teaches the model a
wrong mapping. Another fraction become `few`
writers, keeping only their first `few_examples` training examples. The
rest stay `clean`. Only the training splits change: validation and test
labels stay true and complete, so the aggregate is still judged on every
writer's real task.

The groups are drawn once from the data seed: client i's group is
`FederatedData.client_group[i]`, an index into `FederatedData.groups`.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from pfhpo.data.federated import ClientSplit, FederatedData
from pfhpo.settings import check_choice, require

GROUPS = ('clean', 'noisy', 'few')
NOISE_KINDS = ('symmetric', 'pair')


def check_groups(noisy_fraction: float, noise_rate: float,
                 few_fraction: float, few_examples: int,
                 noise_kind: str = 'symmetric') -> None:
  """The group settings, each in its range (a ConfigError naming it)."""
  check_choice('noise_kind', noise_kind, NOISE_KINDS)
  for name, value in (('noisy_fraction', noisy_fraction),
                      ('few_fraction', few_fraction),
                      ('noise_rate', noise_rate)):
    require(0 <= value <= 1, f'`{name}` must be in [0, 1], got {value}')
  require(noisy_fraction + few_fraction <= 1,
          f'`noisy_fraction` + `few_fraction` must be at most 1, got '
          f'{noisy_fraction} + {few_fraction}')
  require(few_examples >= 1,
          f'`few_examples` must be >= 1, got {few_examples}')


def group_names(noisy_fraction: float, few_fraction: float
                ) -> tuple[str, ...]:
  """The groups `with_groups` makes: GROUPS, or the one group every loader
  returns when both fractions are 0."""
  return GROUPS if noisy_fraction or few_fraction else ('all',)


def with_groups(data: FederatedData, noisy_fraction: float, noise_rate: float,
                few_fraction: float, few_examples: int, seed: int,
                noise_kind: str = 'symmetric') -> FederatedData:
  """`data` with round(noisy_fraction C) noisy and round(few_fraction C) few
  writers, drawn at random (seeded); `data` itself when both fractions
  are 0."""
  check_groups(noisy_fraction, noise_rate, few_fraction, few_examples,
               noise_kind)
  if len(group_names(noisy_fraction, few_fraction)) == 1:
    return data
  c = data.num_clients
  n_noisy, n_few = round(noisy_fraction * c), round(few_fraction * c)
  rng = np.random.default_rng([seed, 1])  # apart from the partition's draws
  order = rng.permutation(c)
  group = np.zeros(c, np.int32)  # i32[C]
  group[order[:n_noisy]] = GROUPS.index('noisy')
  group[order[n_noisy:n_noisy + n_few]] = GROUPS.index('few')
  train = data.train
  # Example j of client i: row client_of[j], position j - offsets[i] of the
  # [C, width] draws below (drawn over the padded shape, as they were when
  # splits were padded, so that a seed keeps its federation).
  owner = train.client_of  # i32[N]
  position = np.arange(len(train.y)) - train.offsets[owner]  # i64[N]
  shape = (c, train.width)
  noisy = group[owner] == GROUPS.index('noisy')  # bool[N]
  flip = noisy & (rng.random(shape)[owner, position] < noise_rate)
  # another class: y + 1 + U{0, ..., classes - 2}, or y + 1 (mod classes)
  shift = (rng.integers(0, data.num_classes - 1, shape)[owner, position]
           if noise_kind == 'symmetric' else 0)
  other = (train.y + 1 + shift) % data.num_classes
  y = np.where(flip, other, train.y).astype(np.int32)
  keep = ~((group[owner] == GROUPS.index('few')) & (position >= few_examples))
  counts = np.bincount(owner[keep], minlength=c)
  return dataclasses.replace(
      data, train=ClientSplit(train.x[keep], y[keep],
                              np.concatenate([[0], np.cumsum(counts)]),
                              train.width),
      groups=GROUPS, client_group=group)
