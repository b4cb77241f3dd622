"""`python -m energybench` runs the command line (also what torchrun launches)."""

from energybench.cli.main import main

if __name__ == "__main__":
    main()
