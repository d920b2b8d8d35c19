"""The training core: config, state + optimizer + EMA, the compiled step, the loop, checkpoints."""
