"""Thought rollouts: branch layout, sampling, positions, no-think scores, slow references."""
