"""FedEx: a shared categorical over configurations, moved by exponentiated
gradient from the clients' validation losses after local training.

Federated Hyperparameter Tuning: Challenges, Baselines, and Connections to
Weight-Sharing. M. Khodak, R. Tu, T. Li, L. Li, M.-F. Balcan, V. Smith,
A. Talwalkar. NeurIPS 2021. https://arxiv.org/abs/2106.04502

Every sampled client i draws z_i ~ theta, trains with configuration z_i and
reports L_i, the loss of its trained model on its own validation split, and
V_i, that split's size. With w_i = V_i / sum_j V_j and the baseline lambda,

    g_j   = sum_i w_i (L_i - lambda) 1[z_i = j] / theta_j          (Alg. 1)
    theta <- theta * exp(-eta g) / Z,    eta = sqrt(2 log H) / ||g||_inf

the importance-weighted estimate of the gradient of E[L] and the
"aggressive" step schedule of the authors' released experiments. theta is
held as normalised log-probabilities. The baseline is the discounted mean of
the previous rounds' weighted mean losses,

    lambda_t = sum_{s<t} gamma^(t-1-s) Lbar_s / sum_{s<t} gamma^(t-1-s)

(0 in the first round; gamma = 0 uses the previous round alone, the
FederatedScope default; gamma = 1 the plain mean).

A client whose update diverged reports no usable loss; it counts as worse
than every client that trained (`base.penalized`: the round's largest loss,
at least lambda, plus three standard deviations).

Departures: L_i is the cross-entropy (the reference code's `--loss` option;
its default is the error rate); one categorical over the H configurations of
the product space rather than one per grid axis (the flat "arms" form);
`prefer` takes theta's argmax for the fine-tuned ("refine") evaluation
(the reference's `mle=True`; its default samples from theta).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from pfhpo.policies.base import Policy, check_decay, failed_of, penalized
from pfhpo.policies.distribution import distribution_policy
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import checked, setting
from pfhpo.types import Feedback


class DiscountedMean(NamedTuple):
  """sum_s gamma^(t-s) x_s and sum_s gamma^(t-s) over the values added."""
  total: jax.Array  # f32[]
  weight: jax.Array  # f32[]

  @staticmethod
  def empty() -> 'DiscountedMean':
    return DiscountedMean(jnp.zeros((), jnp.float32),
                          jnp.zeros((), jnp.float32))

  def value(self) -> jax.Array:
    """The discounted mean, 0 before anything was added."""
    return jnp.where(self.weight > 0,
                     self.total / jnp.where(self.weight > 0, self.weight, 1.0),
                     0.0)

  def add(self, x: jax.Array, gamma: float) -> 'DiscountedMean':
    return DiscountedMean(gamma * self.total + x, gamma * self.weight + 1.0)


def round_signal(fb: Feedback, baseline: DiscountedMean):
  """(w_i (L_i - lambda): f32[K], the round's mean loss sum_i w_i L_i: f32[]),
  with w_i = V_i / sum_j V_j the round's validation sizes and a diverged
  client's L_i penalised."""
  v = fb.local_val_count.astype(jnp.float32)
  w = v / jnp.maximum(jnp.sum(v), 1.0)
  losses = penalized(fb.local_val_loss, failed_of(fb), baseline.value())
  return w * (losses - baseline.value()), jnp.sum(w * losses)


class FedExState(NamedTuple):
  log_theta: jax.Array  # f32[1, H] normalised log-probabilities
  baseline: DiscountedMean


def fedex(space: SearchSpace, baseline_decay: float | None = None) -> Policy:
  """`baseline_decay` is gamma above (None: 0, FederatedScope's default)."""
  gamma = 0.0 if baseline_decay is None else baseline_decay
  eta0 = jnp.sqrt(2.0 * jnp.log(float(space.size)))

  def init(key, num_clients):
    del key, num_clients
    return FedExState(
        jnp.full((1, space.size), -np.log(space.size), jnp.float32),
        DiscountedMean.empty())

  def logits(state, clients):
    return jnp.broadcast_to(state.log_theta, (*clients.shape, space.size))

  def update(state: FedExState, fb: Feedback) -> FedExState:
    advantage, mean_loss = round_signal(fb, state.baseline)  # f32[K], f32[]
    theta = jnp.exp(state.log_theta[0])  # f32[H]
    grad = jnp.zeros(space.size).at[fb.choices].add(
        advantage / theta[fb.choices])
    scale = jnp.max(jnp.abs(grad))
    eta = eta0 / jnp.where(scale > 0, scale, 1.0)
    log_theta = jax.nn.log_softmax(state.log_theta - eta * grad)
    return FedExState(log_theta, state.baseline.add(mean_loss, gamma))

  return distribution_policy(space, init, logits, update,
                             frozenset({'local_val'}))


@checked
class FedExConfig:
  baseline_decay: float | None = setting(
      None, 'discount gamma of the baseline of past rounds\' losses, in '
      '[0, 1] (unset: 0, the previous round alone)')

  def __post_init__(self):
    check_decay(self.baseline_decay, closed=True)


@register('fedex', FedExConfig)
def _build(config: FedExConfig, context: PolicyContext) -> Policy:
  return fedex(context.space, config.baseline_decay)
