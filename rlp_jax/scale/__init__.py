"""Ahead-of-time compilation for the machines users train on, from any machine.

`rlp-jax compile` lowers the exact training and eval steps of a config for a named TPU
slice (or GPU host) through `jax.experimental.topologies`, and reports per chip what
they need: a config is proven to fit before anyone pays for a pod.
"""
