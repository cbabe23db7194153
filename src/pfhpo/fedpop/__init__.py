"""FedPop in one home: a population of server models with their own
hyper-parameters on one compiled round.

Federated Population-based Hyperparameter Tuning. H. Chen, X. Chen, Y. Li,
J. Wu, V. Tresp, et al. AAAI 2025. https://arxiv.org/abs/2308.08634

`members.py`: one member's client side (FedPop-L: its client slots), the
`fedpop` policy and its config; `population.py`: the population's round
(FedPop-G: the members vmapped, exploited and explored), which the run
wraps around the member's round. Import each from its module: the
population builds on `pfhpo.federated`, which the policies sit below.
"""
