"""Per-client credit assignment by back-propagation (the project's method).

The server aggregates theta_g(c) = theta + sum_i w_i c_i (theta_i - theta)
with dummy coefficients c = 1 and takes L = validation cross-entropy of
theta_g. Each client's credit is dL/dc_i, from `jax.grad` through the
aggregation; with Z_i one-hot over the H configurations and the
Gumbel-softmax relaxation (Jang et al., ICLR 2017; Maddison et al., ICLR
2017) taken to temperature 0, the gradient estimator of E[L] becomes

    alpha_i <- alpha_i - lr * dL/dc_i * grad_{alpha_i} log p(Z_i)

so a client whose update raised the validation loss (dL/dc_i > 0) makes
its configuration less likely, each client by its own credit instead of
one delayed reward shared by all.

A client whose update diverged (left out of the aggregate, so its dL/dc_i
is 0) gets a large positive credit instead: the round's largest credit
plus three standard deviations (`base.penalized`).

Variance reduction:
  baseline_decay: subtract a running mean of the round's mean credit (off
    by default), or with `baseline_scope`='client' each client's own
    running mean b_i of its credits (the control variate of a client's
    data's usefulness, which its credit carries whatever it drew; a client
    not measured yet takes the round's mean), the round's spread then
    taken of the centred credits.
  normalize: divide the round's credits by their standard deviation (on in
    `GumbelConfig`: decisive on the constructed problem, neutral on real
    data; BUILD_NOTES.md), or, when they do not spread (every client of the
    round failed, as in an aggregate the server rejected), by their
    largest magnitude.

Where the credit is taken and how far the policy explores (issue 12's
ablation, BUILD_NOTES.md):
  credit_at: dL/dc at c = t 1; t = 1/2 estimates each client's share of
    the round's loss change instead of its update's marginal value at the
    aggregate (`pfhpo.federated.round`).
  entropy_weight: an entropy bonus in the score update
    (`base.score_update`).
  credit_examples: the credit's backward pass on a fresh weighted sample
    of the validation set each round, an unbiased estimate of the full
    set's credit at a fraction of its cost (issue 14's overhead target).
  policy_scope: 'shared' adds a row every client's credit moves to the
    per-client rows, 'prior' the same row moved by `prior_rate` times the
    round's mean score (`logits`): alpha_i = a + b_i with

        a   <- a   - lr * (R / K) * sum_i dL/dc_i * grad_a log p(Z_i)
        b_i <- b_i - lr * dL/dc_i * grad_{b_i} log p(Z_i)

    over the round's K clients. `GumbelConfig`'s default (issue 28's
    ablation, BUILD_NOTES.md): 'prior' at R = 4, so the clients' common
    evidence settles the row they share within a few rounds while each
    offset keeps its client's own.
  horizon, horizon_credit, horizon_sample: the credit of the validation
    loss K rounds later, differentiated through the rounds between:
    exactly, with local training's Jacobian taken as the identity, or with
    that Jacobian estimated from `horizon_sample` of each later round's
    clients trained again; a row moves K - 1 rounds after its client drew
    (`pfhpo.federated.horizon`). `GumbelConfig`'s default (issue 28's
    ablation): K = 2, 'sampled' from 2 clients.

The server's learning rate and momentum (`server_lrs`, `server_momenta`)
are one more choice, one draw a round from a row of their own, credited by
dL_val/dc of a dummy scale c on the server step (`server_axis.py`).
"""
from __future__ import annotations


import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.federated.server import ServerSpace, server_space
from pfhpo.policies.base import (CREDITS, HORIZON_CREDITS, Policy,
                                 check_decay, diverged_of, penalized)
from pfhpo.policies.logits import (PRIOR_RATE_HELP, SCOPE_HELP,
                                   LogitsConfig, PolicyState,
                                   categorical_policy, check_prior_rate,
                                   logit_basis, score_update)
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.server_axis import server_axis
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import (check_choice, checked, default_of, require,
                            setting)
from pfhpo.types import Feedback


def gumbel(space: SearchSpace, optimizer: optax.GradientTransformation,
           scope: str = 'client', baseline_decay: float | None = None,
           normalize: bool = False, credit: str = 'delta',
           credit_at: float = 0.5, entropy_weight: float = 0.0,
           features: np.ndarray | None = None,
           credit_examples: int | None = None, horizon: int = 1,
           horizon_credit: str = 'exact',
           baseline_scope: str = 'round',
           server: ServerSpace | None = None,
           prior_rate: float = 1.0, horizon_sample: int = 2,
           basis: str = 'joint') -> Policy:
  """`credit`: differentiate the aggregate through the update ('delta') or
  the parameters ('params'); `credit_at`: the point c = t 1 where dL/dc is
  taken (see `pfhpo.federated.round`); `entropy_weight`: the exploration
  bonus of `base.score_update`; `features`: f32[C, F] the clients' phi,
  for the 'features' scope (`features.py`); `credit_examples`: the credit
  from a fresh sample of this many validation examples each round (None:
  every one; `pfhpo.federated.round`); `horizon`: the credit of the
  validation loss that many rounds on, through the rounds between as
  `horizon_credit` says (`pfhpo.federated.horizon`), its 'sampled'
  estimator training `horizon_sample` clients of each again; `baseline_scope`:
  with a `baseline_decay`, one running mean of the rounds' mean credits
  ('round') or each client's own running mean of its credits ('client');
  `server`: the server configurations it also chooses among, one a round
  (`server_axis.py`; None: the run's own); `prior_rate`: the 'prior'
  scope's shared row moves by this many times the round's mean score;
  `basis`: how a row gives the logits (`logits.BASES`)."""
  check_choice('credit', credit, CREDITS)
  check_choice('baseline_scope', baseline_scope, BASELINE_SCOPES)
  own = baseline_decay is not None and baseline_scope == 'client'
  check_credit_at(credit_at)
  check_credit_examples(credit_examples)
  check_horizon(horizon, horizon_credit, horizon_sample)
  check_prior_rate(prior_rate)
  basis = logit_basis(space, basis)  # f32[P, H]

  def update(state: PolicyState, fb: Feedback) -> PolicyState:
    failed = diverged_of(fb)
    raw = penalized(fb.credit, failed)
    if own:  # b_i, or the round's mean for a client not seen yet
      b = state.baseline[fb.clients]  # f32[K]
      b = jnp.where(jnp.isnan(b), jnp.mean(raw), b)
    else:
      b = state.baseline
    credit = raw - b
    if normalize:  # a round whose credits do not spread (every client
      # failed): each moves by about one unit, not by 1/0
      spread = jnp.std(credit if own else raw)
      credit = credit / jnp.where(
          spread > 0, spread, jnp.maximum(jnp.max(jnp.abs(raw)), 1e-12))
    state = score_update(state, optimizer, scope, basis, fb.clients,
                         fb.choices, credit, entropy_weight, features,
                         prior_rate)
    if baseline_decay is None:
      return state
    if own:  # a failed client's penalty is no measure of its data
      new = jnp.where(failed, b, baseline_decay * b +
                      (1 - baseline_decay) * fb.credit)
      return state._replace(baseline=state.baseline.at[fb.clients].set(new))
    return state._replace(baseline=baseline_decay * state.baseline +
                          (1 - baseline_decay) * jnp.mean(raw))

  policy = categorical_policy(space, optimizer, scope, update, basis,
                              frozenset({CREDITS[credit]}), features)
  if own:  # f32[C] each client's baseline, NaN until it is measured
    init = policy.init
    policy = policy._replace(init=lambda key, num_clients: init(
        key, num_clients)._replace(baseline=jnp.full(num_clients, jnp.nan)))
  if server is not None:
    axis = server_axis(server, optimizer)
    init, summarize = policy.init, policy.summarize
    policy = policy._replace(
        init=lambda key, num_clients: init(key, num_clients)._replace(
            server=axis.init()),
        summarize=lambda state, clients: {
            **summarize(state, clients), 'server_probabilities': np.asarray(
                axis.probabilities(state)).round(4).tolist()},
        server_axis=axis)
  return policy._replace(credit_at=credit_at,
                         credit_examples=credit_examples, horizon=horizon,
                         horizon_credit=horizon_credit,
                         horizon_sample=horizon_sample)


def check_credit_at(t: float) -> None:
  require(0 < t <= 1, f'`credit_at` must be in (0, 1], got {t}')


BASELINE_SCOPES = ('round', 'client')


def check_horizon(horizon: int, horizon_credit: str, sample: int) -> None:
  require(horizon >= 1, f'`horizon` must be >= 1 rounds, got {horizon}')
  check_choice('horizon_credit', horizon_credit, HORIZON_CREDITS)
  require(sample >= 1, f'`horizon_sample` must be >= 1 clients, got {sample}')


def check_credit_examples(m: int | None) -> None:
  require(m is None or m >= 1, f'`credit_examples` must be >= 1, got {m}')


@checked
class GumbelConfig(LogitsConfig):
  # The default since issue 28's ablations (BUILD_NOTES.md): each client's
  # offset on a prior row that moves 4 times as fast as one offset, moved
  # by the credit over 2 rounds whose later round's Jacobian 2 of its
  # clients, trained again, estimate.
  policy_scope: str = setting('prior', SCOPE_HELP)
  prior_rate: float = setting(4.0, PRIOR_RATE_HELP)
  credit: str = setting(
      'delta', "differentiate theta_g through the update 'delta' or the "
      "'params'")
  credit_normalize: bool = setting(
      True, "divide the round's credits by their standard deviation")
  baseline_decay: float | None = setting(
      None, 'decay of a running-mean baseline of the credits (unset: none)')
  baseline_scope: str = setting(
      'round', "the baseline: one running mean of the rounds' mean credits "
      "('round') or each client's own of its credits ('client': the "
      "control variate of its data's usefulness)")
  credit_at: float = setting(
      0.5, 'where dL/dc is taken, c = t 1: 0.5 (the midpoint estimate of '
      'each client\'s share of the round\'s loss change) or 1 (the '
      'aggregate\'s gradient: the marginal value of each update)')
  entropy_weight: float = setting(
      0.0, "weight of each client's policy entropy in the update (an "
      'exploration bonus; 0: none)')
  credit_examples: int | None = setting(
      None, 'validation examples the credit is taken on, a fresh weighted '
      'sample each round (unset: all of them; the reported validation '
      'loss always uses all)')
  horizon: int = setting(
      2, 'rounds the credit looks ahead: dL/dc of the validation loss that '
      'many rounds later, through the rounds between (1: the round\'s own '
      'aggregate); a client\'s row moves horizon - 1 rounds after it drew')
  horizon_credit: str = setting(
      'sampled', "through the rounds after the first: 'exact' (their local "
      "training, aggregation and server step, second order), "
      "'first_order' (local training's Jacobian taken as the identity) or "
      "'sampled' (that Jacobian estimated, unbiased, from `horizon_sample` "
      "of each round's clients trained again)")
  horizon_sample: int = setting(
      2, "'sampled': how many of each later round's clients train again "
      "(at most the round's; the cost grows with it, the noise shrinks)")
  server_lrs: tuple[float, ...] = setting(
      (), 'server learning rates the policy also chooses among, one a round, '
      "credited through the server step (unset: the run's `server_lr`)")
  server_momenta: tuple[float, ...] = setting(
      (), 'server momenta the policy also chooses among, one a round '
      "(unset: the run's)")

  def __post_init__(self):
    super().__post_init__()
    check_choice('credit', self.credit, CREDITS)
    check_credit_at(self.credit_at)
    check_credit_examples(self.credit_examples)
    check_horizon(self.horizon, self.horizon_credit, self.horizon_sample)
    default = default_of(self, 'horizon_sample')
    require(self.horizon_sample == default or self.horizon_credit == 'sampled',
            '`horizon_sample` sizes the sample of `horizon_credit`=sampled; '
            f'pass that too, or leave `horizon_sample` at {default}')
    check_choice('baseline_scope', self.baseline_scope, BASELINE_SCOPES)
    require(self.entropy_weight >= 0,
            f'`entropy_weight` must be >= 0, got {self.entropy_weight}')
    check_decay(self.baseline_decay, closed=False)
    server_space(self.server_lrs, self.server_momenta, 'sgd')


@register('gumbel', GumbelConfig)
def _build(config: GumbelConfig, context: PolicyContext) -> Policy:
  return gumbel(context.space, config.optimizer(), config.policy_scope,
                config.baseline_decay, config.credit_normalize, config.credit,
                config.credit_at, config.entropy_weight,
                context.client_features, config.credit_examples,
                config.horizon, config.horizon_credit, config.baseline_scope,
                server_space(config.server_lrs, config.server_momenta,
                             context.server_opt), config.prior_rate,
                config.horizon_sample, config.policy_basis)
