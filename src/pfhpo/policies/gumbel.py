"""Per-client credit assignment by back-propagation (the project's method).

The server aggregates theta_g(c) = theta + sum_i w_i c_i (theta_i - theta)
with dummy coefficients c and takes L = validation cross-entropy of
theta_g. Each client's credit is dL/dc_i, from `jax.grad` through the
aggregation; with Z_i one-hot over the H configurations and the
Gumbel-softmax relaxation (Jang et al., ICLR 2017; Maddison et al., ICLR
2017) taken to temperature 0, the gradient estimator of E[L] becomes

    alpha_i <- alpha_i - lr * (dL/dc_i / sigma) * grad_{alpha_i} log p(Z_i)

so a client whose update raised the validation loss (dL/dc_i > 0) makes
its configuration less likely, each client by its own credit instead of
one delayed reward shared by all. sigma is the standard deviation of the
round's credits (their largest magnitude when they do not spread, as when
every client of the round failed): each round moves the rows by about one
unit whatever the loss's scale.

A client whose update failed (diverged and left out of the aggregate, so
its dL/dc_i is 0, or in an aggregate the server rejected) gets a large
positive credit instead: the round's largest credit plus three standard
deviations (`base.penalized`).

The credit is the round's component (`pfhpo.federated.credit`; the
shipped one, `CreditSettings`' defaults, is dL/dc at c = 1/2 of the
validation loss a round later, differentiated through that round, whose
local training's Jacobian 2 of its clients, trained again, estimate without
bias; a row moves a round after its client drew). The policy's defaults
are the shipped method's too (`--policy=gumbel` runs them;
docs/ablations.md has the ablations that chose them):

  scope 'prior', prior_rate R = 4: alpha_i = a + b_i, a row a that every
    client reads plus client i's offset b_i (`logits`),

        a   <- a   - lr * (R / K) * sum_i s_i grad_a log p(Z_i)
        b_i <- b_i - lr * s_i * grad_{b_i} log p(Z_i)

    over the round's K clients (s_i the normalised credit), so the
    clients' common evidence settles the shared row within a few rounds
    while each offset keeps its client's own. 'client' (the offsets
    alone), 'global' (the shared row alone) and 'features' (a network of
    the client's features plus the offset, `features.py`) are the others.

The server's learning rate and momentum (`server`) may be one more choice,
one draw a round from a row of their own, credited by dL_val/dc of a dummy
scale c on the server step (`server_axis.py`).

At a budget of B runs the method is a population of B of its runs on one
compiled round (`gumbel_population`, `--policy=gumbel_pop`;
`pfhpo.federated.population`): population-based training (Jaderberg et
al. 2017; in federated learning, FedPop: Chen et al., AAAI 2025) whose
members learn their configurations by credit instead of by random moves.
Every `exploit_every` rounds, with L_m the validation loss of member m's
server model, the worst ceil(q B) members take the whole state (weights,
server optimizer state, logits) of a random one of the best ceil(q B),
and each copy explores,

    alpha_copy <- alpha_source + sigma * eps,    eps ~ N(0, I),

every row of its logits (and its server row) perturbed; between those
steps every member runs the update above on its own draws. Members 1..B-1
start from the uniform logits perturbed alike, member 0 from the uniform
ones: a population of one is the run above.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pfhpo.policies.base import (CREDIT, Members, Policy, check_members,
                                 failed_of, penalized)
from pfhpo.policies.logits import (BASIS_HELP, PRIOR_RATE_HELP, SCOPE_HELP,
                                   LogitsConfig, PolicyState,
                                   categorical_policy, check_prior_rate,
                                   logit_basis, score_update)
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.server_axis import server_axis
from pfhpo.policies.space import SearchSpace, ServerSpace, server_space
from pfhpo.settings import checked, default_of, param_default, require, setting
from pfhpo.types import CreditSettings, Feedback

SHIPPED = CreditSettings()


def gumbel(space: SearchSpace, optimizer: optax.GradientTransformation,
           scope: str = 'prior', prior_rate: float = 4.0,
           basis: str = 'joint', features: np.ndarray | None = None,
           server: ServerSpace | None = None) -> Policy:
  """The method over `space`, its logits moved by `optimizer`; the
  defaults are the shipped method (the module's docstring).

  `scope` (`logits.SCOPES`) and `prior_rate`: whose rows a client reads
  and how fast the 'prior' scope's shared row moves; `basis`: how a row
  gives the logits (`logits.BASES`); `features`: f32[C, F] the
  clients' phi, for the 'features' scope; `server`: the server
  configurations it also chooses among, one a round (None: the run's
  own)."""
  check_prior_rate(prior_rate)
  basis = logit_basis(space, basis)  # f32[P, H]

  def update(state: PolicyState, fb: Feedback) -> PolicyState:
    credit = penalized(fb.credit, failed_of(fb))  # f32[K]
    spread = jnp.std(credit)
    credit = credit / jnp.where(
        spread > 0, spread, jnp.maximum(jnp.max(jnp.abs(credit)), 1e-12))
    return score_update(state, optimizer, scope, basis, fb.clients,
                        fb.choices, credit, features, prior_rate)

  policy = categorical_policy(space, optimizer, scope, update, basis,
                              frozenset({CREDIT}), features)
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
  return policy


def gumbel_population(policy: Policy, size: int, exploit_every: int = 10,
                      quantile: float = 0.25,
                      explore_scale: float = 1.0) -> Policy:
  """The method's `policy` (`gumbel`) as a member of a population of
  `size` (the module's docstring): the worst ceil(`quantile` size) take a
  best member's state every `exploit_every` rounds, their logits then
  perturbed by N(0, `explore_scale`^2) each."""
  _check_population(size, exploit_every, quantile, explore_scale)

  def explore(state: PolicyState, s: jax.Array, key: jax.Array):
    """A copy's logits and server row perturbed; its server configuration
    (the population searches none) as it was."""
    rows_key, server_key = jax.random.split(key)
    state = state._replace(logits=state.logits + explore_scale *
                           jax.random.normal(rows_key, state.logits.shape))
    if policy.server_axis is None:
      return state, s
    row = state.server
    return state._replace(server=row._replace(
        logits=row.logits + explore_scale *
        jax.random.normal(server_key, row.logits.shape))), s

  return policy._replace(population=Members(
      size, exploit_every, quantile, None, explore, spread=True))


def _check_population(size: int, exploit_every: int, quantile: float,
                      explore_scale: float) -> None:
  check_members(size, exploit_every, quantile)
  require(explore_scale >= 0,
          f'`explore_scale` must be >= 0 (logit units), got {explore_scale}')


def _default(name: str):
  return param_default(gumbel, name)


@checked
class GumbelConfig(LogitsConfig):
  """`gumbel`'s settings and its credit's (`CreditSettings`), their
  defaults theirs."""
  policy_scope: str = setting(_default('scope'), SCOPE_HELP)
  prior_rate: float = setting(_default('prior_rate'), PRIOR_RATE_HELP)
  policy_basis: str = setting(_default('basis'), BASIS_HELP)
  credit_at: float = setting(
      SHIPPED.at, 'where dL/dc is taken, c = t 1: 0.5 (the '
      "midpoint estimate of each client's share of the round's loss "
      "change) or 1 (the aggregate's gradient: the marginal value of each "
      'update)')
  horizon: int = setting(
      SHIPPED.horizon, 'rounds the credit looks ahead: '
      'dL/dc of the validation loss that many rounds later, through the rounds between '
      "(1: the round's own aggregate); a client's row moves horizon - 1 "
      'rounds after it drew')
  horizon_credit: str = setting(
      SHIPPED.estimator, "through the rounds after the first: "
      "'exact' (their local training, aggregation and server step, second "
      "order), 'first_order' (local training's Jacobian taken as the "
      "identity) or 'sampled' (that Jacobian estimated, unbiased, from "
      "`horizon_sample` of each round's clients trained again)")
  horizon_sample: int = setting(
      SHIPPED.sample, "'sampled': how many of each later "
      "round's clients train again (at most the round's; the cost grows "
      'with it, the noise shrinks)')
  server_lrs: tuple[float, ...] = setting(
      (), 'server learning rates the policy also chooses among, one a round, '
      "credited through the server step (unset: the run's `server_lr`)")
  server_momenta: tuple[float, ...] = setting(
      (), 'server momenta the policy also chooses among, one a round '
      "(unset: the run's)")

  def __post_init__(self):
    super().__post_init__()
    self.credit()
    default = default_of(self, 'horizon_sample')
    require(self.horizon_sample == default or self.horizon_credit == 'sampled',
            '`horizon_sample` sizes the sample of `horizon_credit`=sampled; '
            f'pass that too, or leave `horizon_sample` at {default}')
    server_space(self.server_lrs, self.server_momenta, 'sgd')

  def credit(self) -> CreditSettings:
    """The round's credit these settings name."""
    return CreditSettings(self.horizon, self.horizon_credit,
                          self.horizon_sample, self.credit_at).checked()


@register('gumbel', GumbelConfig, credit=GumbelConfig.credit)
def _build(config: GumbelConfig, context: PolicyContext) -> Policy:
  return gumbel(context.space, config.optimizer(), config.policy_scope,
                config.prior_rate, config.policy_basis, context.client_features,
                server_space(config.server_lrs, config.server_momenta,
                             context.server_opt))


def _population_default(name: str):
  return param_default(gumbel_population, name)


@checked
class GumbelPopConfig(GumbelConfig):
  """`gumbel_pop`'s settings: the method's (`GumbelConfig`) and its
  population's."""
  population: int = setting(
      4, 'members of the population, each a run of the method with its own '
      'server model and logits')
  exploit_every: int = setting(
      _population_default('exploit_every'),
      "rounds between the population's exploit-and-explore steps")
  quantile: float = setting(
      _population_default('quantile'),
      'the worst fraction of members that copy one of the best fraction')
  explore_scale: float = setting(
      _population_default('explore_scale'),
      "the standard deviation of the noise added to a copy's logits "
      '(logit units)')

  def __post_init__(self):
    super().__post_init__()
    _check_population(self.population, self.exploit_every, self.quantile,
                      self.explore_scale)


@register('gumbel_pop', GumbelPopConfig, credit=GumbelConfig.credit)
def _build_population(config: GumbelPopConfig,
                      context: PolicyContext) -> Policy:
  return gumbel_population(_build(config, context), config.population,
                           config.exploit_every, config.quantile,
                           config.explore_scale)
