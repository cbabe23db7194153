"""Hyper-parameter policies: `init`, `propose`, `update` (see `base.py`)."""
from pfhpo.policies.base import (Feedback, Policy, PolicyState, SCOPES,
                                 mean_entropy, probabilities)
from pfhpo.policies.fixed import random, static
from pfhpo.policies.gumbel import gumbel
from pfhpo.policies.reinforce import reinforce

__all__ = ['Feedback', 'Policy', 'PolicyState', 'SCOPES', 'gumbel',
           'mean_entropy', 'probabilities', 'random', 'reinforce', 'static']
