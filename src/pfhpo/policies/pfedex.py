"""Personalised FedEx: per-client distributions from a hypernetwork over
client encodings, trained by REINFORCE with a baseline.

The personalised FedEx of FederatedScope (`hpo.fedex.psn`):
  FederatedScope: A Flexible Federated Learning Platform for Heterogeneity.
  Y. Xie, Z. Wang, D. Gao, D. Chen, L. Yao, W. Kuang, Y. Li, B. Ding,
  J. Zhou. VLDB 2023. https://arxiv.org/abs/2204.05011
built on FedEx (Khodak et al., NeurIPS 2021; `fedex.py`).

Client i has a fixed random encoding e_i ~ N(0, I_8) / sqrt(8). A
hypernetwork maps it to client i's distribution over the H configurations,

    theta_i = softmax(W_3 relu(SN(W_2) relu(SN(W_1) e_i)) + b_3)
              (8 -> 64 -> 32 -> H; SN: weight / its largest singular value)

Every sampled client draws z_i ~ theta_i, trains, and reports its
validation loss L_i after local training (as in FedEx). One optimizer step
(Adam, lr 0.01, L2 weight decay 1e-5 by default) on the REINFORCE loss

    J(phi) = sum_i w_i (L_i - lambda) log clip(theta_i[z_i], 1e-8, 1)

with w_i the round's validation-size weights and lambda FedEx's discounted
mean of previous rounds' losses (a diverged client's L_i penalised as in
FedEx). Departures: spectral normalisation divides
by the exact largest singular value (FederatedScope runs one power
iteration per forward pass, which converges to it); the H configurations
form one head (FederatedScope has one head per grid axis).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from pfhpo.policies.base import Policy, optimizer_of
from pfhpo.policies.distribution import distribution_policy
from pfhpo.policies.fedex import DiscountedMean, FedExConfig, round_signal
from pfhpo.policies.registry import PolicyContext, register
from pfhpo.policies.space import SearchSpace
from pfhpo.settings import checked, setting
from pfhpo.types import Feedback

ENCODING, HIDDEN = 8, (64, 32)
WEIGHT_DECAY = 1e-5


class PFedExState(NamedTuple):
  params: Any  # the hypernetwork's weights
  opt_state: Any
  encodings: jax.Array  # f32[C, ENCODING], fixed
  baseline: DiscountedMean


def init_hypernet(key: jax.Array, num_out: int) -> dict:
  """PyTorch's `Linear` initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
  sizes = (ENCODING, *HIDDEN, num_out)
  keys = jax.random.split(key, len(sizes))
  uniform = lambda k, shape, fan_in: jax.random.uniform(
      k, shape, jnp.float32, -fan_in**-0.5, fan_in**-0.5)
  params = {f'w{i}': uniform(keys[i], (n_in, n_out), n_in)
            for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]))}
  params['b2'] = uniform(keys[-1], (num_out,), sizes[-2])
  return params


def hypernet_logits(params: dict, encodings: jax.Array) -> jax.Array:
  """f32[K, ENCODING] -> f32[K, H] logits of each client's distribution."""
  sn = lambda w: w / jnp.linalg.norm(w, ord=2)
  h = jax.nn.relu(encodings @ sn(params['w0']))
  h = jax.nn.relu(h @ sn(params['w1']))
  return h @ params['w2'] + params['b2']


def pfedex(space: SearchSpace, optimizer: optax.GradientTransformation,
           baseline_decay: float | None = None) -> Policy:
  gamma = 0.0 if baseline_decay is None else baseline_decay
  optimizer = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optimizer)

  def init(key, num_clients):
    net_key, enc_key = jax.random.split(key)
    params = init_hypernet(net_key, space.size)
    encodings = jax.random.normal(enc_key, (num_clients, ENCODING)) / jnp.sqrt(
        float(ENCODING))
    return PFedExState(params, optimizer.init(params), encodings,
                       DiscountedMean.empty())

  def logits(state, clients):
    return hypernet_logits(state.params, state.encodings[clients])

  def update(state: PFedExState, fb: Feedback) -> PFedExState:
    advantage, mean_loss = round_signal(fb, state.baseline)  # f32[K], f32[]

    def reinforce_loss(params):
      theta = jax.nn.softmax(hypernet_logits(params,
                                             state.encodings[fb.clients]))
      picked = jnp.take_along_axis(theta, fb.choices[:, None], axis=1)[:, 0]
      return jnp.sum(advantage * jnp.log(jnp.clip(picked, 1e-8, 1.0)))

    grads = jax.grad(reinforce_loss)(state.params)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    return PFedExState(optax.apply_updates(state.params, updates), opt_state,
                       state.encodings, state.baseline.add(mean_loss, gamma))

  return distribution_policy(space, init, logits, update,
                             frozenset({'local_val'}))


@checked
class PFedExConfig(FedExConfig):
  """FederatedScope's defaults: Adam at 0.01, the previous round's loss as
  the baseline."""
  policy_opt: str = setting('adam', 'optax optimizer of the hypernetwork')
  policy_lr: float = setting(0.01, 'learning rate of the hypernetwork')

  def __post_init__(self):
    super().__post_init__()
    optimizer_of(self.policy_opt, self.policy_lr)


@register('pfedex', PFedExConfig)
def _build(config: PFedExConfig, context: PolicyContext) -> Policy:
  return pfedex(context.space, optimizer_of(config.policy_opt,
                                            config.policy_lr),
                config.baseline_decay)
