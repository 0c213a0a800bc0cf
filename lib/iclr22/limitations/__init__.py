"""Limits of ML: in-domain generalization, Shapley values in trajectory prediction."""
