"""Evaluation: the runner that computes metrics into records (reusing finished ones,
sharding under torchrun) and the cost plan it announces."""
