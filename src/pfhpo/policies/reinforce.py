"""REINFORCE with a fully delayed, shared reward (the plain baseline).

Williams, "Simple statistical gradient-following algorithms for
connectionist reinforcement learning", Machine Learning 1992.

Every client of the round gets the same reward R = validation accuracy of
the aggregated model, known only after all of them were decided:

    alpha_i <- alpha_i + lr * (R - b) grad log p(z_i)
    b       <- beta b + (1 - beta) R          (optional moving-average baseline)

With `baseline_decay=None`, b = 0. A client whose update diverged gets the
worst reward, R_i = 0. The baseline used in a round is the one
from before that round's reward, so the update stays unbiased.
"""
from __future__ import annotations


import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.policies.base import Policy, check_decay, failed_of
from pfhpo.policies.logits import (BASIS_HELP, PRIOR_RATE_HELP, SCOPE_HELP,
                                   LogitsConfig, PolicyState,
                                   categorical_policy, check_prior_rate,
                                   logit_basis, score_update)
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import checked, param_default, setting
from pfhpo.types import Feedback


def reinforce(space: SearchSpace, optimizer: optax.GradientTransformation,
              scope: str = 'client',
              baseline_decay: float | None = 0.9,
              features: np.ndarray | None = None,
              prior_rate: float = 1.0, basis: str = 'joint') -> Policy:
  """`features`: f32[C, F] the clients' phi, for the 'features' scope;
  `prior_rate`: the 'prior' scope's shared row moves by this many times the
  round's mean score; `basis`: how a row gives the logits
  (`logits.BASES`)."""
  check_prior_rate(prior_rate)
  basis = logit_basis(space, basis)  # f32[P, H]

  def update(state: PolicyState, fb: Feedback) -> PolicyState:
    reward = fb.val_acc
    # A client whose update diverged gets the worst reward, accuracy 0.
    advantage = -(jnp.where(failed_of(fb), 0.0, reward) - state.baseline)
    state = score_update(state, optimizer, scope, basis, fb.clients,
                         fb.choices, advantage, features=features, prior_rate=prior_rate)
    if baseline_decay is None:
      return state
    return state._replace(baseline=baseline_decay * state.baseline +
                          (1 - baseline_decay) * reward)

  return categorical_policy(space, optimizer, scope, update, basis,
                            features=features)


def _default(name: str):
  return param_default(reinforce, name)


@checked
class ReinforceConfig(LogitsConfig):
  """`reinforce`'s settings, its defaults `reinforce`'s own."""
  policy_scope: str = setting(_default('scope'), SCOPE_HELP)
  prior_rate: float = setting(_default('prior_rate'), PRIOR_RATE_HELP)
  policy_basis: str = setting(_default('basis'), BASIS_HELP)
  baseline_decay: float | None = setting(
      _default('baseline_decay'),
      'decay of the moving-average baseline of the reward (unset: none)')

  def __post_init__(self):
    super().__post_init__()
    check_decay(self.baseline_decay, closed=False)


@register('reinforce', ReinforceConfig)
def _build(config: ReinforceConfig, context: PolicyContext) -> Policy:
  return reinforce(context.space, config.optimizer(), config.policy_scope,
                   config.baseline_decay, context.client_features,
                   config.prior_rate, config.policy_basis)
