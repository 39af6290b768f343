"""`python -m runtime` is `sluice`."""

from runtime.cli import main

main()
