"""Training: configs, recipes (one per method), the one training loop, model selection,
the non-finite guard and the energy dynamics probe."""
