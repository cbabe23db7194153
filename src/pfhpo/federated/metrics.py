"""What a round reports (`RoundMetrics`): the kept clients' mean training
loss, the aggregate's validation figures, the clients' own validation loss
(what FedEx learns from), the policy's entropy and what it chose."""
import jax.numpy as jnp

from pfhpo.policies.base import Policy, mean_entropy
from pfhpo.types import RoundBatch, RoundMetrics


def round_metrics(policy: Policy, pstate, batch: RoundBatch, agg, trained,
                  weights, rejected, updated, hparams, choices, dl_dc,
                  z_server, own_val) -> RoundMetrics:
  """What the round reports (`RoundMetrics`)."""
  diverged = trained.diverged
  kept = jnp.where(diverged, 0.0, weights)
  if own_val:  # what FedEx learns from
    n_val = jnp.where(diverged, 0, batch.local_val.count)
    local_val_loss = jnp.sum(n_val * trained.val_loss) / jnp.maximum(
        jnp.sum(n_val), 1)
  else:
    local_val_loss = jnp.float32(jnp.nan)
  entropy = (jnp.float32(jnp.nan) if policy.probabilities is None else
             mean_entropy(policy.probabilities(pstate, batch.clients)))
  return RoundMetrics(
      train_loss=jnp.sum(jnp.where(diverged, 0.0, kept * trained.stats.loss))
      / jnp.maximum(jnp.sum(kept), 1e-12),
      val_loss=agg.loss, val_acc=agg.acc,
      dropped_clients=jnp.sum(diverged), rejected=rejected, updated=updated,
      local_steps_total=jnp.sum(hparams.local_steps),
      local_val_loss=local_val_loss, policy_entropy=entropy,
      choices=choices, hparams=hparams, credit=dl_dc,
      server_choice=jnp.int32(z_server))
