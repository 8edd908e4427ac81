"""`python -m aggregator` runs the same command as the `aggregator` console script."""

from aggregator.cli import main

main()
