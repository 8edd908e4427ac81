"""`python -m explorer` runs the same command as the `oracle-explorer` console script."""

from explorer.cli import main

main()
