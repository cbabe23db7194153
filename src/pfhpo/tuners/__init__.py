"""Tuners that run many trials of a space's configurations and choose one
by validation: random search, successive halving and Hyperband
(`search.py`), charged for what they train (`ledger.py`). FedPop's
population, many runs at once on one compiled round, is `pfhpo.fedpop`."""
from pfhpo.tuners.ledger import (Choice, Ledger, Observation, Point, Trainer,
                                 Trial, TunerResult)
from pfhpo.tuners.search import (draw, hyperband, hyperband_spend,
                                 random_search, rung_rounds, sha_spend,
                                 single_run, sized_hyperband, sized_sha,
                                 successive_halving)

__all__ = ['Choice', 'Ledger', 'Observation', 'Point', 'Trainer', 'Trial',
           'TunerResult', 'draw', 'hyperband', 'hyperband_spend',
           'random_search', 'rung_rounds', 'sha_spend', 'single_run',
           'sized_hyperband', 'sized_sha', 'successive_halving']
