"""The transformer and what serves it: config, attention, vocabulary scores, sharding, model files."""
