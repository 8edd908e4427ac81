"""`python -m exchange_sim`: the same as the `exchange-sim` console script."""

from exchange_sim.cli import main

main()
