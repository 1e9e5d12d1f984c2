"""Bayesian hierarchical models of chronic back pain: specs, PyMC builder, fitting, diagnostics, comparison."""
