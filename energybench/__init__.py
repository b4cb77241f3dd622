"""energybench: train and evaluate classifiers that are also energy-based generative models."""

__version__ = "0.1.0"
