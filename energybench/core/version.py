"""The package version, read by records and checkpoints (`runtime.environment_info`) and by
packaging (pyproject's dynamic version)."""

__version__ = "0.1.0"
