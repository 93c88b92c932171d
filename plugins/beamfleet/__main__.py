"""Allow ``python -m beamfleet``."""

from beamfleet.cli import main

main()
