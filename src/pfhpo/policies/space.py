"""The hyper-parameter search spaces: H candidate client configurations,
and S server configurations (`ServerSpace`) for a policy that also
chooses the server's learning rate and momentum.

The space is the Cartesian product of the values given for each axis
(lrs 0.01, 0.1 x local_steps 1, 5 x batch_sizes 16 is H = 4 candidates,
times the values of the algorithm's own tuned setting where it has one and
they are searched: Ditto's lambda, FedRep's body steps), held as four
arrays so that a client's configuration is an index z in
[0, H) and `hparams_for(space, z)` gathers its values inside the compiled
round. The most steps and the largest batch a client may take fix the
round's static shapes: by default the space's own largest values, or larger
bounds (`max_local_steps`, `max_batch_size`) for policies that move
outside the grid (FATHOM); a candidate above its bound is an error.
"""
from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from pfhpo.settings import require
from pfhpo.types import ClientHParams


class SearchSpace(NamedTuple):
  """H candidate configurations, in row-major order of (lr, steps, batch,
  tuned), and the bounds the round is compiled for."""
  lr: np.ndarray  # f32[H]
  local_steps: np.ndarray  # i32[H]
  batch_size: np.ndarray  # i32[H]
  tuned: np.ndarray  # f32[H] the algorithm's setting (0 where it has none)
  max_steps: int  # the step loop's length
  max_batch: int  # rows of every batch
  tuned_name: str = ''  # the tuned setting's name where it is searched

  @property
  def size(self) -> int:
    return len(self.lr)

  def describe(self, z: int) -> str:
    """'lr=0.1 steps=5 batch=16' (and ' ditto_lambda=0.1' where the
    algorithm's setting is searched) for candidate z."""
    return describe(self.lr[z], self.local_steps[z], self.batch_size[z],
                    self.tuned[z], self.tuned_name)


def describe(lr: float, local_steps: int, batch_size: int, tuned: float = 0.0,
             tuned_name: str = '') -> str:
  """'lr=0.1 steps=5 batch=16': one configuration, on or off the grid."""
  text = f'lr={lr:g} steps={local_steps} batch={batch_size}'
  return f'{text} {tuned_name}={tuned:g}' if tuned_name else text


def make_space(lrs: Sequence[float], local_steps: Sequence[int],
               batch_sizes: Sequence[int], max_local_steps: int | None = None,
               max_batch_size: int | None = None,
               tuned: Sequence[float] = (0.0,),
               tuned_name: str = '') -> SearchSpace:
  """The Cartesian product of the axes, compiled for `max_local_steps` and
  `max_batch_size` (None: the axes' largest values); a bad axis is a
  ConfigError. `tuned` holds the values of the algorithm's own setting
  (`AlgorithmConfig.tuned`), an axis named `tuned_name` where searched."""
  axes = {'lrs': lrs, 'local_steps': local_steps, 'batch_sizes': batch_sizes}
  for name, values in axes.items():
    require(len(values) > 0, f'`{name}` is empty; give at least one value')
    require(len(set(values)) == len(values),
            f'`{name}` repeats a value ({list(values)}); list each value once')
  require(all(0 < v < float('inf') for v in lrs),
          f'`lrs` must be positive numbers, got {tuple(lrs)}')
  for name in ('local_steps', 'batch_sizes'):
    require(all(int(v) == v and v >= 1 for v in axes[name]),
            f'`{name}` must be integers >= 1, got {tuple(axes[name])}')
  bounds = []
  for name, bound_name, bound in (('local_steps', 'max_local_steps',
                                   max_local_steps),
                                  ('batch_sizes', 'max_batch_size',
                                   max_batch_size)):
    top = int(max(axes[name]))
    require(bound is None or top <= bound,
            f'`{name}` holds {top}, above `{bound_name}`={bound} that the '
            f'round is compiled for; raise `{bound_name}` to {top} or drop '
            f'the value.')
    bounds.append(top if bound is None else int(bound))
  grid = list(itertools.product(lrs, local_steps, batch_sizes, tuned))
  return SearchSpace(np.array([g[0] for g in grid], np.float32),
                     np.array([g[1] for g in grid], np.int32),
                     np.array([g[2] for g in grid], np.int32),
                     np.array([g[3] for g in grid], np.float32), *bounds,
                     tuned_name)


def hparams_for(space: SearchSpace, choices) -> ClientHParams:
  """Per-client hyper-parameters of the chosen candidates: i32[K] -> [K] each."""
  return ClientHParams(jnp.asarray(space.lr)[choices],
                       jnp.asarray(space.local_steps)[choices],
                       jnp.asarray(space.batch_size)[choices],
                       jnp.asarray(space.tuned)[choices])


class ServerSpace(NamedTuple):
  """S server configurations: the product of the searched learning rates
  and momenta, row-major (a None axis is not searched: the run's own)."""
  lrs: tuple[float, ...] | None
  momenta: tuple[float, ...] | None

  @property
  def shape(self) -> tuple[int, int]:
    return len(self.lrs or (0,)), len(self.momenta or (0,))

  @property
  def size(self) -> int:
    return int(np.prod(self.shape))

  def values(self) -> tuple[np.ndarray, np.ndarray]:
    """(f32[S] learning rates, f32[S] momenta); NaN on an axis not
    searched."""
    grid = list(itertools.product(self.lrs or (np.nan,),
                                  self.momenta or (np.nan,)))
    return (np.array([g[0] for g in grid], np.float32),
            np.array([g[1] for g in grid], np.float32))

  def describe(self, s: int) -> str:
    """' server_lr=0.5 server_momentum=0.9' of the axes searched."""
    lr, m = (float(v[s]) for v in self.values())
    return ((f' server_lr={lr:g}' if self.lrs else '') +
            (f' server_momentum={m:g}' if self.momenta else ''))


def server_space(lrs: Sequence[float], momenta: Sequence[float],
                 server_opt: str) -> ServerSpace | None:
  """The server configurations a policy searches (None: none)."""
  for name, values in (('server_lrs', lrs), ('server_momenta', momenta)):
    require(len(set(values)) == len(values),
            f'`{name}` repeats a value ({list(values)}); list each once')
  require(all(lr > 0 for lr in lrs),
          f'`server_lrs` must be > 0, got {list(lrs)}')
  require(all(0 <= m < 1 for m in momenta),
          f'`server_momenta` must be in [0, 1), got {list(momenta)}')
  require(not momenta or server_opt != 'adam',
          '`server_momenta` are momenta of `server_opt`=sgd or momentum; '
          'adam has its own (drop them, or choose sgd)')
  if not lrs and not momenta:
    return None
  return ServerSpace(tuple(lrs) or None, tuple(momenta) or None)
