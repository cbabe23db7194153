"""Figures a run draws at the end (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(out: Path, exp, state, summary) -> None:
  """A run's figures: accuracy.png, and for a categorical policy policy.png
  and choices.png. `exp`: setup.Experiment, `state`: RunState, `summary`:
  Summary."""
  name = exp.cfg.policy.policy
  plot_accuracy(state.rows, out / 'accuracy.png',
                title=f'{name} on {exp.cfg.data.dataset} ({exp.cfg.model.model})')
  if exp.policy.probabilities is None:
    return
  everyone = np.arange(exp.data.num_clients, dtype=np.int32)
  probs = np.asarray(exp.policy.probabilities(state.algorithm.policy,
                                              everyone))  # f32[C, H]
  plot_policy(probs, summary.configurations, out / 'policy.png',
              title=f'{name}: final policy')
  plot_choices(np.array(state.choice_counts), summary.configurations,
               out / 'choices.png', title=f'{name}: configurations used')


def plot_accuracy(rows: Sequence, path: Path, title: str) -> None:
  """Global and client-mean test accuracy against the round; rows:
  MetricsRow."""
  rounds = [r.round for r in rows]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot(rounds, [r.global_acc for r in rows], label='global (pooled)')
  ax.plot(rounds, [r.client_acc_mean for r in rows], label='client mean')
  ax.set_xlabel('round')
  ax.set_ylabel('test accuracy')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_policy(probs, labels: Sequence[str], path: Path, title: str) -> None:
  """Heat map of p(configuration | client): rows clients, columns configs."""
  fig, ax = plt.subplots(figsize=(1.2 + 0.5 * len(labels),
                                  min(12, 2.5 + 0.04 * len(probs))))
  image = ax.imshow(probs, aspect='auto', cmap='viridis', vmin=0, vmax=1,
                    interpolation='nearest')
  ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
  ax.set_ylabel('client' if len(probs) > 1 else 'shared policy')
  ax.set_title(title)
  fig.colorbar(image, ax=ax, label='probability')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_choices(counts, labels: Sequence[str], path: Path, title: str) -> None:
  """Share of the round's clients using each configuration, round by round.

  counts: i64[rounds, H], how many of a round's clients chose each config.
  """
  shares = counts / counts.sum(1, keepdims=True)
  fig, ax = plt.subplots(figsize=(7, 4))
  ax.stackplot(range(1, len(shares) + 1), shares.T, labels=labels)
  ax.set_xlabel('round')
  ax.set_ylabel("share of the round's clients")
  ax.set_xlim(1, max(2, len(shares)))
  ax.set_ylim(0, 1)
  ax.set_title(title)
  ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_best_accuracy(curves: dict, path: Path, title: str) -> None:
  """Best-so-far global accuracy against the round: per method, the mean
  over its seeds and a band from their lowest to their highest.

  curves: {method: [[(round, global_acc), ...] per seed]}.
  """
  fig, ax = plt.subplots(figsize=(7, 4.5))
  _draw_best_accuracy(ax, curves, title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def plot_best_accuracy_panels(panels: dict, path: Path) -> None:
  """`plot_best_accuracy`'s figure for several models side by side, one
  panel each, sharing the accuracy axis: {panel title: curves}."""
  fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5),
                           sharey=True, squeeze=False)
  for ax, (title, curves) in zip(axes[0], panels.items()):
    _draw_best_accuracy(ax, curves, title)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _draw_best_accuracy(ax, curves: dict, title: str) -> None:
  for method, runs in curves.items():
    rounds = sorted({r for run in runs for r, _ in run})
    best = []
    for run in runs:  # best so far, carried to every evaluated round
      acc = dict(run)
      so_far, line = -np.inf, []
      for r in rounds:
        so_far = max(so_far, acc.get(r, -np.inf))
        line.append(so_far)
      best.append(line)
    best = np.array(best)  # f[seeds, rounds]
    best[~np.isfinite(best)] = np.nan
    mean = np.nanmean(best, 0)
    (handle,) = ax.plot(rounds, mean, label=method)
    if len(runs) > 1:
      ax.fill_between(rounds, np.nanmin(best, 0), np.nanmax(best, 0),
                      color=handle.get_color(), alpha=0.2)
  ax.set_xlabel('round')
  ax.set_ylabel('best global test accuracy so far')
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)


def plot_budget(curves: dict, marks: dict, path: Path, title: str) -> None:
  """The anytime figure of federated HPO papers: the test accuracy of the
  model chosen on validation so far against the client local steps spent
  (log scale); per method, the mean over its seeds and a band from their
  lowest to their highest, where every seed has a point.

  curves: {method: [[(local_steps, test_acc), ...] per seed]} (a step
  function, each point holding until the next, up to what it spent); marks: {label: [(local
  steps, test_acc) per seed]}, drawn as a point at their mean.
  """
  fig, ax = plt.subplots(figsize=(7, 4.5))
  spent = [s for runs in curves.values() for run in runs for s, _ in run]
  if spent:
    grid = np.geomspace(max(min(spent), 1), max(max(spent), 2), 200)
    for method, runs in curves.items():
      lines = []
      for run in runs:
        steps = np.array([s for s, _ in run], float)
        acc = np.array([a for _, a in run], float)
        at = np.searchsorted(steps, grid, side='right') - 1  # i[200]
        held = (at >= 0) & (grid <= steps[-1] * 1.0001)  # what it spent
        lines.append(np.where(held, acc[np.maximum(at, 0)], np.nan))
      lines = np.array(lines)  # f[seeds, 200]
      # drawn where every seed has spent that much and not more than it
      # spent in all (NaN elsewhere)
      low, mean, high = (f(lines, 0) for f in (np.min, np.mean, np.max))
      (handle,) = ax.plot(grid, mean, label=method)
      if len(runs) > 1:
        ax.fill_between(grid, low, high, color=handle.get_color(), alpha=0.2)
  for label, points in marks.items():
    ax.plot(np.mean([s for s, _ in points]), np.mean([a for _, a in points]),
            'k*', markersize=10, label=label)
  ax.set_xscale('log')
  ax.set_xlabel('client local steps spent (log)')
  ax.set_ylabel('test accuracy of the model chosen on validation')
  ax.set_title(title)
  ax.grid(alpha=0.3, which='both')
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
