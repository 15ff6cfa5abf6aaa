"""`python -m bridge` is `itsm-bridge`."""

from bridge.cli import main

main()
