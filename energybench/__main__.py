"""`python -m energybench` runs the command line (also what torchrun launches)."""

from energybench.cli.main import process_main

if __name__ == "__main__":
    process_main()
