"""Hyper-parameter policies: `init`, `propose`, `update` (see `base.py`),
each registered by name with its own config (`registry.py`); the learned
categorical ones share their logits (`logits.py`) and their sampling
(`distribution.py`)."""
# Imported in the order the registry lists them (help, error messages).
from pfhpo.policies.fixed import RandomConfig, StaticConfig, random, static
from pfhpo.policies.reinforce import ReinforceConfig, reinforce
from pfhpo.policies.gumbel import (GumbelConfig, GumbelPopConfig, gumbel,
                                   gumbel_population)
from pfhpo.policies.fedex import FedExConfig, fedex
from pfhpo.policies.pfedex import PFedExConfig, pfedex
from pfhpo.policies.fathom import FathomConfig, fathom
from pfhpo.fedpop.members import FedPopConfig, fedpop
from pfhpo.policies.base import MEASUREMENTS, Policy, mean_entropy
from pfhpo.policies.logits import SCOPES, PolicyState
from pfhpo.policies.registry import REGISTRY, PolicyContext, create
from pfhpo.policies.space import SearchSpace, hparams_for, make_space

__all__ = [
    'MEASUREMENTS', 'REGISTRY', 'SCOPES', 'FathomConfig', 'FedExConfig',
    'FedPopConfig', 'GumbelConfig', 'GumbelPopConfig', 'PFedExConfig',
    'Policy', 'PolicyContext', 'PolicyState', 'RandomConfig',
    'ReinforceConfig', 'SearchSpace', 'StaticConfig', 'create', 'fathom',
    'fedex', 'fedpop', 'gumbel', 'gumbel_population', 'hparams_for',
    'make_space', 'mean_entropy', 'pfedex', 'random', 'reinforce', 'static']
