"""`python -m rlp_jax` is the same as the `rlp-jax` command."""

from rlp_jax.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
