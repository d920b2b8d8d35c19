"""Evaluation, downstream tasks, reports and FLOP accounting (not `eval`: that is a builtin)."""
