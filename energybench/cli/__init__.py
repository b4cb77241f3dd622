"""The command line (the face, for the shell): `energybench` with one module per command."""

from energybench.cli.main import main, process_main

__all__ = ["main", "process_main"]
