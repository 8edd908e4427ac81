"""`python -m oracle_node`: the same entry point as the `oracle-node` console script."""

from oracle_node.cli import main

if __name__ == "__main__":
    main()
