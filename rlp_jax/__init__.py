"""rlp_jax: reinforcement pre-training (RLP, RPT) of language models in JAX/Flax."""

__version__ = "0.1.0"
