"""FedPop's member policy: one member's client side (FedPop-L: its client
slots), the `fedpop` policy and its config (`members.py`).

Federated Population-based Hyperparameter Tuning. H. Chen, X. Chen, Y. Li,
J. Wu, V. Tresp, et al. AAAI 2025. https://arxiv.org/abs/2308.08634

The population's round (FedPop-G: the members vmapped, exploited and
explored) is `pfhpo.federated.population`, which the run wraps around the
member's round; the method's population uses it too.
"""
