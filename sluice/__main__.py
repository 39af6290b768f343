"""`python -m sluice` is `sluice`."""

from sluice.runtime.cli import main

main()
