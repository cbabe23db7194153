"""Federated algorithms as `FederatedAlgorithm(init, apply)` pairs of pure functions."""
