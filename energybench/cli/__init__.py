"""The command line (the face, for the shell): `energybench` with one module per command."""

from energybench.cli.main import main

__all__ = ["main"]
