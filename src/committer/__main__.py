"""`python -m committer` is the `committer` console script."""

from committer.cli import main

main()
